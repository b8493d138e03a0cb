//! What every Flotilla HTTP service (player, economy, analytics) shares, so each writes it once:
//! - [`secret`]: service and admin keys compared in constant time;
//! - [`extract`]: request extractors that answer bad input with the services' JSON error shape
//!   instead of axum's plain text, and the bearer credential of a request;
//! - [`shutdown`]: the future that ends a server on SIGTERM or Ctrl-C;
//! - [`analytics`]: a service's own events (sign-ins, purchases) sent to the analytics service;
//! - [`page`]: a web page served with its scripts inlined and a policy that allows only them.
//!
//! Each service keeps its own error enum; what is here fails only with [`BadRequest`] (an answer)
//! or [`ConfigError`] (a start-up refusal).

pub mod analytics;
pub mod extract;
pub mod page;
pub mod secret;

pub use extract::BadRequest;
pub use secret::{ConfigError, SecretKey};

/// Resolves when the process is asked to stop (SIGTERM from Kubernetes, or Ctrl-C): servers pass it
/// to `with_graceful_shutdown` and finish the requests in flight.
pub async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
