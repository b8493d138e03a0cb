//! What the ledger stores. Every document is written once and never changed (the one exception is
//! [`Transaction::finished`], a flag that only ever goes from false to true).

use serde::{Deserialize, Serialize};

/// Who holds value. Players' accounts have balances that must not go negative, so their changes
/// are ordered ([`Posting`]s in a sequence per account). Escrow accounts (a market listing's, a
/// trade's, an auction's: `listing:<id>`) are ordered accounts too, held for players until an
/// exchange completes. System accounts (`mint`, `sink`, `store`) only count what flowed through
/// them: their changes need no order and are recorded as [`Flow`]s, so a hot system account is
/// never a single-writer bottleneck.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", content = "id", rename_all = "camelCase")]
pub enum Holder {
    Player(String),
    Escrow(String),
    System(String),
}

impl Holder {
    /// The player, when a player holds it.
    pub fn player(&self) -> Option<&str> {
        match self {
            Holder::Player(id) => Some(id),
            Holder::Escrow(_) | Holder::System(_) => None,
        }
    }

    /// The owner of an ordered account (a player or an escrow): what its postings name. Player
    /// ids never contain `:`, and escrow ids always do, so the two never meet.
    pub fn account(&self) -> Option<&str> {
        match self {
            Holder::Player(id) | Holder::Escrow(id) => Some(id),
            Holder::System(_) => None,
        }
    }
}

/// One movement of `amount` (> 0) of `asset` from one holder to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Leg {
    /// `c:<currency>`, `i:<item>`, or `o:<offer>` (an offer's purchase counter).
    pub asset: String,
    pub amount: i64,
    pub from: Holder,
    pub to: Holder,
    /// The most the receiving player may hold of `asset` (a currency's maximum balance, an item's
    /// maximum count, an offer's purchase limit). Held against incoming value before the
    /// transaction commits, so it holds under any concurrency.
    pub limit: i64,
    /// Whether the paying player may go below zero: a reversal under the `debt` policy. The
    /// negative balance is the debt; later income repays it first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub debt: bool,
}

/// A client's request to move value: one or more legs that all apply or none does. Stored under
/// `_id` = [`Transaction::id_for`] its caller and idempotency key: a second request with the same
/// key finds it instead of creating another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    #[serde(rename = "_id")]
    pub id: String,
    /// A digest of the request that created it: the same key with another request is refused.
    pub request_hash: String,
    /// `grant`, `purchase`, `consume`, `gift`.
    pub kind: String,
    /// The offer bought, the reason for a grant: shown in history.
    pub memo: String,
    pub legs: Vec<Leg>,
    /// The players whose accounts it touches: history is queried by this.
    pub players: Vec<String>,
    pub at_ms: i64,
    /// A fraud rule that fired on it: it waits for review (`hold`) or is voided (`deny`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<Flag>,
}

/// Inserted once both sides of every leg of a transaction are closed: the recovery worker looks
/// for transactions without one. An insert rather than a flag on the transaction, because on
/// FerretDB an update by `_id` scans the collection while an insert is checked by the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    #[serde(rename = "_id")]
    pub tx: String,
    /// The transaction's `at_ms`: recovery reads markers by the same time range as transactions.
    pub tx_at_ms: i64,
}

/// The fraud rule that fired on a transaction, and what it does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub rule: String,
    /// Voided at once; otherwise held for review.
    pub deny: bool,
}

/// A held transaction in the review queue: its value reserved, waiting for an admin. Deleted once
/// the transaction is finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    #[serde(rename = "_id")]
    pub tx: String,
    pub at_ms: i64,
}

/// An admin's decision on a held transaction, inserted once: the first review stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Review {
    #[serde(rename = "_id")]
    pub tx: String,
    pub approved: bool,
    pub by: String,
    pub reason: String,
    pub at_ms: i64,
}

impl Transaction {
    /// Idempotency keys are scoped by caller: two players may use the same key.
    pub fn id_for(caller: &str, key: &str) -> String {
        format!("{caller}:{key}")
    }
}

/// The decision on a transaction, inserted once under the transaction's id: the commit point.
/// Whoever inserts it first (the request, a twin request, the recovery worker) decides for all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    #[serde(rename = "_id")]
    pub tx: String,
    pub committed: bool,
    /// Why a voided transaction was voided, as clients see it.
    pub reason: Option<String>,
    pub at_ms: i64,
}

/// A player account's state after a posting. `available + reserved` is what the player owns;
/// `reserved` is promised to transactions not yet committed; `incoming` is room held for
/// transactions that will credit the account, so a limit holds before they commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub available: i64,
    pub reserved: i64,
    pub incoming: i64,
}

/// What a posting did to its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// Debit side, opening: available → reserved.
    Reserve,
    /// Credit side, opening: room held in `incoming`.
    Hold,
    /// An opening slot filled on a voided transaction's behalf, so it can never be reserved later.
    Void,
    /// Debit side, closing a committed transaction: the reserved value leaves.
    Settle,
    /// Credit side, closing a committed transaction: the held room becomes available value.
    Credit,
    /// Debit side, closing a voided transaction: reserved → available.
    Release,
    /// Credit side, closing a voided transaction: the held room is given back.
    Unhold,
}

/// Which side of a leg a posting or flow is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Side {
    Debit,
    Credit,
}

/// The two slots each side of a leg has: opened before the decision, closed after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Open,
    Close,
}

/// The unique reference of a slot: a posting or flow filling it carries it, and a unique index on
/// it means each slot is filled once, however many drivers try.
pub fn slot_ref(tx: &str, leg: usize, side: Side, slot: Slot) -> String {
    let side = match side {
        Side::Debit => "debit",
        Side::Credit => "credit",
    };
    let slot = match slot {
        Slot::Open => "open",
        Slot::Close => "close",
    };
    format!("{tx}/{leg}/{side}/{slot}")
}

/// One change of a player account, entry `seq` of the account's sequence, stored under the unique
/// `_id` [`posting_id`]`(account, seq)` and unique `reference`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Posting {
    #[serde(rename = "_id")]
    pub id: String,
    /// The account: [`account_key`].
    pub key: String,
    pub seq: i64,
    #[serde(rename = "ref")]
    pub reference: String,
    pub tx: String,
    pub leg: u32,
    pub stage: Stage,
    pub player: String,
    pub asset: String,
    /// The account after this posting.
    pub balance: Balance,
    pub at_ms: i64,
}

/// A change of a system account: unordered, stored under `_id` = its slot reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    #[serde(rename = "_id")]
    pub reference: String,
    pub tx: String,
    pub leg: u32,
    pub holder: String,
    pub asset: String,
    /// Negative out of the account (minting from a source), positive into it (a sink).
    pub amount: i64,
    pub at_ms: i64,
}

/// A player account: one asset of one player.
pub fn account_key(player: &str, asset: &str) -> String {
    format!("{player}/{asset}")
}

pub fn posting_id(key: &str, seq: i64) -> String {
    flotilla_storage::sequence::entry_id(key, seq)
}
