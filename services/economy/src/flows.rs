//! What the economy tells the analytics service: every committed currency movement that touches a
//! player, as a `resource` event from that player's side — a `source` for the one who receives,
//! a `sink` for the one who pays. A gift is both, so it nets to zero in the economy's totals.
//! Market sales, trades, auction bids and settlements, reversals and approved reviews move value
//! through escrow and system accounts: only their player sides are reported, so a sale is a sink
//! for the buyer (into escrow) and a source for the seller (out of it).
//!
//! The ledger reports each transaction once it committed ([`Ledger::on_commit`]), whichever path
//! drove it, and the events' ids derive from the transaction's id, so a retried request or a
//! recovery that reports it again is counted once by analytics.
//!
//! [`Ledger::on_commit`]: crate::ledger::engine::Ledger::on_commit

use flotilla_service::analytics::{self, Emitter};
use serde_json::{Value, json};

use crate::ledger::engine::OnCommit;
use crate::ledger::model::Transaction;

/// The ledger's observer that queues each committed transaction's resource events on `emitter`.
pub fn reporter(emitter: Emitter) -> OnCommit {
    std::sync::Arc::new(move |tx: &Transaction| {
        for event in events(tx) {
            emitter.emit(event);
        }
    })
}

fn events(tx: &Transaction) -> Vec<Value> {
    // Transaction ids hold the caller's idempotency key (up to 255 characters of anything); the
    // collector's ids are 64 URL-safe characters.
    let digest = crate::transactions::request_hash("analytics", tx.id.as_bytes());
    let mut events = Vec::new();
    for (index, leg) in tx.legs.iter().enumerate() {
        let Some(currency) = leg.asset.strip_prefix("c:") else {
            continue;
        };
        let sides = [(leg.to.player(), "source", 'r'), (leg.from.player(), "sink", 'p')];
        for (player, flow, side) in sides {
            let Some(player) = player else { continue };
            let properties =
                json!({"flow": flow, "currency": currency, "amount": leg.amount, "kind": tx.kind});
            let id = format!("{digest}-{index}{side}");
            events.push(analytics::event(
                &id, "resource", player, None, tx.at_ms, properties,
            ));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use crate::ledger::model::{Holder, Leg};

    use super::*;

    fn leg(asset: &str, amount: i64, from: Holder, to: Holder) -> Leg {
        Leg {
            asset: asset.into(),
            amount,
            from,
            to,
            limit: i64::MAX,
            debt: false,
        }
    }

    fn tx(id: &str, kind: &str, legs: Vec<Leg>) -> Transaction {
        Transaction {
            id: id.into(),
            request_hash: String::new(),
            kind: kind.into(),
            memo: String::new(),
            legs,
            players: Vec::new(),
            at_ms: 1_700_000_000_000,
            flag: None,
        }
    }

    #[test]
    fn a_purchase_is_a_sink_and_a_source_and_items_are_not_reported() {
        let player = || Holder::Player("ana".into());
        let system = |name: &str| Holder::System(name.into());
        let purchase = tx(
            "ana:key-1",
            "purchase",
            vec![
                leg("c:gold", 120, player(), system("store")),
                leg("i:sword", 1, system("mint"), player()),
                leg("c:gems", 5, system("mint"), player()),
            ],
        );
        let events = events(&purchase);
        let flows: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e["player"].as_str(),
                    e["properties"]["flow"].as_str(),
                    e["properties"]["amount"].as_i64(),
                )
            })
            .collect();
        assert_eq!(
            flows,
            [
                (Some("ana"), Some("sink"), Some(120)),
                (Some("ana"), Some("source"), Some(5))
            ]
        );
        assert_eq!(events[0]["properties"]["currency"], "gold");
        assert_eq!(events[0]["properties"]["kind"], "purchase");
        assert_eq!(events[0]["time"], "2023-11-14T22:13:20Z");
        // The same transaction gives the same ids: a retried request is counted once.
        assert_eq!(events, super::events(&purchase));
    }

    #[test]
    fn a_gift_is_reported_from_both_sides_under_distinct_ids_that_fit_the_collector() {
        let key = "k".repeat(255);
        let gift = tx(
            &format!("{}:{key}", "a".repeat(64)),
            "gift",
            vec![leg(
                "c:gold",
                7,
                Holder::Player("ana".into()),
                Holder::Player("bo".into()),
            )],
        );
        let events = events(&gift);
        assert_eq!(events.len(), 2);
        assert_eq!(
            (
                events[0]["player"].as_str(),
                events[0]["properties"]["flow"].as_str()
            ),
            (Some("bo"), Some("source"))
        );
        assert_eq!(
            (
                events[1]["player"].as_str(),
                events[1]["properties"]["flow"].as_str()
            ),
            (Some("ana"), Some("sink"))
        );
        let ids: Vec<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
        assert_ne!(ids[0], ids[1]);
        for id in ids {
            assert!(id.len() <= 64, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b)),
                "{id}"
            );
        }
    }
}
