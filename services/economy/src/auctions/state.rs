//! An auction's rules, as a pure function: from its state, the next action and the time, the
//! state after it and the ledger legs that make it so. No store, no clock: tested on its own.

use serde::{Deserialize, Serialize};

use crate::catalog::{MAX_AMOUNT, MAX_BALANCE, currency_asset, item_asset};
use crate::fees::{self, Split};
use crate::instances::instance_asset;
use crate::ledger::model::{Holder, Leg};
use crate::transactions::SINK;

/// What is on sale: `amount` units of a stackable item, or one instance of a unique item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lot {
    pub item: String,
    pub amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl Lot {
    /// Legs moving the lot, with its count for an instance ([`crate::instances`]).
    fn legs(&self, from: &Holder, to: &Holder, limit: i64) -> Vec<Leg> {
        let leg = |asset: String, amount: i64, limit: i64| Leg {
            asset,
            amount,
            from: from.clone(),
            to: to.clone(),
            limit,
            debt: false,
        };
        let mut legs = Vec::new();
        if let Some(instance) = &self.instance {
            legs.push(leg(instance_asset(&self.item, instance), 1, 1));
        }
        legs.push(leg(item_asset(&self.item), self.amount, limit));
        legs
    }
}

/// What the seller chose and the catalog imposed when the auction was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Terms {
    pub seller: String,
    pub lot: Lot,
    pub currency: String,
    pub start_price: i64,
    /// Below it, the lot goes back to the seller and the top bid to its bidder.
    pub reserve_price: Option<i64>,
    /// A bid of at least this ends the auction at once, at this price.
    pub buyout_price: Option<i64>,
    /// The next bid beats the top one by at least the larger of these.
    pub increment_fixed: i64,
    pub increment_bps: i64,
    /// Charged to the seller at creation (in `currency` units of its own currency).
    pub listing_fee: Option<(String, i64)>,
    pub sale_fee_bps: i64,
    /// A bid this close to the end pushes the end back by `extension_ms`, in all at most
    /// `max_extension_ms`.
    pub window_ms: i64,
    pub extension_ms: i64,
    pub max_extension_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bid {
    pub bidder: String,
    pub amount: i64,
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Status {
    Open,
    /// The lot went to the winner, the price less the fee to the seller.
    Sold {
        winner: String,
        price: i64,
    },
    /// The lot went back to the seller (no bids, below the reserve, or undeliverable).
    Unsold {
        reason: String,
    },
    /// The creation was refused (the seller lacked the lot or the fee).
    Refused,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionState {
    pub terms: Terms,
    pub ends_ms: i64,
    /// How far bids near the end have pushed it back so far.
    pub extended_ms: i64,
    pub top: Option<Bid>,
    /// The step of the latest bid (1 before any): what a bid names.
    pub version: i64,
    pub status: Status,
    /// Set when handing the lot to the winner failed (a limit): the next settlement returns it.
    pub undeliverable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Action {
    Create { terms: Box<Terms>, ends_ms: i64 },
    Bid { amount: i64, version: i64 },
    Settle,
}

/// Why an action does not apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Closed,
    Ended,
    NotEnded,
    OwnAuction,
    AlreadyTop,
    TooLow { minimum: i64 },
    StaleVersion { current: i64, minimum: i64 },
}

/// The effect of one action: the state if its legs commit, the state if they are voided.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub state: AuctionState,
    pub voided: AuctionState,
    pub legs: Vec<Leg>,
}

pub fn lot_escrow(auction: &str) -> Holder {
    Holder::Escrow(format!("auction:{auction}:lot"))
}

pub fn bid_escrow(auction: &str) -> Holder {
    Holder::Escrow(format!("auction:{auction}:bid"))
}

/// The least the next bid may be.
pub fn minimum_bid(state: &AuctionState) -> i64 {
    let terms = &state.terms;
    let minimum = match &state.top {
        None => terms.start_price,
        Some(top) => {
            // Rounded up: a share of the top bid, never less than it says.
            let percent =
                ((i128::from(top.amount) * i128::from(terms.increment_bps) + 9_999) / 10_000) as i64;
            top.amount
                .saturating_add(terms.increment_fixed.max(percent).max(1))
        }
    };
    match terms.buyout_price {
        Some(buyout) => minimum.min(buyout),
        None => minimum,
    }
}

/// Applies `action` by `by` at `now_ms` as step `seq` of auction `id` (`state` is `None` before
/// its first step). `Ok(None)`: nothing changes. `limit(asset)` is the most a player may hold.
pub fn step(
    state: Option<&AuctionState>,
    id: &str,
    seq: i64,
    by: &str,
    action: &Action,
    now_ms: i64,
    limit: impl Fn(&str) -> i64,
) -> Result<Option<Step>, Refusal> {
    let Some(state) = state else {
        let Action::Create { terms, ends_ms } = action else {
            return Err(Refusal::Closed);
        };
        return Ok(Some(create(terms, *ends_ms, id)));
    };
    match action {
        Action::Create { .. } => Ok(None),
        Action::Bid { .. } | Action::Settle if state.status != Status::Open => match action {
            Action::Settle => Ok(None),
            _ => Err(Refusal::Closed),
        },
        Action::Bid { amount, version } => bid(state, id, seq, by, *amount, *version, now_ms),
        Action::Settle if now_ms < state.ends_ms => Err(Refusal::NotEnded),
        Action::Settle => Ok(Some(settle(state, id, limit))),
    }
}

fn create(terms: &Terms, ends_ms: i64, id: &str) -> Step {
    let seller = Holder::Player(terms.seller.clone());
    let mut legs = terms.lot.legs(&seller, &lot_escrow(id), MAX_BALANCE);
    if let Some((currency, amount)) = &terms.listing_fee {
        legs.push(Leg {
            asset: currency_asset(currency),
            amount: *amount,
            from: seller,
            to: Holder::System(SINK.into()),
            limit: MAX_BALANCE,
            debt: false,
        });
    }
    let state = AuctionState {
        terms: terms.clone(),
        ends_ms,
        extended_ms: 0,
        top: None,
        version: 1,
        status: Status::Open,
        undeliverable: false,
    };
    let mut voided = state.clone();
    voided.status = Status::Refused;
    Step { state, voided, legs }
}

fn bid(
    state: &AuctionState,
    id: &str,
    seq: i64,
    by: &str,
    amount: i64,
    version: i64,
    now_ms: i64,
) -> Result<Option<Step>, Refusal> {
    let terms = &state.terms;
    let minimum = minimum_bid(state);
    if now_ms >= state.ends_ms {
        return Err(Refusal::Ended);
    }
    if by == terms.seller {
        return Err(Refusal::OwnAuction);
    }
    if state.top.as_ref().is_some_and(|top| top.bidder == by) {
        return Err(Refusal::AlreadyTop);
    }
    if version != state.version {
        return Err(Refusal::StaleVersion {
            current: state.version,
            minimum,
        });
    }
    if amount < minimum || amount > MAX_AMOUNT {
        return Err(Refusal::TooLow { minimum });
    }
    // A bid at or past the buyout buys at the buyout price, and ends the auction now.
    let buyout = terms.buyout_price.filter(|buyout| amount >= *buyout);
    let amount = buyout.unwrap_or(amount);
    let currency = currency_asset(&terms.currency);
    let mut legs = vec![Leg {
        asset: currency.clone(),
        amount,
        from: Holder::Player(by.to_owned()),
        to: bid_escrow(id),
        limit: MAX_BALANCE,
        debt: false,
    }];
    if let Some(top) = &state.top {
        legs.push(Leg {
            asset: currency,
            amount: top.amount,
            from: bid_escrow(id),
            to: Holder::Player(top.bidder.clone()),
            limit: MAX_BALANCE,
            debt: false,
        });
    }
    let mut next = state.clone();
    next.top = Some(Bid {
        bidder: by.to_owned(),
        amount,
        at_ms: now_ms,
    });
    next.version = seq;
    if buyout.is_some() {
        next.ends_ms = now_ms;
    } else if state.ends_ms - now_ms <= terms.window_ms {
        let extension = terms
            .extension_ms
            .min(terms.max_extension_ms - state.extended_ms)
            .max(0);
        next.ends_ms += extension;
        next.extended_ms += extension;
    }
    Ok(Some(Step {
        state: next,
        voided: state.clone(),
        legs,
    }))
}

fn settle(state: &AuctionState, id: &str, limit: impl Fn(&str) -> i64) -> Step {
    let terms = &state.terms;
    let seller = Holder::Player(terms.seller.clone());
    let sold = state.top.as_ref().filter(|top| {
        !state.undeliverable && terms.reserve_price.is_none_or(|reserve| top.amount >= reserve)
    });
    let mut next = state.clone();
    let mut voided = state.clone();
    let mut legs = Vec::new();
    match sold {
        Some(top) => {
            let winner = Holder::Player(top.bidder.clone());
            legs.extend(
                terms
                    .lot
                    .legs(&lot_escrow(id), &winner, limit(&item_asset(&terms.lot.item))),
            );
            let Split { proceeds, fee } = fees::split(top.amount, terms.sale_fee_bps);
            let currency = currency_asset(&terms.currency);
            for (to, amount) in [(seller, proceeds), (Holder::System(SINK.into()), fee)] {
                if amount > 0 {
                    legs.push(Leg {
                        asset: currency.clone(),
                        amount,
                        from: bid_escrow(id),
                        to,
                        limit: MAX_BALANCE,
                        debt: false,
                    });
                }
            }
            next.status = Status::Sold {
                winner: top.bidder.clone(),
                price: top.amount,
            };
            voided.undeliverable = true;
        }
        None => {
            legs.extend(terms.lot.legs(&lot_escrow(id), &seller, MAX_BALANCE));
            if let Some(top) = &state.top {
                legs.push(Leg {
                    asset: currency_asset(&terms.currency),
                    amount: top.amount,
                    from: bid_escrow(id),
                    to: Holder::Player(top.bidder.clone()),
                    limit: MAX_BALANCE,
                    debt: false,
                });
            }
            let reason = match (&state.top, state.undeliverable) {
                (None, _) => "no bids",
                (Some(_), true) => "the winner could not receive the lot (a limit); the bid was refunded",
                (Some(_), false) => "the top bid was below the reserve price",
            };
            next.status = Status::Unsold {
                reason: reason.into(),
            };
        }
    }
    Step {
        state: next,
        voided,
        legs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn terms() -> Terms {
        Terms {
            seller: "sam".into(),
            lot: Lot {
                item: "potion".into(),
                amount: 2,
                instance: None,
            },
            currency: "gold".into(),
            start_price: 100,
            reserve_price: Some(150),
            buyout_price: Some(1_000),
            increment_fixed: 5,
            increment_bps: 1_000,
            listing_fee: Some(("gold".into(), 2)),
            sale_fee_bps: 500,
            window_ms: MINUTE,
            extension_ms: MINUTE,
            max_extension_ms: 3 * MINUTE,
        }
    }

    fn open() -> AuctionState {
        let created = step(
            None,
            "a",
            1,
            "sam",
            &Action::Create {
                terms: Box::new(terms()),
                ends_ms: 60 * MINUTE,
            },
            0,
            |_| 10,
        );
        let created = created.expect("applies").expect("creates");
        assert_eq!(created.legs.len(), 2, "the lot into escrow, the listing fee out");
        assert_eq!(created.voided.status, Status::Refused);
        created.state
    }

    fn bid(state: &AuctionState, seq: i64, by: &str, amount: i64, now: i64) -> Result<Step, Refusal> {
        let action = Action::Bid {
            amount,
            version: state.version,
        };
        step(Some(state), "a", seq, by, &action, now, |_| 10).map(|s| s.expect("changes"))
    }

    #[test]
    fn bids_must_beat_the_top_by_the_larger_increment_and_refund_the_outbid() {
        let state = open();
        assert_eq!(minimum_bid(&state), 100);
        assert_eq!(
            bid(&state, 2, "ann", 99, 0),
            Err(Refusal::TooLow { minimum: 100 })
        );
        assert_eq!(bid(&state, 2, "sam", 100, 0), Err(Refusal::OwnAuction));
        let first = bid(&state, 2, "ann", 100, 0).expect("a bid");
        assert_eq!(first.legs.len(), 1);
        assert_eq!(minimum_bid(&first.state), 110, "10 % beats the fixed 5");
        assert_eq!(bid(&first.state, 3, "ann", 200, 0), Err(Refusal::AlreadyTop));
        let stale = Action::Bid {
            amount: 200,
            version: 1,
        };
        assert_eq!(
            step(Some(&first.state), "a", 3, "bob", &stale, 0, |_| 10),
            Err(Refusal::StaleVersion {
                current: 2,
                minimum: 110
            })
        );
        let second = bid(&first.state, 3, "bob", 110, 0).expect("outbids");
        assert_eq!(
            second.legs[1].to,
            Holder::Player("ann".into()),
            "ann is refunded at once"
        );
        assert_eq!(second.legs[1].amount, 100);
        assert_eq!(second.voided, first.state);
    }

    #[test]
    fn a_late_bid_extends_the_end_up_to_the_cap_and_a_buyout_ends_it_now() {
        let mut state = open();
        let mut seq = 2;
        for (n, bidder) in ["ann", "bob", "ann", "bob", "ann"].into_iter().enumerate() {
            let at = state.ends_ms - 10_000;
            let amount = minimum_bid(&state);
            state = bid(&state, seq, bidder, amount, at).expect("bid").state;
            seq += 1;
            let extended = (MINUTE * (n as i64 + 1)).min(3 * MINUTE);
            assert_eq!(state.extended_ms, extended);
        }
        assert_eq!(state.ends_ms, 63 * MINUTE);
        let bought = bid(&state, seq, "cat", 5_000, 0).expect("buyout");
        assert_eq!(
            bought.state.top.as_ref().map(|t| t.amount),
            Some(1_000),
            "at the buyout price"
        );
        assert_eq!(bought.state.ends_ms, 0);
        let late = Action::Bid {
            amount: 2_000,
            version: bought.state.version,
        };
        assert_eq!(
            step(Some(&bought.state), "a", seq + 1, "dan", &late, 1, |_| 10),
            Err(Refusal::Ended)
        );
    }

    #[test]
    fn settlement_pays_the_seller_less_the_fee_or_returns_everything() {
        let state = open();
        assert_eq!(
            step(Some(&state), "a", 2, "x", &Action::Settle, 0, |_| 10),
            Err(Refusal::NotEnded)
        );
        let unsold = step(Some(&state), "a", 2, "x", &Action::Settle, 60 * MINUTE, |_| 10)
            .expect("applies")
            .expect("changes");
        assert_eq!(
            unsold.state.status,
            Status::Unsold {
                reason: "no bids".into()
            }
        );
        assert!(
            unsold
                .legs
                .iter()
                .all(|leg| leg.to == Holder::Player("sam".into()))
        );

        let low = bid(&state, 2, "ann", 120, 0).expect("a bid").state;
        let returned = step(Some(&low), "a", 3, "x", &Action::Settle, 60 * MINUTE, |_| 10)
            .expect("applies")
            .expect("changes");
        assert!(
            matches!(returned.state.status, Status::Unsold { .. }),
            "below the reserve"
        );
        assert_eq!(
            returned.legs.last().map(|leg| (&leg.to, leg.amount)),
            Some((&Holder::Player("ann".into()), 120))
        );

        let high = bid(&low, 3, "bob", 200, 0).expect("a bid").state;
        let sold = step(Some(&high), "a", 4, "x", &Action::Settle, 60 * MINUTE, |_| 10)
            .expect("applies")
            .expect("changes");
        assert_eq!(
            sold.state.status,
            Status::Sold {
                winner: "bob".into(),
                price: 200
            }
        );
        let to_seller = sold
            .legs
            .iter()
            .find(|leg| leg.to == Holder::Player("sam".into()))
            .expect("found");
        assert_eq!(to_seller.amount, 190, "200 less 5 %");
        assert!(sold.voided.undeliverable);
        let fallback = step(
            Some(&sold.voided),
            "a",
            5,
            "x",
            &Action::Settle,
            60 * MINUTE,
            |_| 10,
        )
        .expect("applies")
        .expect("changes");
        assert!(
            matches!(fallback.state.status, Status::Unsold { .. }),
            "undeliverable: all goes back"
        );
        assert_eq!(
            step(
                Some(&sold.state),
                "a",
                5,
                "x",
                &Action::Settle,
                60 * MINUTE,
                |_| 10
            ),
            Ok(None)
        );
    }
}
