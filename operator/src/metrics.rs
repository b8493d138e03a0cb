//! The operator's Prometheus metrics, in one registry made at start-up and passed down.
//! Labels are bounded: namespaces, fleet names, state names, controller names and error kinds
//! — never free text. See `docs/metrics.md`.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetStateLabels {
    pub namespace: String,
    pub fleet: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SdkLabels {
    pub request: String,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AllocationLabels {
    pub namespace: String,
    /// The requested fleet, or "" for selector-only requests.
    pub fleet: String,
    /// allocated, idempotent, no_capacity, bad_request, not_found, unauthenticated, forbidden,
    /// error.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AutoscaleLabels {
    pub namespace: String,
    /// scaled_up, scaled_down, unchanged, limited, error.
    pub result: String,
}

pub struct Metrics {
    pub game_servers: Family<FleetStateLabels, Gauge>,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub health_failures: Family<NamespaceLabels, Counter>,
    pub sdk_requests: Family<SdkLabels, Counter>,
    pub leader: Gauge,
    pub allocations: Family<AllocationLabels, Counter>,
    pub allocation_duration: Histogram,
    pub allocation_conflicts: Counter,
    pub autoscaler_decisions: Family<AutoscaleLabels, Counter>,
    pub api_requests: Family<ApiRequestLabels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        // Reconciles take from about a millisecond (nothing to do) to a few hundred (creating
        // many servers, each a round trip): 1 ms to 5 s, doubling.
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 13,
            ))
        });
        let metrics = Metrics {
            game_servers: Family::default(),
            reconcile_duration,
            reconcile_errors: Family::default(),
            health_failures: Family::default(),
            sdk_requests: Family::default(),
            leader: Gauge::default(),
            allocations: Family::default(),
            // An allocation is one status write when uncontended (a few ms), more under
            // conflicts: 0.5 ms to ~2 s, doubling.
            allocation_duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.0005, 2.0, 13,
            )),
            allocation_conflicts: Counter::default(),
            autoscaler_decisions: Family::default(),
            api_requests: Family::default(),
        };
        registry.register(
            "flotilla_kube_api_requests",
            "Requests the operator sent to the Kubernetes API, by verb and resource",
            metrics.api_requests.clone(),
        );
        registry.register(
            "flotilla_game_servers",
            "Game servers per fleet and state",
            metrics.game_servers.clone(),
        );
        registry.register(
            "flotilla_reconcile_duration_seconds",
            "Time taken by one reconcile",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "flotilla_reconcile_errors",
            "Reconciles that failed, by error kind",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "flotilla_health_failures",
            "Game servers marked Unhealthy for missed heartbeats",
            metrics.health_failures.clone(),
        );
        registry.register(
            "flotilla_sdk_requests",
            "SDK requests by request and status code",
            metrics.sdk_requests.clone(),
        );
        registry.register(
            "flotilla_leader",
            "1 while this replica holds the leader lease",
            metrics.leader.clone(),
        );
        registry.register(
            "flotilla_allocations",
            "Allocation requests by namespace, fleet and result",
            metrics.allocations.clone(),
        );
        registry.register(
            "flotilla_allocation_duration_seconds",
            "Time to answer an allocation request",
            metrics.allocation_duration.clone(),
        );
        registry.register(
            "flotilla_allocation_conflicts",
            "Candidates lost to a concurrent write (another allocation or the server itself); the next candidate is tried",
            metrics.allocation_conflicts.clone(),
        );
        registry.register(
            "flotilla_autoscaler_decisions",
            "FleetAutoscaler evaluations by result",
            metrics.autoscaler_decisions.clone(),
        );
        metrics
    }

    pub fn count_autoscale(&self, namespace: &str, result: &str) {
        self.autoscaler_decisions
            .get_or_create(&AutoscaleLabels {
                namespace: namespace.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn count_allocation(&self, namespace: &str, fleet: &str, result: &str) {
        self.allocations
            .get_or_create(&AllocationLabels {
                namespace: namespace.into(),
                fleet: fleet.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn observe_reconcile(&self, controller: &str, took: Duration) {
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn count_error(&self, controller: &str, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                kind: kind.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_in_the_openmetrics_text_format() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics
            .game_servers
            .get_or_create(&FleetStateLabels {
                namespace: "games".into(),
                fleet: "arena".into(),
                state: "Ready".into(),
            })
            .set(3);
        metrics.observe_reconcile("fleet", Duration::from_millis(3));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(r#"flotilla_game_servers{namespace="games",fleet="arena",state="Ready"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("flotilla_reconcile_duration_seconds_bucket"),
            "{text}"
        );
    }
}
