//! Command-line arguments, each with an environment-variable fallback.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-operator",
    version,
    about = "Runs fleets of game servers on Kubernetes"
)]
pub struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "FLOTILLA_WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Where the SDK endpoint listens.
    #[arg(long, env = "FLOTILLA_SDK_ADDR", default_value = "0.0.0.0:9358")]
    pub sdk_addr: SocketAddr,

    /// The SDK endpoint's URL as game-server pods reach it (the operator's Service).
    #[arg(
        long,
        env = "FLOTILLA_SDK_URL",
        default_value = "http://flotilla-operator.flotilla-system.svc:9358"
    )]
    pub sdk_url: String,
}
