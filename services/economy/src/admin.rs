//! Operator endpoints: the audit on demand.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use crate::Result;
use crate::caller::AdminCaller;
use crate::state::Shared;
use crate::workers::run_audit;

pub fn routes() -> Router<Shared> {
    Router::new().route("/v1/admin/audit", post(audit))
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditAnswer {
    /// Value created or destroyed: 0 when the books balance.
    pub drift: i64,
    /// Up to 100 rule violations, each naming the account and position or transaction.
    pub violations: Vec<String>,
    pub unfinished: usize,
    /// Per asset: what players own, what is reserved, what was issued (minted − burned), and what
    /// is between accounts right now.
    pub assets: Vec<AssetTotals>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssetTotals {
    pub asset: String,
    pub owned: i64,
    pub reserved: i64,
    pub issued: i64,
    pub in_flight: i64,
}

/// Recomputes the books from every record (expensive: it reads the whole ledger).
async fn audit(State(state): State<Shared>, _: AdminCaller) -> Result<Json<AuditAnswer>> {
    let report = run_audit(&state).await?;
    Ok(Json(AuditAnswer {
        drift: report.drift,
        violations: report.violations.into_iter().take(100).collect(),
        unfinished: report.unfinished,
        assets: report
            .totals
            .into_iter()
            .map(|(asset, t)| AssetTotals {
                asset,
                owned: t.owned,
                reserved: t.reserved,
                issued: t.issued,
                in_flight: t.in_flight,
            })
            .collect(),
    }))
}
