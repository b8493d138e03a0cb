//! The catalog: currencies, items and store offers, loaded from a YAML or JSON document (a mounted
//! ConfigMap) and validated whole before it replaces the running one. A bad catalog is refused with
//! the path of the field that is wrong (`offers[2].cost.currencies.gems: unknown currency`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fraud::FraudRules;
use crate::{Error, Result};

/// The most any one leg moves, and the most any account may hold: far from `i64::MAX`, so sums
/// of a few never overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
pub const MAX_BALANCE: i64 = 1_000_000_000_000_000;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Catalog {
    /// Increases with every change the studio makes; shown to clients.
    pub version: u64,
    #[serde(default)]
    pub currencies: Vec<Currency>,
    #[serde(default)]
    pub items: Vec<Item>,
    #[serde(default)]
    pub offers: Vec<Offer>,
    /// Fraud rules for players' transactions ([`crate::fraud`]).
    #[serde(default)]
    pub fraud: FraudRules,
    /// The marketplace's rules ([`crate::market`]).
    #[serde(default)]
    pub market: MarketRules,
    /// The auction house's rules ([`crate::auctions`]).
    #[serde(default)]
    pub auctions: AuctionRules,
}

/// What the auction house charges and allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuctionRules {
    /// The currencies bids may be in; none: the auction house is closed.
    #[serde(default)]
    pub currencies: Vec<String>,
    /// Charged to the seller for each auction (kept whatever becomes of it).
    pub listing_fee: Option<Fee>,
    /// The share of the winning bid that goes to the `sink`, in basis points, rounded down.
    #[serde(default)]
    pub sale_fee_bps: i64,
    /// The longest an auction may run (default 168 hours).
    #[serde(default = "week")]
    pub max_duration_hours: i64,
    /// The least a bid must beat the top one by: sellers may ask for more, not less.
    #[serde(default = "one")]
    pub min_increment: i64,
    /// A bid this close to the end (default 60 s) pushes the end back by `snipingExtensionSeconds`
    /// (default 60 s), in all at most `maxExtensionSeconds` (default 600 s).
    #[serde(default = "minute")]
    pub sniping_window_seconds: i64,
    #[serde(default = "minute")]
    pub sniping_extension_seconds: i64,
    #[serde(default = "ten_minutes")]
    pub max_extension_seconds: i64,
}

impl Default for AuctionRules {
    fn default() -> Self {
        Self {
            currencies: Vec::new(),
            listing_fee: None,
            sale_fee_bps: 0,
            max_duration_hours: week(),
            min_increment: one(),
            sniping_window_seconds: minute(),
            sniping_extension_seconds: minute(),
            max_extension_seconds: ten_minutes(),
        }
    }
}

/// What the marketplace charges and allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarketRules {
    /// The currencies prices may be in; none: the market is closed.
    #[serde(default)]
    pub currencies: Vec<String>,
    /// Charged to the seller for each listing (kept whatever becomes of it).
    pub listing_fee: Option<Fee>,
    /// The share of each sale's price that goes to the `sink` rather than the seller, in basis
    /// points (100 = 1 %), rounded down.
    #[serde(default)]
    pub sale_fee_bps: i64,
    /// The longest a listing may stay up (default 168 hours); a worker returns expired ones.
    #[serde(default = "week")]
    pub max_duration_hours: i64,
}

impl Default for MarketRules {
    fn default() -> Self {
        Self {
            currencies: Vec::new(),
            listing_fee: None,
            sale_fee_bps: 0,
            max_duration_hours: week(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fee {
    pub currency: String,
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Currency {
    /// `[a-z0-9_-]{1,32}`, in integer minor units (cents, not dollars).
    pub code: String,
    /// The most one player may hold.
    #[serde(default = "max_balance")]
    pub max_balance: i64,
    /// Whether players may gift it to each other.
    #[serde(default)]
    pub transferable: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Item {
    pub id: String,
    /// Each unit is an instance with its own id and properties ([`crate::instances`]); a unique
    /// item does not stack.
    #[serde(default)]
    pub unique: bool,
    /// Units of a stackable item share stacks of up to `maxStack`; others are one per stack.
    #[serde(default = "yes")]
    pub stackable: bool,
    #[serde(default = "one")]
    pub max_stack: i64,
    /// The most one player may hold.
    #[serde(default = "max_balance")]
    pub max_count: i64,
    #[serde(default)]
    pub consumable: bool,
    /// Whether players may gift or trade it.
    #[serde(default)]
    pub tradeable: bool,
    /// A group to browse the market by (`weapons`, `potions`).
    pub category: Option<String>,
    /// Shown with the item; a unique item's instances start with these.
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Offer {
    pub id: String,
    #[serde(default)]
    pub cost: Bundle,
    pub reward: Bundle,
    /// How many times one player may buy it.
    pub purchase_limit: Option<i64>,
    /// Milliseconds since the epoch; absent: always.
    pub available_from_ms: Option<i64>,
    pub available_until_ms: Option<i64>,
}

/// Amounts of currencies and items.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    #[serde(default)]
    pub currencies: BTreeMap<String, i64>,
    #[serde(default)]
    pub items: BTreeMap<String, i64>,
}

impl Bundle {
    pub fn is_empty(&self) -> bool {
        self.currencies.is_empty() && self.items.is_empty()
    }

    /// `(asset, amount)` pairs: `c:<code>` and `i:<id>`.
    pub fn assets(&self) -> impl Iterator<Item = (String, i64)> + '_ {
        let currencies = self
            .currencies
            .iter()
            .map(|(code, amount)| (currency_asset(code), *amount));
        let items = self.items.iter().map(|(id, amount)| (item_asset(id), *amount));
        currencies.chain(items)
    }
}

fn max_balance() -> i64 {
    MAX_BALANCE
}

fn week() -> i64 {
    168
}

fn minute() -> i64 {
    60
}

fn ten_minutes() -> i64 {
    600
}

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}

pub fn currency_asset(code: &str) -> String {
    format!("c:{code}")
}

pub fn item_asset(id: &str) -> String {
    format!("i:{id}")
}

pub fn offer_asset(id: &str) -> String {
    format!("o:{id}")
}

/// Whether `name` may be a currency code, item or offer id: `[a-z0-9_-]{1,32}`.
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Catalog {
    /// Reads and validates a catalog document (YAML, of which JSON is a subset).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::Catalog(format!("cannot read {}: {error}", path.display())))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let catalog: Catalog =
            serde_yaml_ng::from_str(text).map_err(|error| Error::Catalog(error.to_string()))?;
        catalog.validate()?;
        Ok(catalog)
    }

    pub fn currency(&self, code: &str) -> Option<&Currency> {
        self.currencies.iter().find(|c| c.code == code)
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    pub fn offer(&self, id: &str) -> Option<&Offer> {
        self.offers.iter().find(|o| o.id == id)
    }

    /// The most a player may hold of `asset`, or `None` for an asset the catalog does not know.
    pub fn limit(&self, asset: &str) -> Option<i64> {
        if let Some(code) = asset.strip_prefix("c:") {
            return self.currency(code).map(|c| c.max_balance);
        }
        if let Some(id) = asset.strip_prefix("i:") {
            return self.item(id).map(|i| i.max_count);
        }
        if let Some((id, _)) = crate::instances::parse_instance_asset(asset) {
            return self.item(id).filter(|i| i.unique).map(|_| 1);
        }
        let offer = self.offer(asset.strip_prefix("o:")?)?;
        Some(offer.purchase_limit.unwrap_or(MAX_BALANCE))
    }

    fn validate(&self) -> Result<()> {
        let fail = |path: String, message: &str| Err(Error::Catalog(format!("{path}: {message}")));
        let mut codes = HashSet::new();
        for (index, currency) in self.currencies.iter().enumerate() {
            let path = format!("currencies[{index}]");
            if !valid_name(&currency.code) {
                return fail(format!("{path}.code"), "must match [a-z0-9_-]{1,32}");
            }
            if !codes.insert(currency.code.as_str()) {
                return fail(format!("{path}.code"), "is defined twice");
            }
            if !(1..=MAX_BALANCE).contains(&currency.max_balance) {
                return fail(format!("{path}.maxBalance"), "must be between 1 and 10^15");
            }
        }
        let mut ids = HashSet::new();
        for (index, item) in self.items.iter().enumerate() {
            let path = format!("items[{index}]");
            if !valid_name(&item.id) {
                return fail(format!("{path}.id"), "must match [a-z0-9_-]{1,32}");
            }
            if !ids.insert(item.id.as_str()) {
                return fail(format!("{path}.id"), "is defined twice");
            }
            if !(1..=MAX_BALANCE).contains(&item.max_count) {
                return fail(format!("{path}.maxCount"), "must be between 1 and 10^15");
            }
            if item.unique && item.stackable {
                return fail(format!("{path}.stackable"), "must be false for a unique item");
            }
            if item.max_stack < 1 || (!item.stackable && item.max_stack != 1) {
                return fail(
                    format!("{path}.maxStack"),
                    "must be at least 1, and 1 for an item that does not stack",
                );
            }
        }
        let mut offers = HashSet::new();
        for (index, offer) in self.offers.iter().enumerate() {
            let path = format!("offers[{index}]");
            if !valid_name(&offer.id) {
                return fail(format!("{path}.id"), "must match [a-z0-9_-]{1,32}");
            }
            if !offers.insert(offer.id.as_str()) {
                return fail(format!("{path}.id"), "is defined twice");
            }
            if offer.reward.is_empty() {
                return fail(format!("{path}.reward"), "must give something");
            }
            self.validate_bundle(&format!("{path}.cost"), &offer.cost)?;
            if let Some(id) = offer
                .cost
                .items
                .keys()
                .find(|id| self.item(id).is_some_and(|i| i.unique))
            {
                return fail(
                    format!("{path}.cost.items.{id}"),
                    "a unique item cannot be a price (which instance?)",
                );
            }
            self.validate_bundle(&format!("{path}.reward"), &offer.reward)?;
            if offer.purchase_limit.is_some_and(|limit| limit < 1) {
                return fail(format!("{path}.purchaseLimit"), "must be at least 1");
            }
            if let (Some(from), Some(until)) = (offer.available_from_ms, offer.available_until_ms)
                && from >= until
            {
                return fail(
                    format!("{path}.availableUntilMs"),
                    "must be after availableFromMs",
                );
            }
        }
        self.validate_market()?;
        let known =
            |asset: &str| (asset.starts_with("c:") || asset.starts_with("i:")) && self.limit(asset).is_some();
        self.fraud.validate(known)
    }

    fn validate_market(&self) -> Result<()> {
        let (market, auctions) = (&self.market, &self.auctions);
        self.validate_exchange(
            "market",
            (&market.currencies, &market.listing_fee),
            market.sale_fee_bps,
            market.max_duration_hours,
        )?;
        self.validate_exchange(
            "auctions",
            (&auctions.currencies, &auctions.listing_fee),
            auctions.sale_fee_bps,
            auctions.max_duration_hours,
        )?;
        let fail = |path: &str, message: &str| Err(Error::Catalog(format!("auctions.{path}: {message}")));
        if !(1..=MAX_AMOUNT).contains(&auctions.min_increment) {
            return fail("minIncrement", "must be between 1 and 10^12");
        }
        for (path, seconds) in [
            ("snipingWindowSeconds", auctions.sniping_window_seconds),
            ("snipingExtensionSeconds", auctions.sniping_extension_seconds),
            ("maxExtensionSeconds", auctions.max_extension_seconds),
        ] {
            if !(0..=86_400).contains(&seconds) {
                return fail(path, "must be between 0 and 86400");
            }
        }
        for (index, item) in self.items.iter().enumerate() {
            if item.category.as_ref().is_some_and(|c| !valid_name(c)) {
                return Err(Error::Catalog(format!(
                    "items[{index}].category: must match [a-z0-9_-]{{1,32}}"
                )));
            }
        }
        Ok(())
    }

    /// The market's and the auction house's shared rules: known currencies, a fee that is an
    /// amount, a sale fee that is a share, a duration within a year.
    fn validate_exchange(
        &self,
        section: &str,
        (currencies, listing_fee): (&[String], &Option<Fee>),
        sale_fee_bps: i64,
        max_duration_hours: i64,
    ) -> Result<()> {
        let fail = |path: String, message: &str| Err(Error::Catalog(format!("{section}.{path}: {message}")));
        for (index, code) in currencies.iter().enumerate() {
            if self.currency(code).is_none() {
                return fail(format!("currencies[{index}]"), "unknown currency");
            }
        }
        if let Some(fee) = listing_fee {
            if self.currency(&fee.currency).is_none() {
                return fail("listingFee.currency".into(), "unknown currency");
            }
            if !(1..=MAX_AMOUNT).contains(&fee.amount) {
                return fail("listingFee.amount".into(), "must be between 1 and 10^12");
            }
        }
        if !(0..=10_000).contains(&sale_fee_bps) {
            return fail("saleFeeBps".into(), "must be between 0 and 10000");
        }
        if !(1..=24 * 365).contains(&max_duration_hours) {
            return fail("maxDurationHours".into(), "must be between 1 and 8760");
        }
        Ok(())
    }

    fn validate_bundle(&self, path: &str, bundle: &Bundle) -> Result<()> {
        for (code, amount) in &bundle.currencies {
            if self.currency(code).is_none() {
                return Err(Error::Catalog(format!(
                    "{path}.currencies.{code}: unknown currency"
                )));
            }
            check_amount(&format!("{path}.currencies.{code}"), *amount)?;
        }
        for (id, amount) in &bundle.items {
            if self.item(id).is_none() {
                return Err(Error::Catalog(format!("{path}.items.{id}: unknown item")));
            }
            check_amount(&format!("{path}.items.{id}"), *amount)?;
        }
        Ok(())
    }
}

fn check_amount(path: &str, amount: i64) -> Result<()> {
    match (1..=MAX_AMOUNT).contains(&amount) {
        true => Ok(()),
        false => Err(Error::Catalog(format!("{path}: must be between 1 and 10^12"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
version: 1
currencies:
  - code: gold
    maxBalance: 1000
  - code: gems
items:
  - id: potion
    maxStack: 20
    maxCount: 50
    consumable: true
    tradeable: true
offers:
  - id: potion-pack
    cost: {currencies: {gold: 30}}
    reward: {items: {potion: 3}}
    purchaseLimit: 2
"#;

    #[test]
    fn a_sample_catalog_loads_with_its_limits() {
        let catalog = Catalog::parse(SAMPLE).expect("valid");
        assert_eq!(catalog.limit("c:gold"), Some(1000));
        assert_eq!(catalog.limit("c:gems"), Some(MAX_BALANCE));
        assert_eq!(catalog.limit("i:potion"), Some(50));
        assert_eq!(catalog.limit("o:potion-pack"), Some(2));
        assert_eq!(catalog.limit("c:silver"), None);
    }

    #[test]
    fn a_bad_catalog_is_refused_naming_the_field() {
        let cases = [
            (
                SAMPLE.replace("{gold: 30}", "{silver: 30}"),
                "offers[0].cost.currencies.silver: unknown currency",
            ),
            (
                SAMPLE.replace("{gold: 30}", "{gold: 0}"),
                "offers[0].cost.currencies.gold: must be between 1 and 10^12",
            ),
            (
                SAMPLE.replace("code: gems", "code: gold"),
                "currencies[1].code: is defined twice",
            ),
            (
                SAMPLE.replace("maxCount: 50", "maxCount: -1"),
                "items[0].maxCount: must be between 1 and 10^15",
            ),
            (
                SAMPLE.replace("code: gems", "code: Gems!"),
                "currencies[1].code: must match [a-z0-9_-]{1,32}",
            ),
            (
                SAMPLE.replace("purchaseLimit: 2", "purchaseLimit: 0"),
                "offers[0].purchaseLimit: must be at least 1",
            ),
            (
                SAMPLE.replace("consumable: true", "consumable: true\n    unique: true"),
                "items[0].stackable: must be false for a unique item",
            ),
            (
                SAMPLE
                    .replace("maxStack: 20", "stackable: false\n    unique: true")
                    .replace("cost: {currencies: {gold: 30}}", "cost: {items: {potion: 1}}"),
                "offers[0].cost.items.potion: a unique item cannot be a price (which instance?)",
            ),
        ];
        for (text, expected) in cases {
            match Catalog::parse(&text) {
                Err(Error::Catalog(message)) => assert_eq!(message, expected),
                other => panic!("{expected}: {other:?}"),
            }
        }
        let unknown = SAMPLE.replace("consumable: true", "consumable: true\n    colour: red");
        assert!(matches!(Catalog::parse(&unknown), Err(Error::Catalog(m)) if m.contains("colour")));
    }
}
