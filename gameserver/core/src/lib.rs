//! Sans-IO core of the Flotilla game server.
