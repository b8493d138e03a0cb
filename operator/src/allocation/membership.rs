//! Which allocator replicas are alive, so each can take its own share of the candidates.
//!
//! Every replica keeps a Lease of its own (`flotilla-allocator-<identity>`, labelled
//! [`LABEL`]) renewed every [`RENEW`], and lists its peers' leases as often. The live
//! identities, sorted, give every replica the same view of who is index 0, 1, …; a replica
//! that stops renewing drops out after [`LIFETIME`] and the others take over its share. Until
//! then its share is only preferred by nobody: servers are never unreachable, since every
//! replica falls back to the whole fleet.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use tracing::{debug, info};

use super::select::Partition;

pub const LABEL: &str = "flotilla.dev/allocator";
const RENEW: Duration = Duration::from_secs(2);
const LIFETIME: Duration = Duration::from_secs(6);

/// The current partition, updated by [`run`].
#[derive(Clone)]
pub struct Membership {
    partition: Arc<RwLock<Partition>>,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            partition: Arc::new(RwLock::new(Partition::WHOLE)),
        }
    }
}

impl Membership {
    pub fn partition(&self) -> Partition {
        self.partition.read().map_or(Partition::WHOLE, |p| *p)
    }
}

/// Renews this replica's lease and recomputes the partition, forever.
pub async fn run(client: Client, namespace: String, identity: String, membership: Membership) {
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let name = format!("flotilla-allocator-{}", sanitize(&identity));
    let mut ticker = tokio::time::interval(RENEW);
    loop {
        ticker.tick().await;
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(LABEL.to_owned(), "true".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.clone()),
                lease_duration_seconds: Some(LIFETIME.as_secs() as i32),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..Default::default()
            }),
        };
        let params = PatchParams::apply("flotilla-allocator").force();
        if let Err(e) = leases.patch(&name, &params, &Patch::Apply(&lease)).await {
            debug!(error = %e, "allocator lease not renewed");
            continue;
        }
        let Ok(list) = leases
            .list(&ListParams::default().labels(&format!("{LABEL}=true")))
            .await
        else {
            continue;
        };
        let now = Timestamp::now();
        let mut live: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|l| l.spec)
            .filter(|s| {
                let lifetime =
                    jiff::SignedDuration::from_secs(i64::from(s.lease_duration_seconds.unwrap_or(0)));
                s.renew_time.as_ref().is_some_and(|t| t.0 + lifetime > now)
            })
            .filter_map(|s| s.holder_identity)
            .collect();
        live.sort();
        live.dedup();
        let next = match live.iter().position(|i| *i == identity) {
            Some(index) => Partition {
                index,
                count: live.len(),
            },
            None => Partition::WHOLE,
        };
        if let Ok(mut current) = membership.partition.write()
            && *current != next
        {
            info!(
                index = next.index,
                count = next.count,
                "allocator partition changed"
            );
            *current = next;
        }
    }
}

/// Lease names are DNS subdomains; identities (pod names, host-pid) nearly are.
fn sanitize(identity: &str) -> String {
    identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(200)
        .collect()
}
