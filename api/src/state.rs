//! The game-server lifecycle, after Agones' proven machine:
//!
//! ```text
//! Creating → Scheduled → RequestReady → Ready ⇄ Reserved → Allocated → Shutdown
//!                                         ↑                    │
//!                                         └── RequestReady ←───┘  (reuse after a session)
//! any live state → Unhealthy → Shutdown;  Creating/Scheduled → Error → Shutdown
//! ```
//!
//! The operator and the SDK endpoint both ask [`GameServerState::can_become`] before they write
//! a state, so no writer can move a server backwards (an Unhealthy server never becomes Ready
//! again; a Shutdown one never comes back).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize, JsonSchema,
)]
pub enum GameServerState {
    /// The GameServer exists; its pod is being created.
    #[default]
    Creating,
    /// The pod is bound to a node.
    Scheduled,
    /// The game server called SDK `Ready`; the operator is confirming its address.
    RequestReady,
    /// Ready to be allocated.
    Ready,
    /// Held back from allocation for a while (SDK `Reserve`), e.g. while a session is set up.
    Reserved,
    /// Handed to a matchmaker: players are or will be on it. Never removed by scale-down.
    Allocated,
    /// Stopped answering health checks, or its pod failed; the fleet replaces it.
    Unhealthy,
    /// Its pod could not be created or started.
    Error,
    /// Being deleted.
    Shutdown,
}

impl GameServerState {
    pub const ALL: [GameServerState; 9] = [
        GameServerState::Creating,
        GameServerState::Scheduled,
        GameServerState::RequestReady,
        GameServerState::Ready,
        GameServerState::Reserved,
        GameServerState::Allocated,
        GameServerState::Unhealthy,
        GameServerState::Error,
        GameServerState::Shutdown,
    ];

    /// Whether a server in this state may move to `next`.
    pub fn can_become(self, next: GameServerState) -> bool {
        use GameServerState::*;
        if self == next {
            return true;
        }
        match (self, next) {
            (Shutdown, _) => false,
            (_, Shutdown) => true,
            (Unhealthy | Error, _) => false,
            (_, Unhealthy) => true,
            (Creating, Scheduled | Error) => true,
            (Scheduled, RequestReady | Error) => true,
            // A server may call Ready before the operator has seen its pod scheduled.
            (Creating, RequestReady) => true,
            (RequestReady, Ready) => true,
            (Ready, Reserved | Allocated) => true,
            (Reserved, Ready | Allocated) => true,
            // Reuse: after a session the server calls Ready again.
            (Allocated, RequestReady) => true,
            _ => false,
        }
    }

    /// Not yet ready to serve: the first servers a scale-down removes.
    pub fn is_starting(self) -> bool {
        matches!(
            self,
            GameServerState::Creating | GameServerState::Scheduled | GameServerState::RequestReady
        )
    }

    /// Allocated or reserved servers hold (or are about to hold) players: scale-down and
    /// rolling updates leave them alone.
    pub fn is_protected(self) -> bool {
        matches!(self, GameServerState::Allocated | GameServerState::Reserved)
    }

    /// Broken for good: the fleet deletes and replaces it.
    pub fn is_failed(self) -> bool {
        matches!(self, GameServerState::Unhealthy | GameServerState::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GameServerState::Creating => "Creating",
            GameServerState::Scheduled => "Scheduled",
            GameServerState::RequestReady => "RequestReady",
            GameServerState::Ready => "Ready",
            GameServerState::Reserved => "Reserved",
            GameServerState::Allocated => "Allocated",
            GameServerState::Unhealthy => "Unhealthy",
            GameServerState::Error => "Error",
            GameServerState::Shutdown => "Shutdown",
        }
    }
}

impl fmt::Display for GameServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::GameServerState::{self, *};

    #[test]
    fn the_happy_path_is_allowed_step_by_step() {
        let path = [
            Creating,
            Scheduled,
            RequestReady,
            Ready,
            Reserved,
            Allocated,
            Shutdown,
        ];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn an_allocated_server_can_be_reused_through_request_ready() {
        assert!(Allocated.can_become(RequestReady));
        assert!(
            !Allocated.can_become(Ready),
            "the operator confirms readiness first"
        );
    }

    #[test]
    fn failed_and_shut_down_servers_never_come_back() {
        for next in GameServerState::ALL {
            assert_eq!(Shutdown.can_become(next), next == Shutdown, "Shutdown -> {next}");
            for failed in [Unhealthy, Error] {
                let allowed = next == failed || next == Shutdown;
                assert_eq!(failed.can_become(next), allowed, "{failed} -> {next}");
            }
        }
    }

    #[test]
    fn states_never_skip_readiness_backwards() {
        assert!(!Ready.can_become(Creating));
        assert!(!Ready.can_become(Scheduled));
        assert!(
            !Scheduled.can_become(Ready),
            "Ready needs the server's own SDK call"
        );
        assert!(!Creating.can_become(Allocated));
    }

    #[test]
    fn every_live_state_can_turn_unhealthy_or_shut_down() {
        for state in GameServerState::ALL {
            assert!(state.can_become(Shutdown), "{state} -> Shutdown");
            if state != Shutdown && state != Error {
                assert!(state.can_become(Unhealthy), "{state} -> Unhealthy");
            }
        }
    }

    #[test]
    fn scale_down_classes_are_disjoint() {
        for state in GameServerState::ALL {
            let classes = [state.is_starting(), state.is_protected(), state.is_failed()];
            assert!(classes.iter().filter(|c| **c).count() <= 1, "{state}");
        }
    }
}
