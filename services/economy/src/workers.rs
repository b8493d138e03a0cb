//! Background work: the recovery worker, the market's and trades' expiry, auction settlement and
//! the continuous audit (on one replica at a time, by lease), catalog reloads and the player
//! service's key refresh (on every replica).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_storage::lease::Lease;

use crate::Result;
use crate::catalog::Catalog;
use crate::ledger::audit::{Books, Report, audit};
use crate::ledger::model::Posting;
use crate::market::closing::expire_due;
use crate::metrics::EscrowLabels;
use crate::state::Shared;

/// Completes or voids transactions left unfinished for `grace` (a crashed replica, a lost
/// connection), returns expired market listings to their sellers, and audits the books every
/// `audit_every`; only while this replica holds the lease.
pub async fn recover_and_audit(
    state: Shared,
    mut lease: Lease,
    every: Duration,
    grace: Duration,
    audit_every: Option<Duration>,
) {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let mut last_audit: Option<Instant> = None;
    // Every listing expiring before this is closed; a new lease holder starts from the beginning.
    let mut expired_until = 0;
    let mut stragglers = Vec::new();
    let mut trades_expired_until = 0;
    let (mut auctions_settled_until, mut extended_auctions) = (0, Vec::new());
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match lease.keep().await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(error) => {
                tracing::warn!(%error, "recovery lease unavailable");
                continue;
            }
        }
        let before = state.ledger.now_ms() - grace_ms;
        match state.ledger.recover(before, 500).await {
            Ok(0) => {}
            Ok(recovered) => {
                tracing::info!(recovered, "finished transactions left open");
                state.metrics.recovered.inc_by(recovered as u64);
            }
            Err(error) => tracing::warn!(%error, "recovery round failed"),
        }
        match expire_due(&state, &mut expired_until, &mut stragglers).await {
            Ok(0) => {}
            Ok(closed) => tracing::info!(closed, "returned expired listings"),
            Err(error) => tracing::warn!(%error, "listing expiry round failed"),
        }
        match crate::trades::expire_due(&state, &mut trades_expired_until).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "returned expired trades"),
            Err(error) => tracing::warn!(%error, "trade expiry round failed"),
        }
        match crate::auctions::settle_due(&state, &mut auctions_settled_until, &mut extended_auctions).await {
            Ok(0) => {}
            Ok(settled) => tracing::info!(settled, "settled ended auctions"),
            Err(error) => tracing::warn!(%error, "auction settlement round failed"),
        }
        if let Some(period) = audit_every
            && last_audit.is_none_or(|at| at.elapsed() >= period)
        {
            last_audit = Some(Instant::now());
            if let Err(error) = run_audit(&state).await {
                tracing::warn!(%error, "audit failed");
            }
        }
    }
}

/// Recomputes the books and publishes the result as metrics.
pub async fn run_audit(state: &Shared) -> Result<Report> {
    let started = Instant::now();
    let books = state.ledger.store().books().await?;
    let report = audit(&books);
    let metrics = &state.metrics;
    for (labels, held) in escrow_held(&books) {
        metrics.escrow.get_or_create(&labels).set(held);
    }
    metrics.audit_drift.set(report.drift);
    metrics.audit_violations.set(report.violations.len() as i64);
    metrics.audit_unfinished.set(report.unfinished as i64);
    metrics.audit_seconds.set(started.elapsed().as_secs_f64());
    for violation in report.violations.iter().take(20) {
        tracing::error!(violation, "ledger audit");
    }
    Ok(report)
}

/// What escrow accounts hold, per exchange (`listing`, `trade`, `auction`) and asset, from each
/// escrow account's newest posting. Instances count in their item's count.
fn escrow_held(books: &Books) -> HashMap<EscrowLabels, i64> {
    let mut newest: HashMap<&str, &Posting> = HashMap::new();
    for posting in books.postings.iter().filter(|p| p.player.contains(':')) {
        let entry = newest.entry(posting.key.as_str()).or_insert(posting);
        if posting.seq > entry.seq {
            *entry = posting;
        }
    }
    let mut held = HashMap::new();
    for posting in newest.values().filter(|p| !p.asset.starts_with("u:")) {
        let exchange = posting.player.split(':').next().unwrap_or_default();
        let labels = EscrowLabels {
            exchange: exchange.to_owned(),
            asset: posting.asset.clone(),
        };
        *held.entry(labels).or_default() += posting.balance.available + posting.balance.reserved;
    }
    held
}

/// Re-reads the catalog document when it changes (a ConfigMap update); a document that fails
/// validation is logged and counted, and the running catalog stays.
pub async fn reload_catalog(state: Shared, path: PathBuf, every: Duration) {
    let mut loaded = std::fs::read_to_string(&path).ok();
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if loaded.as_deref() == Some(text.as_str()) {
            continue;
        }
        match Catalog::parse(&text) {
            Ok(catalog) => {
                tracing::info!(version = catalog.version, "catalog reloaded");
                state.set_catalog(catalog);
            }
            Err(error) => {
                tracing::error!(%error, "catalog refused; the running one stays");
                state.metrics.catalog_refused.inc();
            }
        }
        loaded = Some(text);
    }
}
