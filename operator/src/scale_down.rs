//! Which game servers a fleet removes when it has too many: never an allocated or reserved
//! one; servers that are not ready yet first (nobody can be using them), then ready ones. Among
//! ready servers, `Packed` empties the least-used nodes first, so whole nodes can be released;
//! `Distributed` takes from the fullest nodes first, keeping the spread even.

use std::collections::BTreeMap;

use flotilla_api::{GameServerState, Scheduling};

/// What scale-down needs to know about one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub state: GameServerState,
    pub node: Option<String>,
}

/// Picks up to `count` servers to remove, in removal order.
pub fn victims(servers: &[Candidate], count: usize, scheduling: Scheduling) -> Vec<String> {
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for server in servers {
        *per_node.entry(server.node.as_deref().unwrap_or("")).or_default() += 1;
    }
    let mut removable: Vec<&Candidate> = servers
        .iter()
        .filter(|s| !s.state.is_protected() && s.state != GameServerState::Shutdown)
        .collect();
    removable.sort_by_key(|s| {
        let class = if s.state.is_failed() {
            0
        } else if s.state.is_starting() {
            1
        } else {
            2
        };
        let load = per_node[s.node.as_deref().unwrap_or("")];
        let node_order = match scheduling {
            Scheduling::Packed => load as isize,
            Scheduling::Distributed => -(load as isize),
        };
        (class, node_order, s.node.clone(), s.name.clone())
    });
    removable
        .into_iter()
        .take(count)
        .map(|s| s.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use GameServerState::*;

    use super::*;

    fn server(name: &str, state: GameServerState, node: &str) -> Candidate {
        Candidate {
            name: name.into(),
            state,
            node: Some(node.into()),
        }
    }

    #[test]
    fn allocated_and_reserved_servers_are_never_chosen() {
        let servers = [
            server("a", Allocated, "n1"),
            server("r", Reserved, "n1"),
            server("x", Ready, "n2"),
        ];
        assert_eq!(victims(&servers, 3, Scheduling::Packed), vec!["x"]);
        assert!(victims(&servers[..2], 2, Scheduling::Distributed).is_empty());
    }

    #[test]
    fn servers_not_yet_ready_go_before_ready_ones() {
        let servers = [
            server("ready", Ready, "n1"),
            server("creating", Creating, "n1"),
            server("requested", RequestReady, "n2"),
        ];
        let mut chosen = victims(&servers, 2, Scheduling::Packed);
        chosen.sort();
        assert_eq!(chosen, vec!["creating", "requested"]);
    }

    #[test]
    fn packed_empties_the_least_used_node_first() {
        let servers = [
            server("busy-1", Ready, "busy"),
            server("busy-2", Ready, "busy"),
            server("busy-3", Allocated, "busy"),
            server("quiet-1", Ready, "quiet"),
        ];
        assert_eq!(
            victims(&servers, 2, Scheduling::Packed),
            vec!["quiet-1", "busy-1"]
        );
    }

    #[test]
    fn distributed_takes_from_the_fullest_node_first() {
        let servers = [
            server("busy-1", Ready, "busy"),
            server("busy-2", Ready, "busy"),
            server("quiet-1", Ready, "quiet"),
        ];
        assert_eq!(victims(&servers, 1, Scheduling::Distributed), vec!["busy-1"]);
    }
}
