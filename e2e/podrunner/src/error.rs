//! The one error type of the pod runner.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    #[error("loading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        source: kube::config::KubeconfigError,
    },

    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("image map {path}: {message}")]
    ImageMap { path: PathBuf, message: String },

    /// The kubelet's `ErrImagePull`: here an image is a name in the image map, not a download.
    #[error("image {image:?} has no entry in the image map {map}")]
    ImageNotMapped { image: String, map: PathBuf },

    /// The kubelet's `CreateContainerConfigError`: a referenced ConfigMap, Secret or field is missing.
    #[error("{0}")]
    ContainerConfig(String),

    #[error("starting container {container}: {message}")]
    Start { container: String, message: String },

    #[error("pod network {network}: {message}")]
    PodNetwork { network: String, message: String },
}

impl Error {
    /// The waiting reason a kubelet would show for this failure in a container status.
    pub fn waiting_reason(&self) -> &'static str {
        match self {
            Error::ImageNotMapped { .. } | Error::ImageMap { .. } => "ErrImagePull",
            Error::ContainerConfig(_) => "CreateContainerConfigError",
            Error::Start { .. } | Error::Io { .. } => "CreateContainerError",
            Error::Kube(_) | Error::Kubeconfig { .. } | Error::PodNetwork { .. } => "ContainerCreating",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
