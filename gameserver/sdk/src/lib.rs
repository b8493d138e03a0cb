//! Client for the Flotilla game-server SDK endpoint.
