//! Driving a transaction to its outcome with nothing but unique inserts.
//!
//! A transaction moves through three steps, each of which any number of drivers (the request, a
//! twin request with the same idempotency key, the recovery worker after a crash) may run at once:
//!
//! 1. **Open** every player side of every leg: reserve the debited value (available → reserved,
//!    refused when not enough is available) and hold room on the credited account (refused past its
//!    limit). Each opening is a posting appended to the account's sequence, and fills the slot
//!    `tx/leg/side/open`: a unique reference, so a slot is filled once however many drivers try.
//! 2. **Decide**: insert the [`Outcome`] under the transaction's id, committed when every opening
//!    succeeded, voided with the refusal otherwise. The first insert wins; every driver follows it.
//! 3. **Close** every side: on commit, settle the reserved value and credit the held room (system
//!    accounts get a [`Flow`]); on void, release what was reserved. A voided transaction's driver
//!    fills each opening slot it did not fill itself with a [`Stage::Void`] tombstone first, so a
//!    slow driver can never reserve value for it afterwards. Then the transaction is marked finished.
//!
//! No step depends on a conditional update, so the ledger is exact on FerretDB (which makes only
//! unique inserts atomic) and on a sharded MongoDB without transactions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::ledger::model::{
    Balance, Finished, Flow, Hold, Holder, Leg, Outcome, Posting, Review, Side, Slot, Stage, Transaction,
    account_key, posting_id, slot_ref,
};
use crate::ledger::store::{Insert, LedgerStore};
use crate::{Error, Result};

/// Attempts at one posting before giving up: each failed one means another writer appended to the
/// same account in between.
const ATTEMPTS: usize = 64;

/// Account heads this process remembers; past this many the memory starts afresh.
const REMEMBERED_HEADS: usize = 200_000;

/// Locks that take turns on one account within this process (an account hashes to one of them).
const ACCOUNT_LOCKS: usize = 1024;

/// Milliseconds since the epoch; the simulation passes a counter.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Told of each committed transaction a driver completes, whatever started it (a request, a
/// market, trade or auction step, a reversal, an approved review, recovery). A transaction may be
/// told more than once (a retried request, a twin, recovery), so what it does must be idempotent.
pub type OnCommit = Arc<dyn Fn(&Transaction) + Send + Sync>;

/// The ledger: submits transactions and completes unfinished ones over a [`LedgerStore`].
pub struct Ledger<S> {
    store: S,
    clock: Clock,
    /// The newest posting seen per account. A posting decided from a stale head lands on a position
    /// that is taken (positions fill in order), so the cache saves reads without risking a wrong
    /// decision: a miss costs one duplicate insert and a re-read.
    heads: Mutex<HashMap<String, Posting>>,
    /// Writers in this process post to one account in turn, so they never race each other for
    /// a position: a lost race costs a duplicate insert and reads, and on FerretDB each read
    /// scans a collection. Only writers on other replicas still race (and are still exact).
    accounts: Vec<tokio::sync::Mutex<()>>,
    on_commit: Option<OnCommit>,
}

/// A transaction and its outcome, once every slot is closed.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub tx: Transaction,
    pub outcome: Outcome,
}

/// What appending a posting did.
enum Post {
    /// This posting, or one with the same reference, is at a position in the account.
    Posted(Posting),
    /// The decision refused it (not enough available, a limit).
    Refused(String),
    /// The reference is filled elsewhere: by another driver, at a position this one did not see.
    Filled,
}

/// One player side of one leg of a transaction: where a posting goes.
struct At<'a> {
    tx: &'a Transaction,
    index: usize,
    leg: &'a Leg,
    side: Side,
    player: &'a str,
}

/// What opening one side of a leg found.
enum Opening {
    Opened,
    Refused(String),
    /// The slot holds a tombstone: another driver voided the transaction.
    Voided,
}

impl<S: LedgerStore> Ledger<S> {
    pub fn new(store: S, clock: Clock) -> Self {
        Self {
            store,
            clock,
            heads: Mutex::new(HashMap::new()),
            accounts: (0..ACCOUNT_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            on_commit: None,
        }
    }

    /// Calls `observer` with each committed transaction once it is finished.
    pub fn on_commit(mut self, observer: OnCommit) -> Self {
        self.on_commit = Some(observer);
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }

    /// Records `tx` under its idempotency key and drives it to its outcome. When the key is taken
    /// by the same request (a retry, a twin sent at once), drives that one instead: the answer is
    /// the stored transaction's, and its effect happens once. The same key with another request is
    /// [`Error::KeyReused`].
    pub async fn submit(&self, tx: Transaction) -> Result<Settled> {
        for _ in 0..3 {
            let existing = match self.store.insert_transaction(&tx).await {
                Ok(Insert::Inserted) => return self.drive(&tx, false).await,
                Ok(Insert::Duplicate) => self.store.transaction(&tx.id).await?,
                Err(error) if error.is_transient() => self.store.transaction(&tx.id).await?,
                Err(error) => return Err(error),
            };
            // After a transport failure the insert may not have landed: try again.
            let Some(existing) = existing else { continue };
            if existing.request_hash != tx.request_hash {
                return Err(Error::KeyReused);
            }
            return self.drive(&existing, true).await;
        }
        Err(Error::Unavailable(format!(
            "could not record transaction {}",
            tx.id
        )))
    }

    /// Completes or voids every transaction left unfinished before `before_ms` (a crash, a lost
    /// connection); returns how many it drove.
    pub async fn recover(&self, before_ms: i64, limit: usize) -> Result<usize> {
        let unfinished = self.store.unfinished(before_ms, limit).await?;
        let mut driven = 0;
        for tx in &unfinished {
            match self.drive(tx, true).await {
                Ok(_) => driven += 1,
                Err(Error::Held { .. }) => {} // waiting for an admin, its value reserved
                Err(error) => return Err(error),
            }
        }
        Ok(driven)
    }

    /// The transaction's outcome once settled, or `None` while it is still open.
    pub async fn settled(&self, id: &str) -> Result<Option<Settled>> {
        let Some(tx) = self.store.transaction(id).await? else {
            return Ok(None);
        };
        if !self.store.is_finished(id).await? {
            return Ok(None);
        }
        let outcome = self.store.outcome(id).await?;
        Ok(outcome.map(|outcome| Settled { tx, outcome }))
    }

    /// An account's current state: its head, read forward from what this process last saw.
    pub async fn balance(&self, owner: &str, asset: &str) -> Result<Balance> {
        let head = self.head(owner, asset).await?;
        Ok(head.map(|posting| posting.balance).unwrap_or_default())
    }

    /// The newest posting of an account this process remembers, without reading the store: may
    /// be behind another replica's writes.
    pub fn remembered_head(&self, owner: &str, asset: &str) -> Option<Posting> {
        self.remembered(&account_key(owner, asset))
    }

    /// An account's newest posting (`None` for an account never posted to); its `seq` orders
    /// the account's states.
    pub async fn head(&self, owner: &str, asset: &str) -> Result<Option<Posting>> {
        self.read_head(&account_key(owner, asset), None).await
    }

    /// Runs the three steps. `careful` drivers are not the first for this transaction (a twin, the
    /// recovery worker): before refusing a leg, they look for another driver's opening of it.
    async fn drive(&self, tx: &Transaction, careful: bool) -> Result<Settled> {
        let mut opened = HashSet::new();
        // The first driver just created the transaction: it has no outcome yet, unless recovery
        // decided it meanwhile, and then this driver's decision loses and follows that one.
        let stored = match careful {
            true => self.store.outcome(&tx.id).await?,
            false => None,
        };
        let outcome = match stored {
            Some(outcome) => outcome,
            None => {
                let decision = match &tx.flag {
                    Some(flag) if flag.deny => self.voided(tx, format!("denied by fraud rule {}", flag.rule)),
                    Some(flag) => self.reviewed(tx, &flag.rule, careful, &mut opened).await?,
                    None => self.open_all(tx, careful, &mut opened).await?,
                };
                self.decide(decision).await?
            }
        };
        self.close_all(tx, &outcome, &opened).await?;
        let finished = Finished {
            tx: tx.id.clone(),
            tx_at_ms: tx.at_ms,
        };
        self.store.finish(&finished).await?;
        if tx.flag.is_some() {
            self.store.delete_hold(&tx.id).await?;
        }
        if let Some(observer) = self.on_commit.as_ref().filter(|_| outcome.committed) {
            observer(tx);
        }
        Ok(Settled {
            tx: tx.clone(),
            outcome,
        })
    }

    /// A held transaction's decision: its openings reserve its value, then it waits in the review
    /// queue ([`Error::Held`]) until an admin's [`Review`] approves (commit) or rejects (void) it.
    async fn reviewed(
        &self,
        tx: &Transaction,
        rule: &str,
        careful: bool,
        opened: &mut HashSet<(usize, Side)>,
    ) -> Result<Outcome> {
        let held = || Error::Held {
            tx: Box::new(tx.clone()),
            rule: rule.to_owned(),
        };
        let review = self.store.review(&tx.id).await?;
        if review.is_none() && self.store.hold(&tx.id).await?.is_some() {
            return Err(held()); // opened already, still waiting
        }
        let decision = self.open_all(tx, careful, opened).await?;
        match review {
            _ if !decision.committed => Ok(decision),
            Some(review) if review.approved => Ok(decision),
            Some(review) => Ok(self.voided(
                tx,
                format!("rejected in review by {}: {}", review.by, review.reason),
            )),
            None => {
                let hold = Hold {
                    tx: tx.id.clone(),
                    at_ms: self.now_ms(),
                };
                self.store.insert_hold(&hold).await?;
                Err(held())
            }
        }
    }

    /// Records an admin's decision on a held transaction and drives it to its outcome. The first
    /// review stands: a second is [`Error::Conflict`].
    pub async fn review(&self, review: Review) -> Result<Settled> {
        let tx = self
            .store
            .transaction(&review.tx)
            .await?
            .filter(|tx| tx.flag.as_ref().is_some_and(|flag| !flag.deny))
            .ok_or(Error::NotFound("held transaction"))?;
        if self.store.insert_review(&review).await? == Insert::Duplicate {
            return Err(Error::Conflict("this transaction was reviewed already".into()));
        }
        self.drive(&tx, true).await
    }

    fn voided(&self, tx: &Transaction, reason: String) -> Outcome {
        Outcome {
            tx: tx.id.clone(),
            committed: false,
            reason: Some(reason),
            at_ms: self.now_ms(),
        }
    }

    /// Opens every player side of every leg at once (they are different slots, mostly on
    /// different accounts): a transaction waits for its slowest opening, not for their sum.
    async fn open_all(
        &self,
        tx: &Transaction,
        careful: bool,
        opened: &mut HashSet<(usize, Side)>,
    ) -> Result<Outcome> {
        let sides: Vec<At<'_>> = player_sides(tx).collect();
        let openings = futures::future::try_join_all(sides.iter().map(|at| self.open(at, careful))).await?;
        let mut refusal = None;
        for (at, opening) in sides.iter().zip(openings) {
            match opening {
                Opening::Opened => {
                    opened.insert((at.index, at.side));
                }
                Opening::Refused(reason) => {
                    refusal.get_or_insert(reason);
                }
                Opening::Voided => {
                    refusal.get_or_insert_with(|| "voided".to_owned());
                }
            }
        }
        Ok(Outcome {
            tx: tx.id.clone(),
            committed: refusal.is_none(),
            reason: refusal,
            at_ms: self.now_ms(),
        })
    }

    async fn open(&self, at: &At<'_>, careful: bool) -> Result<Opening> {
        let stage = match at.side {
            Side::Debit => Stage::Reserve,
            Side::Credit => Stage::Hold,
        };
        let reference = slot_ref(&at.tx.id, at.index, at.side, Slot::Open);
        let posting = self.post(at, stage, &reference).await?;
        let filled = match posting {
            Post::Posted(posting) => posting,
            Post::Refused(reason) => match careful {
                true => match self.store.posting_by_ref(&reference).await? {
                    Some(posting) => posting,
                    None => return Ok(Opening::Refused(reason)),
                },
                false => return Ok(Opening::Refused(reason)),
            },
            Post::Filled => self.filling(&reference).await?,
        };
        Ok(match filled.stage {
            Stage::Void => Opening::Voided,
            _ => Opening::Opened,
        })
    }

    /// Inserts `decision` unless another driver decided first; returns the decision that stands.
    async fn decide(&self, decision: Outcome) -> Result<Outcome> {
        for _ in 0..3 {
            match self.store.insert_outcome(&decision).await {
                Ok(Insert::Inserted) => return Ok(decision),
                Ok(Insert::Duplicate) => {}
                Err(error) if error.is_transient() => {}
                Err(error) => return Err(error),
            }
            if let Some(stored) = self.store.outcome(&decision.tx).await? {
                return Ok(stored);
            }
        }
        Err(Error::Unavailable(format!(
            "could not decide transaction {}",
            decision.tx
        )))
    }

    /// Closes every side at once: flows into system accounts, and each player side's closing.
    async fn close_all(
        &self,
        tx: &Transaction,
        outcome: &Outcome,
        opened: &HashSet<(usize, Side)>,
    ) -> Result<()> {
        let mut flows = Vec::new();
        for (index, leg) in tx.legs.iter().enumerate() {
            for side in [Side::Debit, Side::Credit] {
                if let (Holder::System(name), true) = (holder(leg, side), outcome.committed) {
                    let amount = match side {
                        Side::Debit => -leg.amount,
                        Side::Credit => leg.amount,
                    };
                    flows.push(Flow {
                        reference: slot_ref(&tx.id, index, side, Slot::Close),
                        tx: tx.id.clone(),
                        leg: index as u32,
                        holder: name.clone(),
                        asset: leg.asset.clone(),
                        amount,
                        at_ms: self.now_ms(),
                    });
                }
            }
        }
        let sides: Vec<At<'_>> = player_sides(tx).collect();
        let closings = sides
            .iter()
            .map(|at| self.close(at, outcome.committed, opened.contains(&(at.index, at.side))));
        let (_, _) = futures::future::try_join(
            futures::future::try_join_all(flows.iter().map(|flow| self.insert_flow(flow))),
            futures::future::try_join_all(closings),
        )
        .await?;
        Ok(())
    }

    async fn close(&self, at: &At<'_>, committed: bool, opened_here: bool) -> Result<()> {
        if !committed && !opened_here {
            // Fill the opening slot with a tombstone unless a real opening is there to undo.
            let reference = slot_ref(&at.tx.id, at.index, at.side, Slot::Open);
            let filled = match self.post(at, Stage::Void, &reference).await? {
                Post::Posted(posting) => posting,
                Post::Filled => self.filling(&reference).await?,
                Post::Refused(reason) => return Err(Error::Invariant(reason)),
            };
            if filled.stage == Stage::Void {
                return Ok(());
            }
        }
        let stage = match (committed, at.side) {
            (true, Side::Debit) => Stage::Settle,
            (true, Side::Credit) => Stage::Credit,
            (false, Side::Debit) => Stage::Release,
            (false, Side::Credit) => Stage::Unhold,
        };
        let reference = slot_ref(&at.tx.id, at.index, at.side, Slot::Close);
        match self.post(at, stage, &reference).await? {
            Post::Posted(_) | Post::Filled => Ok(()),
            Post::Refused(reason) => Err(Error::Invariant(reason)),
        }
    }

    /// The posting filling a slot another driver filled.
    async fn filling(&self, reference: &str) -> Result<Posting> {
        self.store
            .posting_by_ref(reference)
            .await?
            .ok_or_else(|| Error::Invariant(format!("slot {reference} is taken but holds no posting")))
    }

    async fn insert_flow(&self, flow: &Flow) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.store.insert_flow(flow).await {
                // A duplicate is this flow, inserted by another driver or an earlier attempt.
                Ok(_) => return Ok(()),
                Err(error) if error.is_transient() && attempt < 3 => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Appends a posting of `stage` for `leg` to the player's account, filling `reference`, decided
    /// from the account's head; when another writer took the position, decides again on the newer
    /// head.
    async fn post(&self, at: &At<'_>, stage: Stage, reference: &str) -> Result<Post> {
        let At {
            tx,
            index,
            leg,
            player,
            ..
        } = *at;
        let key = account_key(player, &leg.asset);
        let _turn = self.accounts[stripe(&key)].lock().await;
        // An account this replica has not seen is assumed new: deciding from an empty account and
        // inserting at position 1 needs no read, and an account that is not new turns it into a
        // duplicate (then it is read). On FerretDB a read that finds nothing scans the collection.
        let remembered = self.remembered(&key);
        let known = remembered.is_some();
        let (mut head, mut fresh) = (remembered, false);
        for _ in 0..ATTEMPTS {
            let balance = head.as_ref().map(|posting| posting.balance).unwrap_or_default();
            let next = match apply(stage, balance, leg) {
                Ok(next) => next,
                // A remembered head may be stale: decide against the store's before refusing.
                Err(_) if !fresh => {
                    head = self.read_head(&key, head).await?;
                    fresh = true;
                    continue;
                }
                Err(Refusal::Refused(reason)) => return Ok(Post::Refused(reason)),
                // Another driver may have filled this slot already, from the head this one sees.
                Err(Refusal::Broken(reason)) => {
                    return match self.store.posting_by_ref(reference).await? {
                        Some(posting) => Ok(Post::Posted(posting)),
                        None => Err(Error::Invariant(format!("{key}: {reason}"))),
                    };
                }
            };
            let seq = head.as_ref().map_or(1, |posting| posting.seq + 1);
            let posting = Posting {
                id: posting_id(&key, seq),
                key: key.clone(),
                seq,
                reference: reference.to_owned(),
                tx: tx.id.clone(),
                leg: index as u32,
                stage,
                player: player.to_owned(),
                asset: leg.asset.clone(),
                balance: next,
                at_ms: self.now_ms(),
            };
            let duplicate = match self.store.insert_posting(&posting).await {
                Ok(Insert::Inserted) => {
                    self.remember(&posting);
                    return Ok(Post::Posted(posting));
                }
                Ok(Insert::Duplicate) => true,
                Err(error) if error.is_transient() => false,
                Err(error) => return Err(error),
            };
            // Whose posting holds the position? Ours (a lost acknowledgement, a twin driver),
            // another writer's, or none: then the duplicate was the reference, filled elsewhere.
            match self.store.posting(&posting.id).await? {
                Some(stored) if stored.reference == reference => {
                    self.remember(&stored);
                    return Ok(Post::Posted(stored));
                }
                // An account this replica did not know: its newest posting by index.
                Some(stored) if !known && stored.seq == 1 => head = self.read_head(&key, None).await?,
                Some(stored) => head = self.read_head(&key, Some(stored)).await?,
                None if duplicate => return Ok(Post::Filled),
                None => head = self.read_head(&key, head).await?,
            }
            fresh = true;
        }
        Err(Error::Contended {
            key,
            attempts: ATTEMPTS,
        })
    }

    /// The account's newest posting: from `from` (or what this process remembers, or the index),
    /// read forward by position until one is missing.
    async fn read_head(&self, key: &str, from: Option<Posting>) -> Result<Option<Posting>> {
        let mut newest = match from.or_else(|| self.remembered(key)) {
            Some(posting) => Some(posting),
            // Positions fill in order from 1: an account without one is empty, and most accounts
            // a replica has not seen are new. Only an old one needs the index (a scan on FerretDB).
            None => match self.store.posting(&posting_id(key, 1)).await? {
                None => return Ok(None),
                Some(_) => self.store.newest_posting(key).await?,
            },
        };
        loop {
            let next = newest.as_ref().map_or(1, |posting| posting.seq + 1);
            match self.store.posting(&posting_id(key, next)).await? {
                Some(posting) => newest = Some(posting),
                None => break,
            }
        }
        if let Some(posting) = &newest {
            self.remember(posting);
        }
        Ok(newest)
    }

    fn remembered(&self, key: &str) -> Option<Posting> {
        let heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        heads.get(key).cloned()
    }

    fn remember(&self, posting: &Posting) {
        let mut heads = self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if heads.len() >= REMEMBERED_HEADS {
            heads.clear();
        }
        match heads.get(&posting.key) {
            Some(known) if known.seq >= posting.seq => {}
            _ => {
                heads.insert(posting.key.clone(), posting.clone());
            }
        }
    }
}

/// Every player side of every leg of `tx`: where its postings go.
fn player_sides(tx: &Transaction) -> impl Iterator<Item = At<'_>> {
    tx.legs.iter().enumerate().flat_map(move |(index, leg)| {
        [Side::Debit, Side::Credit].into_iter().filter_map(move |side| {
            let player = holder(leg, side).account()?;
            Some(At {
                tx,
                index,
                leg,
                side,
                player,
            })
        })
    })
}

/// Which of the [`ACCOUNT_LOCKS`] an account takes turns on (FNV-1a of its key).
fn stripe(key: &str) -> usize {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % ACCOUNT_LOCKS as u64) as usize
}

fn holder(leg: &Leg, side: Side) -> &Holder {
    match side {
        Side::Debit => &leg.from,
        Side::Credit => &leg.to,
    }
}

/// Why a stage cannot apply to a balance.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The client's request cannot be met: it is voided with this reason.
    Refused(String),
    /// The account is not in a state the ledger's rules produce.
    Broken(String),
}

/// The account after `stage` of `leg`: the ledger's arithmetic, checked everywhere.
pub fn apply(stage: Stage, balance: Balance, leg: &Leg) -> Result<Balance, Refusal> {
    let amount = leg.amount;
    if amount <= 0 {
        return Err(Refusal::Broken(format!("amount {amount} is not positive")));
    }
    let overflow = || Refusal::Refused(format!("{} would overflow", leg.asset));
    let broken = |what: &str| Refusal::Broken(format!("{what} below {amount} at {stage:?}: {balance:?}"));
    let mut next = balance;
    match stage {
        Stage::Reserve => {
            if balance.available < amount && !leg.debt {
                return Err(Refusal::Refused(format!(
                    "not enough {}: {} available, {} needed",
                    leg.asset, balance.available, amount
                )));
            }
            next.available = balance.available.checked_sub(amount).ok_or_else(overflow)?;
            next.reserved = balance.reserved.checked_add(amount).ok_or_else(overflow)?;
        }
        Stage::Hold => {
            let after = balance
                .available
                .checked_add(balance.reserved)
                .and_then(|owned| owned.checked_add(balance.incoming))
                .and_then(|total| total.checked_add(amount))
                .ok_or_else(overflow)?;
            if after > leg.limit {
                return Err(Refusal::Refused(format!(
                    "{} would exceed its limit of {}",
                    leg.asset, leg.limit
                )));
            }
            next.incoming += amount;
        }
        Stage::Void => {}
        Stage::Settle => {
            next.reserved = balance
                .reserved
                .checked_sub(amount)
                .filter(|r| *r >= 0)
                .ok_or_else(|| broken("reserved"))?;
        }
        Stage::Credit => {
            next.incoming = balance
                .incoming
                .checked_sub(amount)
                .filter(|i| *i >= 0)
                .ok_or_else(|| broken("incoming"))?;
            next.available = balance.available.checked_add(amount).ok_or_else(overflow)?;
        }
        Stage::Release => {
            next.reserved = balance
                .reserved
                .checked_sub(amount)
                .filter(|r| *r >= 0)
                .ok_or_else(|| broken("reserved"))?;
            next.available = balance.available.checked_add(amount).ok_or_else(overflow)?;
        }
        Stage::Unhold => {
            next.incoming = balance
                .incoming
                .checked_sub(amount)
                .filter(|i| *i >= 0)
                .ok_or_else(|| broken("incoming"))?;
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg(amount: i64, limit: i64) -> Leg {
        Leg {
            asset: "c:gold".into(),
            amount,
            from: Holder::Player("a".into()),
            to: Holder::Player("b".into()),
            limit,
            debt: false,
        }
    }

    fn balance(available: i64, reserved: i64, incoming: i64) -> Balance {
        Balance {
            available,
            reserved,
            incoming,
        }
    }

    #[test]
    fn a_reservation_moves_available_value_aside_and_refuses_an_overdraft() {
        assert_eq!(
            apply(Stage::Reserve, balance(10, 0, 0), &leg(4, 100)),
            Ok(balance(6, 4, 0))
        );
        assert!(matches!(
            apply(Stage::Reserve, balance(3, 5, 0), &leg(4, 100)),
            Err(Refusal::Refused(reason)) if reason == "not enough c:gold: 3 available, 4 needed"
        ));
    }

    #[test]
    fn a_debt_leg_may_take_a_balance_below_zero_and_income_repays_it_first() {
        let debt = Leg {
            debt: true,
            ..leg(10, 100)
        };
        let reserved = apply(Stage::Reserve, balance(4, 0, 0), &debt).expect("debt allowed");
        assert_eq!(reserved, balance(-6, 10, 0));
        let settled = apply(Stage::Settle, reserved, &debt).expect("settle");
        assert!(matches!(
            apply(Stage::Reserve, settled, &leg(1, 100)),
            Err(Refusal::Refused(_))
        ));
        let held = apply(Stage::Hold, settled, &leg(8, 100)).expect("hold");
        assert_eq!(apply(Stage::Credit, held, &leg(8, 100)), Ok(balance(2, 0, 0)));
    }

    #[test]
    fn a_hold_counts_owned_and_incoming_value_against_the_limit() {
        assert_eq!(
            apply(Stage::Hold, balance(5, 2, 1), &leg(2, 10)),
            Ok(balance(5, 2, 3))
        );
        assert!(matches!(
            apply(Stage::Hold, balance(5, 2, 1), &leg(3, 10)),
            Err(Refusal::Refused(_))
        ));
        assert!(matches!(
            apply(Stage::Hold, balance(i64::MAX - 1, 0, 0), &leg(2, i64::MAX)),
            Err(Refusal::Refused(reason)) if reason.contains("overflow")
        ));
    }

    #[test]
    fn closing_stages_undo_or_complete_what_opening_did() {
        let reserved = apply(Stage::Reserve, balance(10, 0, 0), &leg(4, 100)).expect("reserve");
        assert_eq!(apply(Stage::Settle, reserved, &leg(4, 100)), Ok(balance(6, 0, 0)));
        assert_eq!(
            apply(Stage::Release, reserved, &leg(4, 100)),
            Ok(balance(10, 0, 0))
        );
        let held = apply(Stage::Hold, balance(1, 0, 0), &leg(4, 100)).expect("hold");
        assert_eq!(apply(Stage::Credit, held, &leg(4, 100)), Ok(balance(5, 0, 0)));
        assert_eq!(apply(Stage::Unhold, held, &leg(4, 100)), Ok(balance(1, 0, 0)));
    }

    #[test]
    fn closing_what_was_never_opened_is_reported_as_broken() {
        assert!(matches!(
            apply(Stage::Settle, balance(10, 3, 0), &leg(4, 100)),
            Err(Refusal::Broken(_))
        ));
        assert!(matches!(
            apply(Stage::Credit, balance(10, 0, 0), &leg(4, 100)),
            Err(Refusal::Broken(_))
        ));
        assert!(matches!(
            apply(Stage::Reserve, balance(10, 0, 0), &leg(0, 100)),
            Err(Refusal::Broken(_))
        ));
    }
}
