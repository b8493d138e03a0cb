//! Fraud checks on every player-initiated transaction, configured in the catalog document's
//! `fraud` section: velocity per player and window, value thresholds, and repeated transfers
//! between the same pair. Each rule's action is `hold` (the transaction reserves its value and
//! waits for an admin's review) or `deny` (it is voided with the rule's name). The first rule that
//! fires decides; counts live in Redis (sorted sets per player or pair, trimmed to the window).
//!
//! A check runs once per transaction: a request whose idempotency key already names a transaction
//! follows that transaction's verdict instead of being counted again.

use serde::{Deserialize, Serialize};

use crate::ledger::model::{Flag, Holder, Leg};
use crate::metrics::FraudLabels;
use crate::state::AppState;
use crate::{Error, Result};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FraudRules {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// `[a-z0-9_-]{1,32}`: in metrics, reasons and the review queue.
    pub name: String,
    /// The transaction kind it applies to (`gift`, `purchase`, `consume`); absent: all of them.
    pub kind: Option<String>,
    /// Fires on the transaction that makes more than `count` by one player within the window.
    pub velocity: Option<Window>,
    /// Fires on a transaction moving at least `amount` of one asset (`c:gold`, `i:potion`).
    pub threshold: Option<Threshold>,
    /// Fires on the transfer that makes more than `count` from one player to another in the window.
    pub pair: Option<Window>,
    /// Fires on a transaction by an account younger than this many hours (by the token's
    /// `created` claim; a token without one is not judged by this rule).
    pub account_age_hours: Option<u32>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    pub count: u32,
    pub window_seconds: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Threshold {
    pub asset: String,
    pub amount: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Hold,
    Deny,
}

impl FraudRules {
    /// Checks the section; errors name the field (`fraud.rules[1].velocity.count`).
    pub fn validate(&self, known_asset: impl Fn(&str) -> bool) -> Result<()> {
        let fail =
            |path: String, message: &str| Err(Error::Catalog(format!("fraud.rules[{path}: {message}")));
        for (index, rule) in self.rules.iter().enumerate() {
            if !crate::catalog::valid_name(&rule.name) {
                return fail(format!("{index}].name"), "must match [a-z0-9_-]{1,32}");
            }
            let conditions = [
                rule.velocity.is_some(),
                rule.threshold.is_some(),
                rule.pair.is_some(),
                rule.account_age_hours.is_some(),
            ];
            if conditions.iter().filter(|c| **c).count() != 1 {
                return fail(
                    format!("{index}]"),
                    "needs exactly one of velocity, threshold, pair, accountAgeHours",
                );
            }
            if rule
                .account_age_hours
                .is_some_and(|hours| hours == 0 || hours > 24 * 365)
            {
                return fail(format!("{index}].accountAgeHours"), "must be 1-8760");
            }
            for (field, window) in [("velocity", &rule.velocity), ("pair", &rule.pair)] {
                if let Some(window) = window
                    && (window.count == 0 || !(1..=30 * 86_400).contains(&window.window_seconds))
                {
                    return fail(
                        format!("{index}].{field}"),
                        "count must be at least 1 and windowSeconds 1-2592000",
                    );
                }
            }
            if let Some(threshold) = &rule.threshold {
                if !known_asset(&threshold.asset) {
                    return fail(
                        format!("{index}].threshold.asset"),
                        "unknown asset (c:<currency> or i:<item>)",
                    );
                }
                if threshold.amount < 1 {
                    return fail(format!("{index}].threshold.amount"), "must be at least 1");
                }
            }
        }
        Ok(())
    }
}

/// The first rule that fires on `kind` by `player` with `legs`, as the flag the transaction
/// carries; `None` when every rule allows it. Counts this transaction in the rules' windows.
pub async fn check(
    state: &AppState,
    rules: &FraudRules,
    player: &str,
    created: Option<i64>,
    kind: &str,
    legs: &[Leg],
) -> Result<Option<Flag>> {
    let now_ms = state.ledger.now_ms();
    for rule in &rules.rules {
        if rule.kind.as_deref().is_some_and(|k| k != kind) {
            continue;
        }
        let fired = if let Some(window) = &rule.velocity {
            let key = format!("{}:economy:velocity:{}:{player}", state.namespace, rule.name);
            count(state, &key, window, now_ms).await? > u64::from(window.count)
        } else if let Some(threshold) = &rule.threshold {
            legs.iter()
                .any(|leg| leg.asset == threshold.asset && leg.amount >= threshold.amount)
        } else if let Some(window) = &rule.pair {
            let mut fired = false;
            for to in legs.iter().filter_map(|leg| match (&leg.from, &leg.to) {
                (Holder::Player(from), Holder::Player(to)) if from == player => Some(to),
                _ => None,
            }) {
                let key = format!("{}:economy:pair:{}:{player}:{to}", state.namespace, rule.name);
                fired |= count(state, &key, window, now_ms).await? > u64::from(window.count);
            }
            fired
        } else if let Some(hours) = rule.account_age_hours {
            created.is_some_and(|created| now_ms / 1000 - created < i64::from(hours) * 3600)
        } else {
            false
        };
        let outcome = match (fired, rule.action) {
            (false, _) => "allow",
            (true, Action::Hold) => "hold",
            (true, Action::Deny) => "deny",
        };
        state
            .metrics
            .fraud
            .get_or_create(&FraudLabels {
                rule: rule.name.clone(),
                outcome,
            })
            .inc();
        if fired {
            return Ok(Some(Flag {
                rule: rule.name.clone(),
                deny: rule.action == Action::Deny,
            }));
        }
    }
    Ok(None)
}

/// Adds this moment to the sorted set `key`, trims it to the window, and returns its size, in
/// one atomic MULTI.
async fn count(state: &AppState, key: &str, window: &Window, now_ms: i64) -> Result<u64> {
    let mut redis = state.redis.clone();
    // A random member: two transactions in the same millisecond count twice.
    let mut nonce = [0_u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| Error::Config("no randomness".into()))?;
    let member = format!("{now_ms}:{}", u64::from_le_bytes(nonce));
    let since = now_ms - i64::from(window.window_seconds) * 1000;
    let (_, _, size, _): (i64, i64, u64, i64) = redis::pipe()
        .atomic()
        .zadd(key, member, now_ms)
        .zrembyscore(key, i64::MIN, since)
        .zcard(key)
        .expire(key, i64::from(window.window_seconds))
        .query_async(&mut redis)
        .await
        .map_err(flotilla_storage::Error::from)?;
    Ok(size)
}
