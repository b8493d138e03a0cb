//! Naming the leader on every replica, not only on the one that holds the Lease.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use tracing::debug;

use super::ConsoleFeed;
use crate::leader::{Holder, may_take};

/// Keeps every replica's idea of the leader current: the lease is read every `period` (the
/// chart grants `get` on leases, not `watch`). A lease past its renewal deadline names nobody:
/// its holder is gone and a successor is about to take over.
pub async fn follow_lease(
    client: Client,
    namespace: String,
    name: String,
    feed: Arc<ConsoleFeed>,
    period: Duration,
) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    loop {
        match leases.get_opt(&name).await {
            Ok(lease) => {
                let spec = lease.and_then(|l| l.spec).unwrap_or_default();
                let holder = Holder {
                    identity: spec.holder_identity,
                    renewed: spec.renew_time.map(|t| t.0),
                    duration: Duration::from_secs(
                        u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
                    ),
                };
                // An empty identity can take exactly the leases that are free or expired.
                let live = !may_take(&holder, "", Timestamp::now());
                feed.set_holder(holder.identity.filter(|_| live));
            }
            Err(e) => debug!(error = %e, "console: leader lease not read"),
        }
        tokio::time::sleep(period).await;
    }
}
