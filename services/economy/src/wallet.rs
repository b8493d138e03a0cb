//! What players hold: balances of every currency and item in the catalog (with a unique item's
//! instances), and the catalog itself.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::try_join_all;
use serde::Serialize;

use crate::caller::{PlayerCaller, ServiceCaller};
use crate::catalog::{Catalog, currency_asset, item_asset};
use crate::instances::{self, InstanceView};
use crate::state::Shared;
use crate::transactions::valid_player;
use crate::{Error, Result};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/catalog", get(catalog))
        .route("/v1/wallet", get(own_wallet))
        .route("/v1/players/{player}/wallet", get(player_wallet))
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Wallet {
    pub catalog_version: u64,
    pub currencies: Vec<CurrencyBalance>,
    pub items: Vec<ItemBalance>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyBalance {
    pub code: String,
    /// What the player can spend; below zero while a debt is open.
    pub available: i64,
    /// Promised to transactions being decided.
    pub reserved: i64,
    /// Owed after a reversal of spent proceeds (the `debt` policy); income repays it first.
    pub debt: i64,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemBalance {
    pub id: String,
    /// Below zero while a debt is open (an item taken back after it was used up).
    pub count: i64,
    pub reserved: i64,
    /// `count` split into stacks of at most the item's `maxStack`.
    pub stacks: Vec<i64>,
    /// A unique item's instances, each with its own properties; empty for other items.
    pub instances: Vec<InstanceView>,
}

async fn catalog(State(state): State<Shared>) -> Json<Catalog> {
    Json((*state.catalog()).clone())
}

async fn own_wallet(State(state): State<Shared>, caller: PlayerCaller) -> Result<Json<Wallet>> {
    wallet(&state, &caller.player).await
}

async fn player_wallet(
    State(state): State<Shared>,
    _: ServiceCaller,
    Path(player): Path<String>,
) -> Result<Json<Wallet>> {
    if !valid_player(&player) {
        return Err(Error::bad("player", "is not a player id"));
    }
    wallet(&state, &player).await
}

/// Reads every account the catalog names, at once; accounts never touched read as zero.
async fn wallet(state: &Shared, player: &str) -> Result<Json<Wallet>> {
    let catalog = state.catalog();
    let ledger = &state.ledger;
    let currencies = try_join_all(catalog.currencies.iter().map(|currency| async move {
        let balance = ledger.balance(player, &currency_asset(&currency.code)).await?;
        Ok::<_, Error>(CurrencyBalance {
            code: currency.code.clone(),
            available: balance.available,
            reserved: balance.reserved,
            debt: (-balance.available).max(0),
        })
    }))
    .await?;
    let mut held = match catalog.items.iter().any(|item| item.unique) {
        true => instances::held(state, player).await?,
        false => Default::default(),
    };
    let items = try_join_all(catalog.items.iter().map(|item| async move {
        let balance = ledger.balance(player, &item_asset(&item.id)).await?;
        Ok::<_, Error>(ItemBalance {
            id: item.id.clone(),
            count: balance.available,
            reserved: balance.reserved,
            stacks: stacks(balance.available.max(0), item.max_stack),
            instances: Vec::new(),
        })
    }))
    .await?;
    let items = items.into_iter().map(|mut balance| {
        balance.instances = held.remove(&balance.id).unwrap_or_default();
        balance
    });
    Ok(Json(Wallet {
        catalog_version: catalog.version,
        currencies,
        items: items.filter(|i| i.count > 0 || i.reserved > 0).collect(),
    }))
}

/// `count` in stacks of at most `max_stack`, full ones first. At most 1,000 stacks are listed.
fn stacks(count: i64, max_stack: i64) -> Vec<i64> {
    let max_stack = max_stack.max(1);
    let full = (count / max_stack).min(1_000);
    let mut stacks = vec![max_stack; full as usize];
    if count % max_stack > 0 && full < 1_000 {
        stacks.push(count % max_stack);
    }
    stacks
}

#[cfg(test)]
mod tests {
    use super::stacks;

    #[test]
    fn counts_split_into_full_stacks_then_the_rest() {
        assert_eq!(stacks(0, 20), Vec::<i64>::new());
        assert_eq!(stacks(45, 20), vec![20, 20, 5]);
        assert_eq!(stacks(3, 1), vec![1, 1, 1]);
    }
}
