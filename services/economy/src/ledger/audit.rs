//! The auditor: recomputes every account from its postings and every transaction from its slots,
//! and reports anything the ledger's rules cannot produce. Used after every step of the simulation,
//! by the tests on FerretDB, and by the service's continuous audit (`flotilla_economy_audit_drift`).
//!
//! The documents may be read while writers run, with no snapshot: every document is immutable, and
//! they are read in the order they are written (postings and flows, then outcomes, then
//! transactions), so anything a posting refers to is there when it is checked. An account is
//! checked up to its first missing position, which a concurrent reader may see.

use std::collections::{BTreeMap, HashMap};

use crate::ledger::engine::{Refusal, apply};
use crate::ledger::model::{Flow, Holder, Outcome, Posting, Side, Slot, Stage, Transaction, slot_ref};

/// What the ledger holds of one asset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Σ available + reserved over players' accounts: what players own.
    pub owned: i64,
    pub reserved: i64,
    pub incoming: i64,
    /// Net value out of system accounts (minted − burned).
    pub issued: i64,
    /// Legs of committed transactions closed on one side only, in the direction of the closed
    /// side: what is between accounts right now.
    pub in_flight: i64,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub totals: BTreeMap<String, Totals>,
    /// Value created or destroyed, summed over assets: must stay 0.
    pub drift: i64,
    pub violations: Vec<String>,
    /// Transactions not yet finished.
    pub unfinished: usize,
}

impl Report {
    /// Whether the books balance and every rule held.
    pub fn is_clean(&self) -> bool {
        self.drift == 0 && self.violations.is_empty()
    }

    /// Whether, with nothing in flight, players own exactly what was issued and nothing is left
    /// reserved or held: the state after every transaction finished.
    pub fn is_settled(&self) -> bool {
        self.unfinished == 0
            && self
                .totals
                .values()
                .all(|t| t.in_flight == 0 && t.reserved == 0 && t.incoming == 0 && t.owned == t.issued)
    }
}

/// Everything the ledger stored, read in this order when writers may be running: `finished` first
/// (so every slot of those transactions is filled before the slots are read), then postings and
/// flows, then outcomes and transactions (so whatever a posting refers to is there).
#[derive(Clone, Debug, Default)]
pub struct Books {
    /// Transactions already finished before the postings were read.
    pub finished: Vec<String>,
    pub postings: Vec<Posting>,
    pub flows: Vec<Flow>,
    pub outcomes: Vec<Outcome>,
    pub transactions: Vec<Transaction>,
}

pub fn audit(books: &Books) -> Report {
    let mut report = Report::default();
    let transactions: HashMap<&str, &Transaction> =
        books.transactions.iter().map(|tx| (tx.id.as_str(), tx)).collect();
    let outcomes: HashMap<&str, &Outcome> = books.outcomes.iter().map(|o| (o.tx.as_str(), o)).collect();
    let mut accounts: BTreeMap<&str, Vec<&Posting>> = BTreeMap::new();
    for posting in &books.postings {
        accounts.entry(posting.key.as_str()).or_default().push(posting);
    }
    // Which slots hold what: stage per posting reference, and flows by reference.
    let mut slots: HashMap<&str, Stage> = HashMap::new();
    let mut closed: Vec<(&str, u32, Side, &str)> = Vec::new();

    for (key, mut postings) in accounts {
        postings.sort_by_key(|p| p.seq);
        let mut previous = Default::default();
        let asset = postings[0].asset.clone();
        for (position, posting) in postings.iter().enumerate() {
            if posting.seq != position as i64 + 1 {
                break; // a reader without a snapshot may see a later position before an earlier one
            }
            let violation = check_posting(posting, previous, &transactions, &outcomes);
            if let Some((message, value)) = violation {
                report
                    .violations
                    .push(format!("{key}#{}: {message}", posting.seq));
                report.drift += value;
            }
            slots.insert(&posting.reference, posting.stage);
            if let Some(side) = closing_side(posting.stage) {
                closed.push((&posting.tx, posting.leg, side, &posting.asset));
            }
            previous = posting.balance;
        }
        let totals = report.totals.entry(asset).or_default();
        totals.owned += previous.available + previous.reserved;
        totals.reserved += previous.reserved;
        totals.incoming += previous.incoming;
    }

    for flow in &books.flows {
        match outcomes.get(flow.tx.as_str()) {
            Some(outcome) if outcome.committed => {}
            _ => {
                report
                    .violations
                    .push(format!("flow {} without a commit", flow.reference));
                report.drift += flow.amount.abs();
            }
        }
        report.totals.entry(flow.asset.clone()).or_default().issued -= flow.amount;
        let side = if flow.amount < 0 {
            Side::Debit
        } else {
            Side::Credit
        };
        closed.push((&flow.tx, flow.leg, side, &flow.asset));
    }

    // In flight: legs of committed transactions with one side closed.
    let mut sides: HashMap<(&str, u32), (bool, bool, &str, i64)> = HashMap::new();
    for (tx, leg, side, asset) in &closed {
        let amount = transactions
            .get(tx)
            .and_then(|t| t.legs.get(*leg as usize))
            .map_or(0, |l| l.amount);
        let entry = sides.entry((tx, *leg)).or_insert((false, false, asset, amount));
        match side {
            Side::Debit => entry.0 = true,
            Side::Credit => entry.1 = true,
        }
    }
    for ((tx, _), (debited, credited, asset, amount)) in sides {
        let committed = outcomes.get(tx).is_some_and(|o| o.committed);
        if !committed {
            continue; // releases and unholds move nothing between accounts
        }
        let totals = report.totals.entry(asset.to_owned()).or_default();
        match (debited, credited) {
            (true, false) => totals.in_flight -= amount,
            (false, true) => totals.in_flight += amount,
            _ => {}
        }
    }

    let finished: std::collections::HashSet<&str> = books.finished.iter().map(String::as_str).collect();
    for tx in &books.transactions {
        if finished.contains(tx.id.as_str()) {
            check_finished(tx, &outcomes, &slots, &books.flows, &mut report);
        } else {
            report.unfinished += 1;
        }
    }

    for (asset, totals) in &report.totals {
        let unexplained = totals.owned - totals.issued - totals.in_flight;
        if unexplained != 0 {
            report.violations.push(format!(
                "{asset}: players own {} but {} was issued and {} is in flight",
                totals.owned, totals.issued, totals.in_flight
            ));
            report.drift += unexplained.abs();
        }
    }
    report
}

fn closing_side(stage: Stage) -> Option<Side> {
    match stage {
        Stage::Settle => Some(Side::Debit),
        Stage::Credit => Some(Side::Credit),
        _ => None,
    }
}

/// Whether `posting` follows from `previous` by its transaction's rules; the violation and the
/// value it created or destroyed when not.
fn check_posting(
    posting: &Posting,
    previous: crate::ledger::model::Balance,
    transactions: &HashMap<&str, &Transaction>,
    outcomes: &HashMap<&str, &Outcome>,
) -> Option<(String, i64)> {
    let owned = |b: crate::ledger::model::Balance| b.available + b.reserved;
    let value = (owned(posting.balance) - owned(previous)).abs();
    let Some(tx) = transactions.get(posting.tx.as_str()) else {
        return Some((format!("transaction {} does not exist", posting.tx), value));
    };
    let Some(leg) = tx.legs.get(posting.leg as usize) else {
        return Some((format!("{} has no leg {}", tx.id, posting.leg), value));
    };
    let side = match posting.stage {
        Stage::Reserve | Stage::Settle | Stage::Release => Side::Debit,
        Stage::Hold | Stage::Credit | Stage::Unhold => Side::Credit,
        Stage::Void => match posting.reference.ends_with("/debit/open") {
            true => Side::Debit,
            false => Side::Credit,
        },
    };
    let holder = match side {
        Side::Debit => &leg.from,
        Side::Credit => &leg.to,
    };
    if holder.account() != Some(posting.player.as_str()) || leg.asset != posting.asset {
        return Some((format!("does not belong to {} leg {}", tx.id, posting.leg), value));
    }
    let slot = match posting.stage {
        Stage::Reserve | Stage::Hold | Stage::Void => Slot::Open,
        _ => Slot::Close,
    };
    if posting.reference != slot_ref(&tx.id, posting.leg as usize, side, slot) {
        return Some((
            format!("reference {} does not match its stage", posting.reference),
            value,
        ));
    }
    let outcome = outcomes.get(posting.tx.as_str());
    let allowed = match posting.stage {
        Stage::Reserve | Stage::Hold => true,
        Stage::Void => outcome.is_some_and(|o| !o.committed),
        Stage::Settle | Stage::Credit => outcome.is_some_and(|o| o.committed),
        Stage::Release | Stage::Unhold => outcome.is_some_and(|o| !o.committed),
    };
    if !allowed {
        return Some((
            format!("{:?} contradicts the outcome of {}", posting.stage, tx.id),
            value,
        ));
    }
    match apply(posting.stage, previous, leg) {
        Ok(expected) if expected == posting.balance => None,
        Ok(expected) => Some((
            format!("balance {:?}, expected {expected:?}", posting.balance),
            value,
        )),
        Err(Refusal::Refused(reason) | Refusal::Broken(reason)) => Some((
            format!("{:?} should not have applied: {reason}", posting.stage),
            value,
        )),
    }
}

/// A finished transaction has every slot filled as its outcome says.
fn check_finished(
    tx: &Transaction,
    outcomes: &HashMap<&str, &Outcome>,
    slots: &HashMap<&str, Stage>,
    flows: &[Flow],
    report: &mut Report,
) {
    let Some(outcome) = outcomes.get(tx.id.as_str()) else {
        report
            .violations
            .push(format!("{} finished without an outcome", tx.id));
        return;
    };
    for (index, leg) in tx.legs.iter().enumerate() {
        for side in [Side::Debit, Side::Credit] {
            let holder = match side {
                Side::Debit => &leg.from,
                Side::Credit => &leg.to,
            };
            let close = slot_ref(&tx.id, index, side, Slot::Close);
            let fine = match holder {
                Holder::System(_) => outcome.committed == flows.iter().any(|f| f.reference == close),
                Holder::Player(_) | Holder::Escrow(_) => {
                    let open = slots.get(slot_ref(&tx.id, index, side, Slot::Open).as_str());
                    let close = slots.get(close.as_str());
                    matches!(
                        (outcome.committed, open, close),
                        (true, Some(Stage::Reserve), Some(Stage::Settle))
                            | (true, Some(Stage::Hold), Some(Stage::Credit))
                            | (false, Some(Stage::Void), None)
                            | (false, Some(Stage::Reserve), Some(Stage::Release))
                            | (false, Some(Stage::Hold), Some(Stage::Unhold))
                    )
                }
            };
            if !fine {
                report.violations.push(format!(
                    "{} leg {index} {side:?} is not closed as its outcome says",
                    tx.id
                ));
            }
        }
    }
}
