//! A trade's rules, as a pure function: from the state after one step and the next action, the
//! state after it and the ledger legs that make it so. No store, no clock: tested on its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{MAX_BALANCE, currency_asset, item_asset};
use crate::instances::instance_asset;
use crate::ledger::model::{Holder, Leg};

/// What one side puts on the table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Goods {
    #[serde(default)]
    pub currencies: BTreeMap<String, i64>,
    /// Stackable items by amount.
    #[serde(default)]
    pub items: BTreeMap<String, i64>,
    /// Instances of unique items: instance id → its item.
    #[serde(default)]
    pub instances: BTreeMap<String, String>,
}

impl Goods {
    pub fn is_empty(&self) -> bool {
        self.currencies.is_empty() && self.items.is_empty() && self.instances.is_empty()
    }

    /// `(asset, amount)` for everything, with one count unit per instance (see [`crate::instances`]).
    fn assets(&self) -> BTreeMap<String, i64> {
        let mut assets = BTreeMap::new();
        for (code, amount) in &self.currencies {
            *assets.entry(currency_asset(code)).or_default() += amount;
        }
        for (id, amount) in &self.items {
            *assets.entry(item_asset(id)).or_default() += amount;
        }
        for (instance, item) in &self.instances {
            assets.insert(instance_asset(item, instance), 1);
            *assets.entry(item_asset(item)).or_default() += 1;
        }
        assets
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Side {
    pub player: String,
    pub goods: Goods,
    /// The version this side accepted; withdrawn by any change.
    pub accepted: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Status {
    Open,
    /// Both sides' goods moved.
    Completed,
    Cancelled {
        by: String,
    },
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeState {
    /// The one who opened it, then the other.
    pub sides: [Side; 2],
    /// The step of the latest change to the goods: what acceptances name.
    pub version: i64,
    pub status: Status,
    /// Why the last attempt to complete failed (a limit on the receiving side).
    pub failed: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Action {
    Open {
        a: String,
        b: String,
    },
    Offer {
        goods: Goods,
    },
    Accept {
        version: i64,
    },
    /// Appended by whoever sees both sides accept the same version.
    Complete,
    Cancel,
    Expire,
}

/// Why an action does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotAParty,
    Closed,
    StaleVersion { current: i64 },
}

/// The effect of one action: the state if its legs commit, the state if they are voided, and the
/// legs (none for actions that move nothing).
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub state: TradeState,
    pub voided: TradeState,
    pub legs: Vec<Leg>,
}

/// The escrow holding one side's goods.
pub fn escrow(trade: &str, side: usize) -> Holder {
    Holder::Escrow(format!("trade:{trade}:{}", ["a", "b"][side]))
}

/// The state after the first step: nothing offered.
pub fn opened(a: &str, b: &str) -> TradeState {
    let side = |player: &str| Side {
        player: player.to_owned(),
        goods: Goods::default(),
        accepted: None,
    };
    TradeState {
        sides: [side(a), side(b)],
        version: 1,
        status: Status::Open,
        failed: None,
    }
}

/// Applies `action` by `by` (a party, or `"system"` for expiry) as step `seq` of trade `trade`.
/// `Ok(None)`: the action changes nothing (an offer of what is on the table, an acceptance given,
/// a cancel of a closed trade), so nothing is appended. `limit(asset)` is the most a player may
/// hold of it (the catalog's), for goods changing hands on completion.
pub fn step(
    state: &TradeState,
    trade: &str,
    seq: i64,
    by: &str,
    action: &Action,
    limit: impl Fn(&str) -> i64,
) -> Result<Option<Step>, Refusal> {
    let side = state.sides.iter().position(|s| s.player == by);
    let open = state.status == Status::Open;
    let mut next = state.clone();
    next.failed = None;
    match action {
        Action::Open { .. } => Err(Refusal::Closed),
        Action::Cancel | Action::Expire if !open => Ok(None),
        _ if !open => Err(Refusal::Closed),
        Action::Offer { goods } => {
            let side = side.ok_or(Refusal::NotAParty)?;
            if state.sides[side].goods == *goods {
                return Ok(None);
            }
            let player = Holder::Player(by.to_owned());
            let legs = exchange(&state.sides[side].goods, goods, &player, &escrow(trade, side));
            next.sides[side].goods = goods.clone();
            next.version = seq;
            for side in &mut next.sides {
                side.accepted = None;
            }
            Ok(Some(Step {
                state: next,
                voided: state.clone(),
                legs,
            }))
        }
        Action::Accept { version } => {
            let side = side.ok_or(Refusal::NotAParty)?;
            if *version != state.version {
                return Err(Refusal::StaleVersion {
                    current: state.version,
                });
            }
            if state.sides[side].accepted == Some(*version) {
                return Ok(None);
            }
            next.sides[side].accepted = Some(*version);
            Ok(Some(Step {
                voided: next.clone(),
                state: next,
                legs: Vec::new(),
            }))
        }
        Action::Complete => {
            let version = Some(state.version);
            if state.sides.iter().any(|side| side.accepted != version) {
                return Ok(None);
            }
            let mut legs = Vec::new();
            for (from, to) in [(0, 1), (1, 0)] {
                let receiver = Holder::Player(state.sides[to].player.clone());
                for (asset, amount) in state.sides[from].goods.assets() {
                    legs.push(Leg {
                        limit: limit(&asset),
                        asset,
                        amount,
                        from: escrow(trade, from),
                        to: receiver.clone(),
                        debt: false,
                    });
                }
            }
            next.status = Status::Completed;
            let mut voided = state.clone();
            for side in &mut voided.sides {
                side.accepted = None;
            }
            voided.failed =
                Some("the goods could not change hands (a limit); accept again after a change".into());
            Ok(Some(Step {
                state: next,
                voided,
                legs,
            }))
        }
        Action::Cancel | Action::Expire => {
            if matches!(action, Action::Cancel) && side.is_none() {
                return Err(Refusal::NotAParty);
            }
            let legs = (0..2)
                .flat_map(|index| {
                    let owner = Holder::Player(state.sides[index].player.clone());
                    exchange(
                        &state.sides[index].goods,
                        &Goods::default(),
                        &owner,
                        &escrow(trade, index),
                    )
                })
                .collect();
            next.status = match action {
                Action::Cancel => Status::Cancelled { by: by.to_owned() },
                _ => Status::Expired,
            };
            Ok(Some(Step {
                state: next,
                voided: state.clone(),
                legs,
            }))
        }
    }
}

/// The legs that change what `escrow` holds for `player` from `old` to `new`: the difference of
/// each asset deposited or returned. Returns may pass a limit the player reached meanwhile (they
/// were the player's), deposits are checked against what the player has.
fn exchange(old: &Goods, new: &Goods, player: &Holder, escrow: &Holder) -> Vec<Leg> {
    let (old, new) = (old.assets(), new.assets());
    let assets: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut legs = Vec::new();
    for asset in assets {
        let delta = new.get(asset).copied().unwrap_or(0) - old.get(asset).copied().unwrap_or(0);
        let (from, to) = match delta {
            0 => continue,
            d if d > 0 => (player, escrow),
            _ => (escrow, player),
        };
        legs.push(Leg {
            asset: asset.clone(),
            amount: delta.abs(),
            from: from.clone(),
            to: to.clone(),
            limit: MAX_BALANCE,
            debt: false,
        });
    }
    legs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold(amount: i64) -> Goods {
        Goods {
            currencies: BTreeMap::from([("gold".to_owned(), amount)]),
            ..Goods::default()
        }
    }

    fn run(state: &TradeState, seq: i64, by: &str, action: Action) -> Step {
        step(state, "t", seq, by, &action, |_| 100)
            .expect("applies")
            .expect("changes something")
    }

    #[test]
    fn a_change_of_offer_moves_the_difference_and_withdraws_both_acceptances() {
        let start = opened("ann", "bob");
        let offered = run(&start, 2, "ann", Action::Offer { goods: gold(10) });
        assert_eq!(offered.legs.len(), 1);
        assert_eq!(offered.legs[0].from, Holder::Player("ann".into()));
        assert_eq!(offered.legs[0].to, escrow("t", 0));
        let accepted = run(&offered.state, 3, "bob", Action::Accept { version: 2 });
        assert_eq!(accepted.state.sides[1].accepted, Some(2));
        let lowered = run(&accepted.state, 4, "ann", Action::Offer { goods: gold(4) });
        assert_eq!(
            (lowered.legs[0].amount, &lowered.legs[0].to),
            (6, &Holder::Player("ann".into())),
            "6 of the 10 come back"
        );
        assert_eq!(lowered.state.version, 4);
        assert!(lowered.state.sides.iter().all(|side| side.accepted.is_none()));
        assert_eq!(
            lowered.voided, accepted.state,
            "if the ledger refuses, nothing changed"
        );
    }

    #[test]
    fn completion_needs_both_acceptances_of_the_current_version() {
        let offered = run(&opened("ann", "bob"), 2, "ann", Action::Offer { goods: gold(10) });
        let ann = run(&offered.state, 3, "ann", Action::Accept { version: 2 });
        assert_eq!(
            step(&ann.state, "t", 4, "x", &Action::Complete, |_| 100),
            Ok(None)
        );
        assert_eq!(
            step(&ann.state, "t", 4, "bob", &Action::Accept { version: 1 }, |_| 100),
            Err(Refusal::StaleVersion { current: 2 })
        );
        let both = run(&ann.state, 4, "bob", Action::Accept { version: 2 });
        let done = run(&both.state, 5, "bob", Action::Complete);
        assert_eq!(done.state.status, Status::Completed);
        assert_eq!(done.legs.len(), 1);
        assert_eq!(
            (&done.legs[0].from, &done.legs[0].to, done.legs[0].limit),
            (&escrow("t", 0), &Holder::Player("bob".into()), 100)
        );
        assert!(done.voided.sides.iter().all(|side| side.accepted.is_none()));
        assert_eq!(
            step(
                &done.state,
                "t",
                6,
                "ann",
                &Action::Offer { goods: gold(1) },
                |_| 100
            ),
            Err(Refusal::Closed)
        );
        assert_eq!(
            step(&done.state, "t", 6, "ann", &Action::Cancel, |_| 100),
            Ok(None)
        );
    }

    #[test]
    fn cancel_and_expiry_return_both_sides_and_strangers_cannot_act() {
        let mut goods = gold(3);
        goods.instances.insert("i1".into(), "relic".into());
        let offered = run(&opened("ann", "bob"), 2, "bob", Action::Offer { goods });
        assert_eq!(offered.legs.len(), 3, "gold, the instance and its count");
        for action in [Action::Cancel, Action::Expire] {
            let by = if action == Action::Cancel { "ann" } else { "system" };
            let closed = run(&offered.state, 3, by, action);
            assert_eq!(closed.legs.len(), 3);
            assert!(
                closed
                    .legs
                    .iter()
                    .all(|leg| leg.to == Holder::Player("bob".into()))
            );
        }
        assert_eq!(
            step(&offered.state, "t", 3, "eve", &Action::Cancel, |_| 100),
            Err(Refusal::NotAParty)
        );
        assert_eq!(
            step(
                &offered.state,
                "t",
                3,
                "eve",
                &Action::Offer { goods: gold(1) },
                |_| 100
            ),
            Err(Refusal::NotAParty)
        );
    }
}
