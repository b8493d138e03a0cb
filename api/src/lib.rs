//! Flotilla's Kubernetes resources under `flotilla.dev/v1alpha1` and the types other crates
//! share with them. No I/O: the operator, the game server and the tests all build on these.
//!
//! - [`GameServerFleet`] (`gsf`): a scalable set of game servers from one template;
//! - [`GameServer`] (`gs`): one server, owned by its fleet, owning its pod;
//! - [`GameServerState`]: the lifecycle every server follows, and which changes are allowed;
//! - [`FleetAutoscaler`] (`fas`): scales a fleet by a buffer, webhook, schedule or chain policy;
//! - [`allocation`]: the allocation API's requests and answers;
//! - [`connection_token`]: the signed tokens that admit players to an allocated server.

pub mod allocation;
pub mod autoscaler;
pub mod connection_token;
mod error;
pub mod fleet;
pub mod game_server;
pub mod labels;
pub mod state;

pub use autoscaler::{FleetAutoscaler, FleetAutoscalerSpec, FleetAutoscalerStatus};
pub use error::{Error, Result};
pub use fleet::{
    FleetStrategy, GameServerFleet, GameServerFleetSpec, GameServerFleetStatus, GameServerTemplate,
    RollingUpdate, StrategyType,
};
pub use game_server::{
    Allocation, GameServer, GameServerPort, GameServerSpec, GameServerStatus, Health, PlayerStatus, Players,
    PortStatus, Protocol, Scheduling,
};
pub use state::GameServerState;

/// The API group of every Flotilla resource.
pub const GROUP: &str = "flotilla.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
