//! Command-line arguments, each with an environment-variable fallback.

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
}
