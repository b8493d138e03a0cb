//! Labels and annotations Flotilla puts on the objects it manages.

/// On a GameServer and its pod: the fleet it belongs to.
pub const FLEET: &str = "flotilla.dev/fleet";
/// On a pod: the GameServer it runs.
pub const GAME_SERVER: &str = "flotilla.dev/gameserver";
/// On a GameServer: the hash of the fleet template it was made from, so a rolling update can
/// tell old servers from new ones.
pub const TEMPLATE_HASH: &str = "flotilla.dev/template-hash";
