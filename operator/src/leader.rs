//! Leader election with a `coordination.k8s.io` Lease. Only the holder runs the controllers and
//! the health monitor (two writers would fight); every replica serves the SDK endpoint.
//!
//! The holder renews the lease every `duration / 3`. Another replica takes it over once
//! `renewTime + leaseDurationSeconds` has passed, so a crashed leader is replaced within one
//! lease duration. Every write carries the lease's resourceVersion, so two candidates can never
//! both win. A leader that cannot renew in time stops (the process exits and is restarted)
//! rather than keep running beside a new leader.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};
use tracing::{info, warn};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// What the lease says, reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub identity: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Duration,
}

/// Whether `me` may take (or keep) a lease in this state at `now`.
pub fn may_take(holder: &Holder, me: &str, now: Timestamp) -> bool {
    match (&holder.identity, holder.renewed) {
        (Some(id), _) if id == me => true,
        (None, _) | (_, None) => true,
        (Some(_), Some(renewed)) => {
            let expiry = renewed + jiff::SignedDuration::try_from(holder.duration).unwrap_or_default();
            now >= expiry
        }
    }
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        Elector {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) -> Result<()> {
        let retry = (self.duration / 5).max(Duration::from_millis(500));
        loop {
            match self.try_take().await {
                Ok(true) => {
                    info!(lease = %self.name, identity = %self.identity, "became leader");
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "lease acquisition failed"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease until renewal fails for longer than the lease lasts, or another
    /// replica holds it; then returns an error: leadership is lost.
    pub async fn hold(&self) -> Result<()> {
        let period = self.duration / 3;
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            match self.try_take().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return Err(Error::LostLeadership("another replica holds the lease".into())),
                Err(e) => {
                    warn!(error = %e, "lease renewal failed");
                    if last_renewal.elapsed() + period >= self.duration {
                        return Err(Error::LostLeadership(format!("could not renew the lease: {e}")));
                    }
                }
            }
        }
    }

    /// Gives the lease up on a clean shutdown, so the next leader need not wait for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, "released leadership"),
            Err(e) => warn!(error = %e, "could not release the lease"),
        }
    }

    /// One attempt to create, take over or renew the lease.
    async fn try_take(&self) -> Result<bool> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(existing) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = existing.spec.clone().unwrap_or_default();
        let holder = Holder {
            identity: spec.holder_identity.clone(),
            renewed: spec.renew_time.as_ref().map(|t| t.0),
            duration: Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0),
            ),
        };
        if !may_take(&holder, &self.identity, now) {
            return Ok(false);
        }
        let taking_over = holder.identity.as_deref() != Some(self.identity.as_str());
        let mut lease = existing;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(seconds);
        if taking_over {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        // `replace` sends the resourceVersion we read: a concurrent writer makes this fail.
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(identity: Option<&str>, renewed_secs_ago: i64) -> Holder {
        Holder {
            identity: identity.map(Into::into),
            renewed: Some(Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago)),
            duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn a_live_lease_of_another_replica_is_respected() {
        assert!(!may_take(&holder(Some("b"), 5), "a", Timestamp::now()));
    }

    #[test]
    fn an_expired_lease_or_our_own_may_be_taken() {
        assert!(may_take(&holder(Some("b"), 16), "a", Timestamp::now()));
        assert!(may_take(&holder(Some("a"), 5), "a", Timestamp::now()));
        assert!(may_take(&holder(None, 0), "a", Timestamp::now()));
    }
}
