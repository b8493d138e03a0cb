//! Reversal: an admin undoes a committed transaction with a compensating one — its legs run
//! backwards — and history is never edited. Who asked and why is recorded on the reversal.
//!
//! When the proceeds were already spent, the policy decides:
//! - `fail`: the reversal is refused (422), and may be tried again with another policy;
//! - `debt`: the payer's balance may go below zero; the negative balance is the debt, and later
//!   income repays it first;
//! - `clawback`: take what is left, up to the original amount, and record the shortfall.
//!
//! Attempts at reversing transaction `t` are the transactions `reversal:t#1`, `#2`, …, each
//! created (a unique insert) only after the one before it was voided: so at most one attempt
//! commits, a committed one is answered to every later request (reversing is idempotent), and two
//! admins reversing at once cannot both succeed.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::caller::AdminCaller;
use crate::catalog::{MAX_BALANCE, item_asset};
use crate::instances::parse_instance_asset;
use crate::ledger::model::{Holder, Leg, Transaction};
use crate::ledger::store::LedgerStore;
use crate::state::Shared;
use crate::transactions::{TransactionView, request_hash};
use crate::{Error, Result};
use flotilla_service::extract::JsonBody;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/admin/reversals", post(reverse))
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "camelCase")]
pub enum Policy {
    Fail,
    Debt,
    Clawback,
}

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReversalRequest {
    /// The transaction's id, as its view shows it.
    pub transaction: String,
    /// Why: recorded on the reversal. 1-200 characters.
    pub reason: String,
    /// Who asked (an operator's name), recorded with the reason. 1-64 characters.
    pub by: String,
    /// What to do when the proceeds were spent; the service's `--reversal-policy` when absent.
    pub policy: Option<Policy>,
}

/// Attempts at one reversal this request makes before giving up: a clawback decided on balances
/// that then moved is voided and tried again.
const ATTEMPTS: usize = 8;

/// Reversal attempts one transaction may have (each refused one leaves one behind).
const MAX_ATTEMPTS: i64 = 100;

async fn reverse(
    State(state): State<Shared>,
    _: AdminCaller,
    JsonBody(request): JsonBody<ReversalRequest>,
) -> Result<Json<TransactionView>> {
    if !(1..=200).contains(&request.reason.chars().count()) {
        return Err(Error::bad("reason", "must be 1-200 characters"));
    }
    if !(1..=64).contains(&request.by.chars().count()) {
        return Err(Error::bad("by", "must be 1-64 characters"));
    }
    let policy = request.policy.unwrap_or(state.reversal_policy);
    let ledger = &state.ledger;
    let original = ledger
        .store()
        .transaction(&request.transaction)
        .await?
        .ok_or(Error::NotFound("transaction"))?;
    if original.kind == "reversal" {
        return Err(Error::Conflict("a reversal cannot be reversed".into()));
    }
    match ledger.store().outcome(&original.id).await? {
        Some(outcome) if outcome.committed => {}
        _ => {
            return Err(Error::Conflict(
                "only a committed transaction can be reversed".into(),
            ));
        }
    }
    let mut tried = 0;
    for attempt in 1..=MAX_ATTEMPTS {
        let id = format!("reversal:{}#{attempt}", original.id);
        if let Some(settled) = ledger.settled(&id).await? {
            if settled.outcome.committed {
                return Ok(Json(TransactionView::new(&settled.tx, Some(&settled.outcome))));
            }
            continue; // voided: the next attempt may be made
        }
        if let Some(existing) = ledger.store().transaction(&id).await? {
            // Created but unfinished: drive it (a retry after a lost answer, or a crash).
            let settled = ledger.submit(existing).await?;
            if settled.outcome.committed {
                return Ok(Json(TransactionView::new(&settled.tx, Some(&settled.outcome))));
            }
            continue;
        }
        let (legs, shortfall) = compensate(&state, &original, policy).await?;
        let mut memo = format!("reverses {} by {}: {}", original.id, request.by, request.reason);
        if !shortfall.is_empty() {
            memo.push_str(&format!(" (shortfall: {})", shortfall.join(", ")));
        }
        let body = serde_json::to_vec(&(&original.id, policy, &legs))
            .map_err(|e| Error::Invariant(e.to_string()))?;
        let mut players: Vec<String> = original.players.clone();
        players.sort();
        let tx = Transaction {
            id,
            request_hash: request_hash("reversal", &body),
            kind: "reversal".into(),
            memo,
            legs,
            players,
            at_ms: ledger.now_ms(),
            flag: None,
        };
        let settled = ledger.submit(tx).await?;
        if settled.outcome.committed {
            return Ok(Json(TransactionView::new(&settled.tx, Some(&settled.outcome))));
        }
        if policy != Policy::Clawback {
            let reason = settled.outcome.reason.unwrap_or_else(|| "voided".into());
            return Err(Error::Refused(format!(
                "the proceeds were spent ({reason}); try the debt or clawback policy"
            )));
        }
        tried += 1;
        if tried >= ATTEMPTS {
            break;
        }
    }
    Err(Error::Contended {
        key: request.transaction,
        attempts: ATTEMPTS,
    })
}

/// The original's legs run backwards. Under `clawback`, each leg that takes value back from a
/// player takes at most what the player has now, and the rest is reported as the shortfall.
///
/// A unique item's count moves with its instances ([`crate::instances`]), so its legs are not
/// reversed on their own: each instance taken back brings one unit of the count with it.
async fn compensate(
    state: &Shared,
    original: &Transaction,
    policy: Policy,
) -> Result<(Vec<Leg>, Vec<String>)> {
    let counted = |asset: &str| {
        asset.strip_prefix("i:").is_some_and(|id| {
            original
                .legs
                .iter()
                .any(|leg| instance_of(&leg.asset) == Some(id))
        })
    };
    let mut legs: Vec<Leg> = Vec::new();
    let mut shortfall = Vec::new();
    for leg in original.legs.iter().filter(|leg| !counted(&leg.asset)) {
        let mut amount = leg.amount;
        if let (Policy::Clawback, Holder::Player(player)) = (policy, &leg.to) {
            let balance = state.ledger.balance(player, &leg.asset).await?;
            amount = amount.min(balance.available.max(0));
            if amount < leg.amount {
                shortfall.push(format!("{} {} from {player}", leg.amount - amount, leg.asset));
            }
        }
        if amount == 0 {
            continue;
        }
        legs.push(Leg {
            asset: leg.asset.clone(),
            amount,
            from: leg.to.clone(),
            to: leg.from.clone(),
            // Giving back what was taken may pass a limit the catalog set since: it is allowed.
            limit: MAX_BALANCE,
            debt: policy == Policy::Debt,
        });
    }
    let mut counts: Vec<Leg> = Vec::new();
    for leg in &legs {
        let Some(id) = instance_of(&leg.asset) else {
            continue;
        };
        let asset = item_asset(id);
        match counts
            .iter_mut()
            .find(|c| c.asset == asset && c.from == leg.from && c.to == leg.to)
        {
            Some(count) => count.amount += 1,
            None => counts.push(Leg {
                asset,
                amount: 1,
                ..leg.clone()
            }),
        }
    }
    legs.extend(counts);
    Ok((legs, shortfall))
}

/// The item of an instance's asset.
fn instance_of(asset: &str) -> Option<&str> {
    parse_instance_asset(asset).map(|(item, _)| item)
}
