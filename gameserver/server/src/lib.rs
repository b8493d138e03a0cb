//! The Flotilla reference QUIC game server.
