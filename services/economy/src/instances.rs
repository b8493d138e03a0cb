//! Unique items. Each unit of an item the catalog marks `unique` is an instance with its own id
//! and properties (a sword's rolled damage, a skin's serial number). An instance is an asset of
//! its own, `u:<item>:<id>`, of which exactly one unit is ever minted, so the ledger's conservation
//! is also the proof that an instance is never duplicated. Every leg that moves instances comes
//! with a leg moving as many units of the item's count, `i:<item>`: that account carries the
//! catalog's maximum count, which therefore holds under any concurrency as every other limit does,
//! and it is the count wallets show.
//!
//! An instance's properties are stored once, when it is minted, and never change. Its id is
//! derived from the minting transaction's id, its request and its position in it, so a retried
//! request mints the same instances, and a request reusing a key with another body (refused) can
//! never overwrite them.

use std::collections::{BTreeMap, HashMap, HashSet};

use flotilla_storage::model::Model;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{Catalog, Item, item_asset};
use crate::ids;
use crate::ledger::model::{Holder, Leg};
use crate::state::Shared;
use crate::{Error, Result};

/// Instances one request may mint or move.
pub const MAX_PER_REQUEST: usize = 100;

/// Properties one instance may carry, and their size as JSON.
const MAX_PROPERTIES: usize = 32;
const MAX_PROPERTIES_BYTES: usize = 4096;

/// An instance's record: what it is. Who holds it is the ledger's business.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    #[serde(rename = "_id")]
    pub id: String,
    pub item: String,
    /// The catalog's properties for the item, overridden by those the grant gave.
    pub properties: BTreeMap<String, Value>,
    /// The transaction that minted it.
    pub tx: String,
    pub at_ms: i64,
}

impl Model for Instance {
    const COLLECTION: &'static str = "economy_instances";
}

/// An instance to mint, as a grant names it.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewInstance {
    /// A unique item of the catalog.
    pub item: String,
    /// Set over the catalog's properties for the item. Up to 32, 4 KiB as JSON.
    #[serde(default)]
    pub properties: BTreeMap<String, Value>,
}

/// An instance as clients see it.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    pub id: String,
    pub properties: BTreeMap<String, Value>,
    /// Promised to a transaction being decided (a gift on its way, a consumption).
    pub reserved: bool,
}

pub fn instance_asset(item: &str, id: &str) -> String {
    format!("u:{item}:{id}")
}

/// The item and id of an instance's asset.
pub fn parse_instance_asset(asset: &str) -> Option<(&str, &str)> {
    asset.strip_prefix("u:")?.split_once(':')
}

/// The id of the `n`th instance a transaction mints.
fn instance_id(tx: &str, request_hash: &str, n: usize) -> String {
    ids::derived(&["instance", tx, request_hash, &n.to_string()])
}

/// Instances a transaction mints to one player out of a system account, and the legs that mint
/// them (one per instance, one per item for the count).
pub struct Minted {
    pub records: Vec<Instance>,
    pub legs: Vec<Leg>,
}

impl Minted {
    /// Mints `wanted` to `player` from system account `from` in the transaction `tx` of request
    /// `request_hash`. Checks every item and property first.
    pub fn new(
        catalog: &Catalog,
        (tx, request_hash, at_ms): (&str, &str, i64),
        from: &str,
        player: &str,
        wanted: &[NewInstance],
    ) -> Result<Self> {
        if wanted.len() > MAX_PER_REQUEST {
            return Err(Error::bad(
                "instances",
                format!("at most {MAX_PER_REQUEST} at once"),
            ));
        }
        let mut records = Vec::new();
        let mut legs = Vec::new();
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for (n, new) in wanted.iter().enumerate() {
            let item = unique_item(catalog, &new.item)?;
            check_properties(&new.properties)?;
            let mut properties = item.properties.clone();
            properties.extend(new.properties.clone());
            let id = instance_id(tx, request_hash, n);
            legs.push(Leg {
                asset: instance_asset(&item.id, &id),
                amount: 1,
                from: Holder::System(from.into()),
                to: Holder::Player(player.into()),
                limit: 1,
                debt: false,
            });
            records.push(Instance {
                id,
                item: item.id.clone(),
                properties,
                tx: tx.to_owned(),
                at_ms,
            });
            *counts.entry(&new.item).or_default() += 1;
        }
        for (id, count) in counts {
            let limit = catalog.item(id).map_or(0, |item| item.max_count);
            legs.push(Leg {
                asset: item_asset(id),
                amount: count,
                from: Holder::System(from.into()),
                to: Holder::Player(player.into()),
                limit,
                debt: false,
            });
        }
        Ok(Self { records, legs })
    }

    /// Stores the records, before the transaction that mints them is submitted: a record whose
    /// transaction is voided describes an instance nobody holds, which is harmless.
    pub async fn store(&self, state: &Shared) -> Result<()> {
        for record in &self.records {
            match state.instances.insert(record).await {
                Ok(()) | Err(flotilla_storage::Error::Duplicate { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// The legs moving the instances `ids` from `from` to `to`; `allowed` checks each one's item (is
/// it tradeable, consumable). Unknown instances are 404; the ledger refuses instances `from`
/// does not hold.
pub async fn moving(
    state: &Shared,
    ids: &[String],
    from: &Holder,
    to: &Holder,
    allowed: impl Fn(&Item) -> Result<()>,
) -> Result<Vec<Leg>> {
    if ids.is_empty() || ids.len() > MAX_PER_REQUEST {
        return Err(Error::bad(
            "instances",
            format!("name 1 to {MAX_PER_REQUEST} instances"),
        ));
    }
    let mut seen = HashSet::new();
    for id in ids {
        if !ids::valid(id) {
            return Err(Error::bad("instances", format!("{id} is not an instance id")));
        }
        if !seen.insert(id) {
            return Err(Error::bad("instances", format!("{id} is named twice")));
        }
    }
    let records = state.instances.get_many(ids).await?;
    if records.len() != ids.len() {
        return Err(Error::NotFound("instance"));
    }
    let catalog = state.catalog();
    let mut legs = Vec::new();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for record in &records {
        let item = unique_item(&catalog, &record.item)?;
        allowed(item)?;
        legs.push(Leg {
            asset: instance_asset(&item.id, &record.id),
            amount: 1,
            from: from.clone(),
            to: to.clone(),
            limit: 1,
            debt: false,
        });
        *counts.entry(item.id.clone()).or_default() += 1;
    }
    for (id, count) in counts {
        let limit = match to {
            Holder::Player(_) => catalog.item(&id).map_or(0, |item| item.max_count),
            Holder::Escrow(_) | Holder::System(_) => i64::MAX,
        };
        legs.push(Leg {
            asset: item_asset(&id),
            amount: count,
            from: from.clone(),
            to: to.clone(),
            limit,
            debt: false,
        });
    }
    Ok(legs)
}

/// The instances `player` holds, by item, with their properties.
pub async fn held(state: &Shared, player: &str) -> Result<HashMap<String, Vec<InstanceView>>> {
    let held = state.ledger.store().held_instances(player).await?;
    let ids: Vec<&str> = held
        .iter()
        .filter_map(|posting| parse_instance_asset(&posting.asset).map(|(_, id)| id))
        .collect();
    let records: HashMap<String, Instance> = state
        .instances
        .get_many(&ids)
        .await?
        .into_iter()
        .map(|record| (record.id.clone(), record))
        .collect();
    let mut by_item: HashMap<String, Vec<InstanceView>> = HashMap::new();
    for posting in held {
        let Some((item, id)) = parse_instance_asset(&posting.asset) else {
            continue;
        };
        let properties = records
            .get(id)
            .map(|record| record.properties.clone())
            .unwrap_or_default();
        by_item.entry(item.to_owned()).or_default().push(InstanceView {
            id: id.to_owned(),
            properties,
            reserved: posting.balance.available < 1,
        });
    }
    Ok(by_item)
}

fn unique_item<'a>(catalog: &'a Catalog, id: &str) -> Result<&'a Item> {
    let item = catalog.item(id).ok_or(Error::NotFound("item"))?;
    match item.unique {
        true => Ok(item),
        false => Err(Error::bad(
            "instances",
            format!("{id} is not a unique item: name it with an amount"),
        )),
    }
}

fn check_properties(properties: &BTreeMap<String, Value>) -> Result<()> {
    if properties.len() > MAX_PROPERTIES {
        return Err(Error::bad(
            "properties",
            format!("at most {MAX_PROPERTIES} properties"),
        ));
    }
    if let Some(key) = properties.keys().find(|key| !(1..=64).contains(&key.len())) {
        return Err(Error::bad(
            "properties",
            format!("{key:?}: a property's name is 1-64 bytes"),
        ));
    }
    let size = serde_json::to_vec(properties).map_or(usize::MAX, |json| json.len());
    if size > MAX_PROPERTIES_BYTES {
        return Err(Error::bad(
            "properties",
            format!("are {size} bytes as JSON; at most {MAX_PROPERTIES_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_depend_on_the_transaction_the_request_and_the_position() {
        let id = instance_id("service:k", "h", 0);
        assert_eq!(id, instance_id("service:k", "h", 0));
        assert_ne!(id, instance_id("service:k", "h", 1));
        assert_ne!(id, instance_id("service:k", "other", 0));
        assert_ne!(id, instance_id("service:k2", "h", 0));
        let asset = instance_asset("sword", &id);
        assert_eq!(parse_instance_asset(&asset), Some(("sword", id.as_str())));
        assert_eq!(parse_instance_asset("i:sword"), None);
    }

    #[test]
    fn properties_are_bounded() {
        let many: BTreeMap<String, Value> = (0..33).map(|n| (format!("p{n}"), Value::Null)).collect();
        assert!(check_properties(&many).is_err());
        let big = BTreeMap::from([("note".to_owned(), Value::String("x".repeat(5000)))]);
        assert!(check_properties(&big).is_err());
        let empty_key = BTreeMap::from([(String::new(), Value::Null)]);
        assert!(check_properties(&empty_key).is_err());
        let fine = BTreeMap::from([("damage".to_owned(), Value::from(12))]);
        assert!(check_properties(&fine).is_ok());
    }
}
