//! Command-line arguments, each with an environment-variable fallback.

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-podrunner",
    version,
    about = "Kubelet stand-in: runs pods bound to its nodes as local processes"
)]
pub struct Args {
    /// Names of the nodes to register; each needs `<dir>/<name>.kubeconfig` with its
    /// `system:node:<name>` credentials.
    #[arg(long = "node", env = "FLOTILLA_NODES", value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,

    /// Directory holding one kubeconfig per node.
    #[arg(long, env = "FLOTILLA_NODE_KUBECONFIG_DIR")]
    pub kubeconfig_dir: PathBuf,

    /// The cluster's pod network, `127.B`: node n gets `127.B.(n+1).0/24`.
    #[arg(long, env = "FLOTILLA_POD_NETWORK")]
    pub pod_network: String,

    /// TOML file mapping image names to local binaries.
    #[arg(long, env = "FLOTILLA_IMAGE_MAP")]
    pub image_map: PathBuf,

    /// Where pod directories (logs, volumes) and process-group records live.
    #[arg(long, env = "FLOTILLA_RUNNER_STATE_DIR")]
    pub state_dir: PathBuf,

    /// CPU capacity each node reports.
    #[arg(long, env = "FLOTILLA_NODE_CPU", default_value = "8")]
    pub cpu: String,

    /// Memory capacity each node reports.
    #[arg(long, env = "FLOTILLA_NODE_MEMORY", default_value = "16Gi")]
    pub memory: String,

    /// Pods each node accepts.
    #[arg(long, env = "FLOTILLA_NODE_MAX_PODS", default_value_t = 110)]
    pub max_pods: u32,

    /// First restart back-off of a crashed container, in milliseconds. The kubelet uses 10 s;
    /// tests want crash loops they can observe quickly.
    #[arg(long, env = "FLOTILLA_BACKOFF_INITIAL_MS", default_value_t = 1000)]
    pub backoff_initial_ms: u64,

    /// Longest restart back-off, in milliseconds (the kubelet's is 5 minutes).
    #[arg(long, env = "FLOTILLA_BACKOFF_MAX_MS", default_value_t = 30_000)]
    pub backoff_max_ms: u64,

    /// Version reported as `nodeInfo.kubeletVersion`: the Kubernetes version this runner
    /// stands in for, with a suffix that says it is not a kubelet.
    #[arg(
        long,
        env = "FLOTILLA_KUBELET_VERSION",
        default_value = "v1.36.3-flotilla.podrunner"
    )]
    pub kubelet_version: String,

    /// Kubeconfig of `system:kube-proxy`: when given, the runner also proxies Service
    /// ClusterIPs to their endpoints, as kube-proxy would (see `service_proxy`).
    #[arg(long, env = "FLOTILLA_PROXY_KUBECONFIG")]
    pub proxy_kubeconfig: Option<PathBuf>,
}
