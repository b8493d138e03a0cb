//! Replacing a fleet's servers after its template changed.
//!
//! Servers made from the current template are *new*, the others *old*. Old servers that are
//! Allocated or Reserved are never removed: they hold matches, and go when their game server
//! shuts them down (or, reused, calls Ready and becomes an ordinary old server). So the fleet
//! wants `replicas − protected old` new servers.
//!
//! `RollingUpdate` moves in steps, like a Deployment: at most `replicas + maxSurge` servers
//! exist, and old Ready servers are removed only while at least `replicas − maxUnavailable`
//! servers stay available (Ready, Reserved or Allocated). Old servers that are not ready yet
//! serve nobody and go at once. `Recreate` removes every unprotected old server at once.

use flotilla_api::{GameServerState, RollingUpdate, StrategyType};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// One server as the rollout sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub state: GameServerState,
    pub current: bool,
}

/// What to do in this step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// New servers to create.
    pub create: usize,
    /// Old servers that are not ready to remove (any of them).
    pub remove_old_starting: usize,
    /// Old Ready servers to remove.
    pub remove_old_ready: usize,
}

/// `maxSurge` and `maxUnavailable` as counts for `replicas`: a surge percentage rounds up, an
/// unavailable one down, and if both come to 0 one server may be unavailable (as Deployments do).
pub fn bounds(replicas: usize, rolling: &RollingUpdate) -> (usize, usize) {
    let resolve = |value: &IntOrString, round_up: bool| match value {
        IntOrString::Int(n) => usize::try_from(*n).unwrap_or(0),
        IntOrString::String(s) => {
            let percent: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            let scaled = replicas * percent;
            if round_up {
                scaled.div_ceil(100)
            } else {
                scaled / 100
            }
        }
    };
    let surge = resolve(&rolling.max_surge, true);
    let unavailable = resolve(&rolling.max_unavailable, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

fn available(state: GameServerState) -> bool {
    matches!(
        state,
        GameServerState::Ready | GameServerState::Reserved | GameServerState::Allocated
    )
}

/// The next step of a rollout towards `replicas` servers of the current template.
pub fn step(servers: &[Server], replicas: usize, strategy: StrategyType, rolling: &RollingUpdate) -> Step {
    let old = || servers.iter().filter(|s| !s.current);
    let protected_old = old().filter(|s| s.state.is_protected()).count();
    let old_starting = old().filter(|s| s.state.is_starting()).count();
    let old_ready = old().filter(|s| s.state == GameServerState::Ready).count();
    let new_count = servers.iter().filter(|s| s.current).count();
    let wanted_new = replicas.saturating_sub(protected_old);

    if strategy == StrategyType::Recreate {
        return Step {
            create: wanted_new.saturating_sub(new_count),
            remove_old_starting: old_starting,
            remove_old_ready: old_ready,
        };
    }

    let (surge, unavailable) = bounds(replicas, rolling);
    let total = servers.len();
    let create = wanted_new
        .saturating_sub(new_count)
        .min((replicas + surge).saturating_sub(total));
    let available_now = servers.iter().filter(|s| available(s.state)).count();
    let min_available = replicas.saturating_sub(unavailable);
    Step {
        create,
        remove_old_starting: old_starting,
        remove_old_ready: old_ready.min(available_now.saturating_sub(min_available)),
    }
}

#[cfg(test)]
mod tests {
    use GameServerState::*;

    use super::*;

    fn rolling(surge: IntOrString, unavailable: IntOrString) -> RollingUpdate {
        RollingUpdate {
            max_surge: surge,
            max_unavailable: unavailable,
        }
    }

    fn servers(old: &[GameServerState], new: &[GameServerState]) -> Vec<Server> {
        old.iter()
            .map(|&state| Server {
                state,
                current: false,
            })
            .chain(new.iter().map(|&state| Server { state, current: true }))
            .collect()
    }

    #[test]
    fn percentages_round_surge_up_and_unavailable_down() {
        let quarter = rolling(
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        assert_eq!(bounds(10, &quarter), (3, 2));
        assert_eq!(bounds(1, &quarter), (1, 0));
        let none = rolling(IntOrString::Int(0), IntOrString::String("10%".into()));
        assert_eq!(bounds(5, &none), (0, 1), "never stuck at 0/0");
    }

    #[test]
    fn a_rollout_never_exceeds_surge_nor_unavailability() {
        let one_one = rolling(IntOrString::Int(1), IntOrString::Int(1));
        let start = servers(&[Ready, Ready, Ready, Ready], &[]);
        let first = step(&start, 4, StrategyType::RollingUpdate, &one_one);
        assert_eq!(
            first,
            Step {
                create: 1,
                remove_old_starting: 0,
                remove_old_ready: 1
            }
        );

        // The new server is not ready yet: nothing more may go.
        let waiting = servers(&[Ready, Ready, Ready], &[Scheduled]);
        let second = step(&waiting, 4, StrategyType::RollingUpdate, &one_one);
        assert_eq!(
            second,
            Step {
                create: 1,
                remove_old_starting: 0,
                remove_old_ready: 0
            }
        );
    }

    #[test]
    fn allocated_old_servers_are_kept_and_reduce_the_new_servers_wanted() {
        let one_one = rolling(IntOrString::Int(1), IntOrString::Int(1));
        let nearly = servers(&[Allocated], &[Ready, Ready, Ready]);
        assert_eq!(
            step(&nearly, 4, StrategyType::RollingUpdate, &one_one),
            Step::default()
        );
        let recreate = step(
            &servers(&[Allocated, Ready, Scheduled], &[]),
            3,
            StrategyType::Recreate,
            &one_one,
        );
        assert_eq!(
            recreate,
            Step {
                create: 2,
                remove_old_starting: 1,
                remove_old_ready: 1
            }
        );
    }

    #[test]
    fn old_servers_that_are_not_ready_go_at_once() {
        let none = rolling(IntOrString::Int(0), IntOrString::Int(1));
        let mixed = servers(&[Creating, Scheduled, Ready], &[]);
        let first = step(&mixed, 3, StrategyType::RollingUpdate, &none);
        assert_eq!(first.remove_old_starting, 2);
        assert_eq!(
            first.remove_old_ready, 0,
            "only one server is available: it must stay"
        );
    }

    /// Plays a whole rollout, making new servers Ready between steps, and checks the bounds
    /// at every step.
    #[test]
    fn a_simulated_rollout_converges_within_its_bounds() {
        let bounds_ = rolling(
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        );
        let replicas = 8;
        let (surge, unavailable) = bounds(replicas, &bounds_);
        let mut fleet = servers(&[Ready; 7], &[]);
        fleet.push(Server {
            state: Allocated,
            current: false,
        });
        for round in 0..50 {
            let plan = step(&fleet, replicas, StrategyType::RollingUpdate, &bounds_);
            let mut removed = 0;
            fleet.retain(|s| {
                let go = !s.current && s.state == Ready && removed < plan.remove_old_ready;
                removed += usize::from(go);
                !go
            });
            fleet.extend(std::iter::repeat_n(
                Server {
                    state: Creating,
                    current: true,
                },
                plan.create,
            ));
            assert!(
                fleet.len() <= replicas + surge,
                "round {round}: {} servers",
                fleet.len()
            );
            let up = fleet.iter().filter(|s| available(s.state)).count();
            assert!(up + unavailable >= replicas, "round {round}: only {up} available");
            for s in fleet.iter_mut().filter(|s| s.current) {
                s.state = Ready;
            }
        }
        let old: Vec<_> = fleet.iter().filter(|s| !s.current).collect();
        assert_eq!(old.len(), 1, "only the allocated old server is left");
        assert_eq!(fleet.iter().filter(|s| s.current).count(), replicas - 1);
    }
}
