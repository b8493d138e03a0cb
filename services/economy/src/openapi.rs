//! The OpenAPI 3.1 document, served at `/v1/openapi.json`. Request and answer schemas are generated
//! from the Rust types, so the document cannot drift from what the handlers accept; a test checks
//! that every route is documented and every documented route exists.

use axum::routing::get;
use axum::{Json, Router};
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::auctions::routes as auctions;
use crate::market::routes as market;
use crate::state::Shared;
use crate::trades::routes as trades;
use crate::{admin, catalog, reversals, reviews, transactions, wallet};

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/openapi.json", get(|| async { Json(document()) }))
}

/// `T`'s schema, its own types referenced under `#/components/schemas/`.
fn schema<T: schemars::JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut schema = serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("components");
    }
    schema
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": reference("Error")}}})
}

/// One operation: `auth` is "player", "service", "admin" or "none"; `body` a schema name or "".
fn op(summary: &str, auth: &str, body: &str, answer: &str) -> Value {
    let mut operation = json!({
        "summary": summary,
        "responses": {
            "200": {"description": "success", "content": {"application/json": {"schema": reference(answer)}}},
            "400": error("bad input; `field` names it"),
            "401": error("missing, invalid, expired or revoked credential"),
            "404": error("unknown offer, item or currency"),
            "503": error("storage is unavailable; retry (writes: with the same Idempotency-Key)"),
        },
    });
    if auth != "none" {
        operation["security"] = json!([{auth: []}]);
    }
    if !body.is_empty() {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": reference(body)}}});
    }
    operation
}

/// A write: takes an `Idempotency-Key`, and may be refused (422) or find its key reused (409).
fn write(summary: &str, auth: &str, body: &str) -> Value {
    write_answering(summary, auth, body, "Transaction")
}

fn write_answering(summary: &str, auth: &str, body: &str, answer: &str) -> Value {
    let mut operation = op(summary, auth, body, answer);
    operation["parameters"] = json!([{
        "name": "Idempotency-Key", "in": "header", "required": true,
        "description": "the same key and body answer the stored result; bound for as long as the ledger is kept",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_.:-]+$"},
    }]);
    operation["responses"]["202"] = json!({"description": "held by a fraud rule for review; its value is reserved", "content": {"application/json": {"schema": reference("Transaction")}}});
    operation["responses"]["409"] = error("this idempotency key was used for a different request");
    operation["responses"]["422"] =
        error("refused (not enough funds, a limit); the same answer on every retry");
    operation
}

/// A reversal: answered with the compensating transaction; 409 for a reversal or an uncommitted
/// transaction, 422 when the proceeds were spent under the `fail` policy.
fn reversal() -> Value {
    let mut operation = op(
        "Reverse a committed transaction with a compensating one",
        "admin",
        "ReversalRequest",
        "Transaction",
    );
    operation["responses"]["409"] = error("a reversal, or a transaction that was not committed");
    operation["responses"]["422"] = error("the proceeds were spent and the policy is `fail`");
    operation
}

/// A review: answered with the transaction's outcome; 409 when it was reviewed already.
fn review() -> Value {
    let mut operation = op(
        "Approve or reject a held transaction",
        "admin",
        "ReviewRequest",
        "Transaction",
    );
    operation["responses"]["409"] = error("reviewed already: the first review stands");
    operation
}

/// Adds `parameters` to the operation's own (a write's `Idempotency-Key`).
fn with_parameters(mut operation: Value, parameters: Value) -> Value {
    let mut all = operation["parameters"].as_array().cloned().unwrap_or_default();
    all.extend(parameters.as_array().cloned().unwrap_or_default());
    operation["parameters"] = Value::Array(all);
    operation
}

fn path(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}

fn browse_parameters() -> Value {
    let text = || json!({"type": "string"});
    json!([
        query("item", text()),
        query("category", text()),
        query("seller", text()),
        query("currency", text()),
        query(
            "properties",
            json!({"type": "string", "description": "comma-separated name=value filters"})
        ),
        query("minPrice", json!({"type": "integer", "minimum": 0})),
        query("maxPrice", json!({"type": "integer", "minimum": 0})),
        query(
            "sort",
            json!({"type": "string", "enum": ["priceAsc", "priceDesc", "newest", "oldest"]})
        ),
        query("limit", json!({"type": "integer", "minimum": 1, "maximum": 100})),
        query("cursor", text()),
    ])
}

/// Opening a trade: a keyed write, refused across a block.
fn open_trade() -> Value {
    let mut operation = write_answering(
        "Open a trade with another player",
        "player",
        "OpenTradeRequest",
        "Trade",
    );
    operation["responses"]["403"] = error("a block stands between the players");
    operation
}

/// Trading's own answers beyond the common ones.
fn trade(summary: &str, body: &str) -> Value {
    let mut operation = op(summary, "player", body, "Trade");
    operation["responses"]["403"] = error("a block stands between the players");
    operation["responses"]["409"] =
        error("the trade is closed, or the offer changed since the version named");
    operation["responses"]["422"] = error("the goods offered are not there; the table is unchanged");
    operation["responses"]["503"] = error("storage or the player service is unavailable");
    operation
}

/// The auction house's answers beyond the common ones.
fn auction(summary: &str, auth: &str, body: &str, answer: &str) -> Value {
    let mut operation = op(summary, auth, body, answer);
    operation["responses"]["409"] =
        error("bids came in since the version named (the answer says the current one and the least bid)");
    operation["responses"]["422"] =
        error("refused: below the least bid, already the top bid, ended, or not enough funds");
    operation
}

/// The market's own answers beyond the common ones.
fn market(mut operation: Value) -> Value {
    operation["responses"]["403"] = error("only the seller may do this");
    operation["responses"]["409"] = error("purchases of the listing are being decided; try again");
    operation
}

fn history_parameters(with_player: bool) -> Value {
    let mut parameters = vec![];
    if with_player {
        parameters
            .push(json!({"name": "player", "in": "path", "required": true, "schema": {"type": "string"}}));
    }
    parameters.push(query(
        "kind",
        json!({"type": "string", "enum": transactions::KINDS}),
    ));
    parameters.push(query("sinceMs", json!({"type": "integer"})));
    parameters.push(query("untilMs", json!({"type": "integer"})));
    parameters.push(query(
        "limit",
        json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
    ));
    parameters.push(query("cursor", json!({"type": "string"})));
    json!(parameters)
}

pub fn document() -> Value {
    let player_path =
        json!([{"name": "player", "in": "path", "required": true, "schema": {"type": "string"}}]);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flotilla economy service", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v1/catalog": {"get": op("The catalog in use: currencies, items, offers", "none", "", "Catalog")},
            "/v1/wallet": {"get": op("The caller's balances of every currency and item", "player", "", "Wallet")},
            "/v1/players/{player}/wallet": {"get": with_parameters(op("A player's balances", "service", "", "Wallet"), player_path.clone())},
            "/v1/purchases": {"post": write("Buy a store offer: its cost leaves, its reward arrives, or neither", "player", "PurchaseRequest")},
            "/v1/consumptions": {"post": write("Use up a consumable item", "player", "ConsumeRequest")},
            "/v1/gifts": {"post": write("Give a transferable currency or tradeable item to another player", "player", "GiftRequest")},
            "/v1/grants": {"post": write("Grant currencies and items to a player (rewards)", "service", "GrantRequest")},
            "/v1/transactions": {"get": with_parameters(op("The caller's transactions, newest first", "player", "", "TransactionPage"), history_parameters(false))},
            "/v1/players/{player}/transactions": {"get": with_parameters(op("A player's transactions, newest first", "service", "", "TransactionPage"), history_parameters(true))},
            "/v1/market/listings": {
                "post": write_answering("List a stack or an instance at a fixed price; it moves to the listing's escrow", "player", "ListRequest", "ListAnswer"),
                "get": with_parameters(op("Browse open listings", "player", "", "ListingPage"), browse_parameters()),
            },
            "/v1/market/listings/{id}": {"get": with_parameters(op("A listing and its state", "player", "", "Listing"), json!([path("id")]))},
            "/v1/market/listings/{id}/purchases": {"post": with_parameters(write("Buy units of a listing: all or nothing", "player", "BuyRequest"), json!([path("id")]))},
            "/v1/market/listings/{id}/cancel": {"post": with_parameters(market(op("Take a listing down; what is left goes back to the seller", "player", "", "Listing")), json!([path("id")]))},
            "/v1/market/items/{item}/prices": {"get": with_parameters(op("An item's latest sales and median price", "player", "", "PriceHistory"), json!([path("item"), query("limit", json!({"type": "integer", "minimum": 1, "maximum": 100}))]))},
            "/v1/admin/market/reindex": {"post": op("Rebuild the listings' search index from the store", "admin", "", "Reindex")},
            "/v1/trades": {
                "post": open_trade(),
                "get": with_parameters(op("The caller's trades, newest first", "player", "", "TradePage"), json!([
                    query("limit", json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
                    query("cursor", json!({"type": "string"})),
                ])),
            },
            "/v1/trades/{id}": {"get": with_parameters(op("A trade the caller is a party to", "player", "", "Trade"), json!([path("id")]))},
            "/v1/trades/{id}/offer": {"put": with_parameters(trade("Put goods on the table, replacing the caller's; withdraws both acceptances", "OfferRequest"), json!([path("id")]))},
            "/v1/trades/{id}/accept": {"post": with_parameters(trade("Accept the version seen; when both have, the goods change hands", "AcceptRequest"), json!([path("id")]))},
            "/v1/trades/{id}/cancel": {"post": with_parameters(trade("Cancel: everything goes back", ""), json!([path("id")]))},
            "/v1/auctions": {
                "post": write_answering("Put a lot up for auction; it moves to the auction's escrow", "player", "CreateAuctionRequest", "Auction"),
                "get": with_parameters(op("Auctions, newest first", "player", "", "AuctionPage"), json!([
                    query("item", json!({"type": "string"})),
                    query("seller", json!({"type": "string"})),
                    query("limit", json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
                    query("cursor", json!({"type": "string"})),
                ])),
            },
            "/v1/auctions/{id}": {"get": with_parameters(op("An auction and its state", "player", "", "Auction"), json!([path("id")]))},
            "/v1/auctions/{id}/bids": {
                "post": with_parameters(auction("Bid: the amount is held at once, the bid beaten is refunded at once", "player", "BidRequest", "Auction"), json!([path("id")])),
                "get": with_parameters(op("The bids that went through, newest first", "player", "", "Bids"), json!([path("id")])),
            },
            "/v1/admin/audit": {"post": op("Recompute the books from every record", "admin", "", "Audit")},
            "/v1/admin/reversals": {"post": reversal()},
            "/v1/admin/reviews": {"get": with_parameters(op("Transactions held by fraud rules, oldest first", "admin", "", "TransactionPage"), json!([
                {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "maximum": u32::MAX}},
                {"name": "cursor", "in": "query", "required": false, "schema": {"type": "string"}},
            ]))},
            "/v1/admin/reviews/{tx}": {"post": with_parameters(review(), json!([{"name": "tx", "in": "path", "required": true, "schema": {"type": "string"}}]))},
            "/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "the OpenAPI document"}}}},
        },
        "components": {
            "securitySchemes": {
                "player": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "the player service's access token"},
                "service": {"type": "http", "scheme": "bearer", "description": "the service key (or the admin key)"},
                "admin": {"type": "http", "scheme": "bearer", "description": "the admin key"},
            },
            "schemas": schemas(),
        },
    })
}

fn schemas() -> Value {
    let mut schemas = serde_json::Map::new();
    let entries = [
        ("Catalog", schema::<catalog::Catalog>()),
        ("Wallet", schema::<wallet::Wallet>()),
        ("PurchaseRequest", schema::<transactions::PurchaseRequest>()),
        ("ConsumeRequest", schema::<transactions::ConsumeRequest>()),
        ("GiftRequest", schema::<transactions::GiftRequest>()),
        ("GrantRequest", schema::<transactions::GrantRequest>()),
        ("Transaction", schema::<transactions::TransactionView>()),
        ("Audit", schema::<admin::AuditAnswer>()),
        ("ReversalRequest", schema::<reversals::ReversalRequest>()),
        ("ReviewRequest", schema::<reviews::ReviewRequest>()),
        ("ListRequest", schema::<market::ListRequest>()),
        ("ListAnswer", schema::<market::ListAnswer>()),
        ("BuyRequest", schema::<market::BuyRequest>()),
        ("ListingPage", schema::<market::ListingPage>()),
        ("Listing", schema::<crate::market::listings::ListingView>()),
        ("PriceHistory", schema::<market::PriceHistory>()),
        ("Reindex", schema::<market::ReindexAnswer>()),
        ("OpenTradeRequest", schema::<trades::OpenRequest>()),
        ("OfferRequest", schema::<trades::OfferRequest>()),
        ("AcceptRequest", schema::<trades::AcceptRequest>()),
        ("Trade", schema::<trades::TradeView>()),
        ("CreateAuctionRequest", schema::<auctions::CreateRequest>()),
        ("BidRequest", schema::<auctions::BidRequest>()),
        ("Auction", schema::<auctions::AuctionView>()),
        ("Bids", schema::<Vec<crate::auctions::state::Bid>>()),
    ];
    for (name, schema) in entries {
        schemas.insert(name.to_owned(), schema);
    }
    // The types the schemas above refer to, registered under their own names.
    let generator = SchemaSettings::draft2020_12()
        .with(|settings| settings.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut generator = generator;
    generator.subschema_for::<catalog::Catalog>();
    generator.subschema_for::<wallet::Wallet>();
    generator.subschema_for::<transactions::TransactionView>();
    generator.subschema_for::<admin::AuditAnswer>();
    generator.subschema_for::<reversals::ReversalRequest>();
    generator.subschema_for::<reviews::ReviewRequest>();
    generator.subschema_for::<transactions::GrantRequest>();
    generator.subschema_for::<market::ListAnswer>();
    generator.subschema_for::<market::ListingPage>();
    generator.subschema_for::<market::PriceHistory>();
    generator.subschema_for::<trades::TradeView>();
    generator.subschema_for::<auctions::AuctionView>();
    generator.subschema_for::<Vec<crate::auctions::state::Bid>>();
    for (name, schema) in generator.take_definitions(true) {
        schemas.entry(name).or_insert(schema);
    }
    schemas.insert(
        "AuctionPage".into(),
        json!({"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": reference("Auction")},
            "nextCursor": {"type": "string", "description": "pass back for the next page; absent on the last"},
        }}),
    );
    schemas.insert(
        "TradePage".into(),
        json!({"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": reference("Trade")},
            "nextCursor": {"type": "string", "description": "pass back for the next page; absent on the last"},
        }}),
    );
    schemas.insert(
        "TransactionPage".into(),
        json!({"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": reference("Transaction")},
            "nextCursor": {"type": "string", "description": "pass back for the next page; absent on the last"},
        }}),
    );
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
        }}}),
    );
    Value::Object(schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: [&str; 10] = [
        include_str!("auctions/routes.rs"),
        include_str!("market/routes.rs"),
        include_str!("trades/routes.rs"),
        include_str!("wallet.rs"),
        include_str!("reviews.rs"),
        include_str!("reversals.rs"),
        include_str!("transactions.rs"),
        include_str!("admin.rs"),
        include_str!("openapi.rs"),
        include_str!("lib.rs"),
    ];

    #[test]
    fn every_route_is_documented_and_every_documented_route_exists() {
        let document = document();
        let mut routed = Vec::new();
        for source in SOURCES {
            for route in source.split(".route(\"").skip(1) {
                let path = route.split('"').next().unwrap_or_default().to_owned();
                // `.route("/path", post(create).get(browse))`: every method on the line.
                let handlers = route.lines().next().unwrap_or_default();
                let methods = handlers
                    .split(['.', ' '])
                    .filter_map(|call| call.split_once('(').map(|(method, _)| method))
                    .filter(|method| ["get", "post", "put", "patch", "delete"].contains(method));
                if path.starts_with("/v1/") {
                    for method in methods {
                        assert!(
                            document["paths"][&path][method].is_object(),
                            "{method} {path} is not documented"
                        );
                    }
                    routed.push(path);
                }
            }
        }
        for path in document["paths"].as_object().expect("paths").keys() {
            assert!(routed.contains(path), "{path} is documented but not routed");
        }
    }

    #[test]
    fn every_reference_names_a_registered_schema() {
        let document = document();
        let text = document.to_string();
        for target in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = target.split('"').next().unwrap_or_default();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name} is referenced but not registered"
            );
        }
    }
}
