//! Which servers an allocation request may take, best first. Pure: the service hands in the
//! servers from its watch-fed index and commits to the first candidate that is still free.

use std::collections::HashMap;
use std::sync::Arc;

use flotilla_api::allocation::{AllocationRequest, AllocationState};
use flotilla_api::{GameServer, GameServerState, Scheduling, labels};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};

use crate::error::{Error, Result};

/// An allocation request, validated and compiled.
pub struct Query {
    pub namespace: String,
    pub fleet: Option<String>,
    selector: Selector,
    preferred: Vec<Selector>,
    pub state: AllocationState,
    pub min_free_slots: u32,
}

impl Query {
    pub fn new(namespace: &str, request: &AllocationRequest) -> Result<Self> {
        let compile = |selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                       field: &str| {
            Selector::try_from(selector.clone()).map_err(|e| Error::InvalidField {
                field: field.to_owned(),
                reason: e.to_string(),
            })
        };
        let mut selector = match &request.selector {
            Some(s) => compile(s, "selector")?,
            None => Selector::default(),
        };
        if let Some(fleet) = &request.fleet {
            selector.extend(kube::core::Expression::Equal(labels::FLEET.into(), fleet.clone()));
        }
        let preferred = request
            .preferred
            .iter()
            .enumerate()
            .map(|(i, s)| compile(s, &format!("preferred[{i}]")))
            .collect::<Result<_>>()?;
        Ok(Self {
            namespace: namespace.to_owned(),
            fleet: request.fleet.clone(),
            selector,
            preferred,
            state: request.state,
            // A backfill needs room for the players it names.
            min_free_slots: match request.state {
                AllocationState::Ready => request.min_free_slots,
                AllocationState::Allocated => request
                    .min_free_slots
                    .max(request.players.len().try_into().unwrap_or(u32::MAX)),
            },
        })
    }

    pub fn admits(&self, server: &GameServer) -> bool {
        let Some(status) = &server.status else {
            return false;
        };
        let wanted = match self.state {
            AllocationState::Ready => GameServerState::Ready,
            AllocationState::Allocated => GameServerState::Allocated,
        };
        server.metadata.deletion_timestamp.is_none()
            && server.namespace().as_deref() == Some(self.namespace.as_str())
            && status.state == wanted
            && status.address.is_some()
            && free_slots(server) >= i64::from(self.min_free_slots)
            && self.selector.matches(server.labels())
    }

    /// 0 for the first preferred selector the server matches, and so on; after them all, the
    /// servers that match none.
    fn tier(&self, server: &GameServer) -> usize {
        self.preferred
            .iter()
            .position(|s| s.matches(server.labels()))
            .unwrap_or(self.preferred.len())
    }
}

/// Player slots left: capacity minus connected players; unlimited when no capacity is set.
pub fn free_slots(server: &GameServer) -> i64 {
    let capacity = server.spec.players.as_ref().map(|p| i64::from(p.capacity));
    let status = server.status.as_ref().and_then(|s| s.players.as_ref());
    match (status, capacity) {
        (Some(p), _) if p.capacity > 0 => i64::from(p.capacity) - i64::from(p.count),
        (_, Some(capacity)) => capacity - status.map_or(0, |p| i64::from(p.count)),
        (_, None) => i64::MAX,
    }
}

/// This replica's share of the candidates, so that replicas under load reach for different
/// servers first instead of racing for the same ones (they still fall back to the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

impl Partition {
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };
}

/// Servers the query admits, best first: by preferred-selector tier; then this replica's
/// partition; then by node — under `Packed` the nodes with the most allocated servers first
/// (so empty nodes drain and can be scaled away), under `Distributed` the fewest; then by name.
pub fn ranked(servers: &[Arc<GameServer>], query: &Query, partition: Partition) -> Vec<Arc<GameServer>> {
    let mut allocated_per_node: HashMap<&str, i64> = HashMap::new();
    for server in servers {
        if let Some(status) = &server.status
            && status.state == GameServerState::Allocated
            && let Some(node) = &status.node_name
        {
            *allocated_per_node.entry(node.as_str()).or_default() += 1;
        }
    }
    // Shares: every server of the namespace, by name, dealt round-robin to the replicas — even
    // shares, and the same on every replica as long as their caches agree on who exists
    // (allocations change states, not names, so a burst of them leaves the shares alone).
    let mut names: Vec<String> = servers
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(query.namespace.as_str()))
        .map(|s| s.name_any())
        .collect();
    names.sort_unstable();
    let count = partition.count.max(1);
    let foreign: HashMap<String, bool> = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, i % count != partition.index))
        .collect();
    let mut keyed: Vec<_> = servers
        .iter()
        .filter(|s| query.admits(s))
        .map(|s| {
            let node = s
                .status
                .as_ref()
                .and_then(|st| st.node_name.as_deref())
                .unwrap_or("");
            let load = allocated_per_node.get(node).copied().unwrap_or(0);
            let packing = match s.spec.scheduling {
                Scheduling::Packed => -load,
                Scheduling::Distributed => load,
            };
            let name = s.name_any();
            let foreign = foreign.get(&name).copied().unwrap_or(false);
            ((query.tier(s), foreign, packing), name, s.clone())
        })
        .collect();
    // Within a share by name; but a replica whose own share ran out takes the others' servers
    // from the far end, away from the ones their owner is taking first.
    keyed.sort_by(|(a, a_name, _), (b, b_name, _)| {
        a.cmp(b).then_with(|| {
            if a.1 {
                b_name.cmp(a_name)
            } else {
                a_name.cmp(b_name)
            }
        })
    });
    keyed.into_iter().map(|(_, _, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_api::{GameServerSpec, GameServerStatus, PlayerStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn server(name: &str, node: &str, state: GameServerState, labels: &[(&str, &str)]) -> Arc<GameServer> {
        let spec: GameServerSpec = serde_json::from_value(serde_json::json!({
            "ports": [{"name": "game", "containerPort": 7777}],
            "players": {"capacity": 4},
            "template": {"spec": {"containers": [{"name": "gs", "image": "flotilla/gameserver"}]}},
        }))
        .expect("spec");
        let mut gs = GameServer::new(name, spec);
        gs.metadata.namespace = Some("games".into());
        gs.metadata.labels = Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
        gs.status = Some(GameServerStatus {
            state,
            address: Some("127.0.0.1".into()),
            node_name: Some(node.into()),
            ..Default::default()
        });
        Arc::new(gs)
    }

    fn names(servers: &[Arc<GameServer>]) -> Vec<String> {
        servers.iter().map(|s| s.name_any()).collect()
    }

    fn selector(labels: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn packed_prefers_servers_on_the_busiest_nodes() {
        let servers = vec![
            server("a", "n1", GameServerState::Ready, &[]),
            server("b", "n2", GameServerState::Ready, &[]),
            server("c", "n2", GameServerState::Allocated, &[]),
            server("d", "n3", GameServerState::Reserved, &[]),
        ];
        let query = Query::new("games", &AllocationRequest::default()).expect("query");
        assert_eq!(names(&ranked(&servers, &query, Partition::WHOLE)), vec!["b", "a"]);
    }

    #[test]
    fn preferred_selectors_are_tried_in_order_and_required_ones_filter() {
        let servers = vec![
            server(
                "eu-1",
                "n1",
                GameServerState::Ready,
                &[("region", "eu"), ("mode", "ranked")],
            ),
            server(
                "us-1",
                "n1",
                GameServerState::Ready,
                &[("region", "us"), ("mode", "ranked")],
            ),
            server(
                "us-2",
                "n1",
                GameServerState::Ready,
                &[("region", "us"), ("mode", "casual")],
            ),
        ];
        let request = AllocationRequest {
            selector: Some(selector(&[("mode", "ranked")])),
            preferred: vec![selector(&[("region", "us")]), selector(&[("region", "eu")])],
            ..Default::default()
        };
        let query = Query::new("games", &request).expect("query");
        assert_eq!(
            names(&ranked(&servers, &query, Partition::WHOLE)),
            vec!["us-1", "eu-1"]
        );
    }

    #[test]
    fn backfill_takes_allocated_servers_with_enough_free_slots() {
        let mut full = (*server("full", "n1", GameServerState::Allocated, &[])).clone();
        if let Some(status) = full.status.as_mut() {
            status.players = Some(PlayerStatus {
                count: 4,
                capacity: 4,
                ids: vec![],
            });
        }
        let mut roomy = (*server("roomy", "n1", GameServerState::Allocated, &[])).clone();
        if let Some(status) = roomy.status.as_mut() {
            status.players = Some(PlayerStatus {
                count: 1,
                capacity: 4,
                ids: vec![],
            });
        }
        let servers = vec![
            Arc::new(full),
            Arc::new(roomy),
            server("ready", "n1", GameServerState::Ready, &[]),
        ];
        let request = AllocationRequest {
            state: AllocationState::Allocated,
            min_free_slots: 2,
            ..Default::default()
        };
        let query = Query::new("games", &request).expect("query");
        assert_eq!(names(&ranked(&servers, &query, Partition::WHOLE)), vec!["roomy"]);
    }

    #[test]
    fn replicas_take_even_disjoint_shares_first_and_raid_others_from_the_far_end() {
        let servers: Vec<_> = (0..20)
            .map(|i| server(&format!("gs-{i:02}"), "n1", GameServerState::Ready, &[]))
            .collect();
        let query = Query::new("games", &AllocationRequest::default()).expect("query");
        let first = names(&ranked(&servers, &query, Partition { index: 0, count: 2 }));
        let second = names(&ranked(&servers, &query, Partition { index: 1, count: 2 }));
        assert_eq!(
            (first.len(), second.len()),
            (20, 20),
            "every server stays reachable"
        );
        let (mine, theirs) = first.split_at(10);
        assert!(
            mine.iter().all(|n| !second[..10].contains(n)),
            "disjoint shares: {mine:?} {:?}",
            &second[..10]
        );
        assert_eq!(
            theirs.first(),
            second[..10].last(),
            "the far end of the other share first"
        );
    }

    #[test]
    fn a_bad_selector_names_the_field() {
        let request = AllocationRequest {
            preferred: vec![LabelSelector {
                match_expressions: Some(vec![
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
                        key: "a".into(),
                        operator: "Sometimes".into(),
                        values: None,
                    },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let err = Query::new("games", &request)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("preferred[0]"), "{err}");
    }
}
