//! Pod volumes as host directories, and container mounts as bind mounts.
//!
//! Each volume becomes `<pod dir>/volumes/<name>`; ConfigMap, Secret, downward-API and projected
//! volumes are written there as files, replaced atomically when refreshed (a projected
//! service-account token is renewed before it expires, as the kubelet does). A container sees
//! its `volumeMounts` through bind mounts in a mount namespace of its own, which is what lets a
//! pod read its token at `/var/run/secrets/kubernetes.io/serviceaccount` while another pod reads
//! a different token at the same path.

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{
        Container, DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccount, ServiceAccountTokenProjection,
    },
};
use kube::{Api, Client, api::PostParams};

use crate::{
    env::{PodAddresses, PodRefs, field_value},
    error::{Error, Result},
};

/// A bind mount from a host path into a container's view of the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The pod's volumes on disk.
#[derive(Debug, Default)]
pub struct Volumes {
    dirs: BTreeMap<String, PathBuf>,
    /// When the shortest-lived projected token should be renewed (80 % of its lifetime).
    pub refresh_after: Option<Duration>,
}

/// The file of one projected or configMap/secret volume: a relative path, its bytes, its mode.
struct VolumeFile {
    path: String,
    bytes: Vec<u8>,
    mode: u32,
}

impl Volumes {
    /// Writes every volume of `pod` under `pod_dir/volumes`. Called again to refresh tokens.
    pub async fn materialize(
        client: &Client,
        pod: &Pod,
        refs: &PodRefs,
        addresses: PodAddresses,
        pod_dir: &Path,
    ) -> Result<Self> {
        let mut volumes = Volumes::default();
        let spec = pod.spec.as_ref();
        for volume in spec.and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
            let dir = pod_dir.join("volumes").join(&volume.name);
            let files = if let Some(host) = &volume.host_path {
                volumes
                    .dirs
                    .insert(volume.name.clone(), PathBuf::from(&host.path));
                continue;
            } else if volume.empty_dir.is_some() {
                create_dir(&dir)?;
                volumes.dirs.insert(volume.name.clone(), dir);
                continue;
            } else if let Some(cm) = &volume.config_map {
                let mode = cm.default_mode.map_or(0o644, |m| m as u32);
                config_map_files(refs, &cm.name, cm.items.as_deref(), cm.optional, mode)?
            } else if let Some(secret) = &volume.secret {
                let name = secret.secret_name.as_deref().unwrap_or_default();
                let mode = secret.default_mode.map_or(0o644, |m| m as u32);
                secret_files(refs, name, secret.items.as_deref(), secret.optional, mode)?
            } else if let Some(downward) = &volume.downward_api {
                downward_files(pod, downward.items.as_deref(), addresses, 0o644)?
            } else if let Some(projected) = &volume.projected {
                let mode = projected.default_mode.map_or(0o644, |m| m as u32);
                let mut files = Vec::new();
                for source in projected.sources.iter().flatten() {
                    if let Some(token) = &source.service_account_token {
                        let (bytes, lifetime) = request_token(client, pod, token).await?;
                        volumes.refresh_after = Some(match volumes.refresh_after {
                            Some(current) => current.min(lifetime.mul_f32(0.8)),
                            None => lifetime.mul_f32(0.8),
                        });
                        files.push(VolumeFile {
                            path: token.path.clone(),
                            bytes,
                            mode: 0o600,
                        });
                    }
                    if let Some(cm) = &source.config_map {
                        files.extend(config_map_files(
                            refs,
                            &cm.name,
                            cm.items.as_deref(),
                            cm.optional,
                            mode,
                        )?);
                    }
                    if let Some(secret) = &source.secret {
                        let items = secret.items.as_deref();
                        files.extend(secret_files(refs, &secret.name, items, secret.optional, mode)?);
                    }
                    if let Some(downward) = &source.downward_api {
                        files.extend(downward_files(pod, downward.items.as_deref(), addresses, mode)?);
                    }
                }
                files
            } else {
                return Err(Error::ContainerConfig(format!(
                    "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes are supported by the pod runner",
                    volume.name
                )));
            };
            create_dir(&dir)?;
            for file in files {
                write_atomically(&dir, &file)?;
            }
            volumes.dirs.insert(volume.name.clone(), dir);
        }
        Ok(volumes)
    }

    /// The bind mounts for `container`'s `volumeMounts`. Mount targets are created on the host
    /// (directories are not namespaced), so the container's mount namespace can bind over them.
    pub fn mounts_for(&self, container: &Container) -> Result<Vec<BindMount>> {
        let mut mounts = Vec::new();
        for mount in container.volume_mounts.iter().flatten() {
            let dir = self.dirs.get(&mount.name).ok_or_else(|| {
                Error::ContainerConfig(format!("volumeMount {:?} names no volume of the pod", mount.name))
            })?;
            let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let sub = relative(sub)?;
                    dir.join(sub)
                }
                None => dir.clone(),
            };
            let target = PathBuf::from(&mount.mount_path);
            if !target.is_absolute() {
                return Err(Error::ContainerConfig(format!(
                    "mountPath {:?} is not absolute",
                    mount.mount_path
                )));
            }
            if source.is_dir() || !source.exists() {
                create_dir(&source)?;
                create_dir(&target)?;
            } else if !target.exists() {
                if let Some(parent) = target.parent() {
                    create_dir(parent)?;
                }
                std::fs::write(&target, b"").map_err(|e| Error::io(&target, e))?;
            }
            mounts.push(BindMount {
                source,
                target,
                read_only: mount.read_only == Some(true),
            });
        }
        Ok(mounts)
    }
}

/// Asks the API for a token of the pod's service account, bound to the pod (so it dies with
/// it). The Node authorizer allows this only for pods bound to this runner's node.
async fn request_token(
    client: &Client,
    pod: &Pod,
    projection: &ServiceAccountTokenProjection,
) -> Result<(Vec<u8>, Duration)> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .unwrap_or("default");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: projection.audience.clone().map(|a| vec![a]),
            expiration_seconds: Some(projection.expiration_seconds.unwrap_or(3600)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let issued = api
        .create_token_request(account, &PostParams::default(), &request)
        .await?;
    let no_token = || {
        Error::ContainerConfig(format!(
            "token request for service account {account:?} returned no token"
        ))
    };
    let status = issued.status.ok_or_else(no_token)?;
    let token = status.token.ok_or_else(no_token)?;
    let lifetime = status
        .expiration_timestamp
        .and_then(|t| t.0.duration_since(jiff::Timestamp::now()).try_into().ok())
        .unwrap_or(Duration::from_secs(60));
    Ok((token.into_bytes(), lifetime))
}

fn config_map_files(
    refs: &PodRefs,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<Vec<VolumeFile>> {
    match refs.config_maps.get(name) {
        Some(found) => {
            let data = found
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()));
            Ok(key_files(data, items, mode))
        }
        None if optional == Some(true) => Ok(Vec::new()),
        None => Err(Error::ContainerConfig(format!("configmap {name:?} not found"))),
    }
}

fn secret_files(
    refs: &PodRefs,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: u32,
) -> Result<Vec<VolumeFile>> {
    match refs.secrets.get(name) {
        Some(found) => {
            let data = found.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone()));
            Ok(key_files(data, items, mode))
        }
        None if optional == Some(true) => Ok(Vec::new()),
        None => Err(Error::ContainerConfig(format!("secret {name:?} not found"))),
    }
}

/// ConfigMap or Secret keys as files: all keys, or only `items` under their given paths.
fn key_files(
    data: impl Iterator<Item = (String, Vec<u8>)>,
    items: Option<&[KeyToPath]>,
    mode: u32,
) -> Vec<VolumeFile> {
    let data: BTreeMap<String, Vec<u8>> = data.collect();
    match items {
        None => data
            .into_iter()
            .map(|(path, bytes)| VolumeFile { path, bytes, mode })
            .collect(),
        Some(items) => items
            .iter()
            .filter_map(|item| {
                Some(VolumeFile {
                    path: item.path.clone(),
                    bytes: data.get(&item.key)?.clone(),
                    mode: item.mode.map_or(mode, |m| m as u32),
                })
            })
            .collect(),
    }
}

fn downward_files(
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    addresses: PodAddresses,
    mode: u32,
) -> Result<Vec<VolumeFile>> {
    let mut files = Vec::new();
    for item in items.into_iter().flatten() {
        let Some(field) = &item.field_ref else {
            return Err(Error::ContainerConfig(format!(
                "downwardAPI item {:?}: only fieldRef is supported by the pod runner",
                item.path
            )));
        };
        files.push(VolumeFile {
            path: item.path.clone(),
            bytes: field_value(pod, field, addresses)?.into_bytes(),
            mode: item.mode.map_or(mode, |m| m as u32),
        });
    }
    Ok(files)
}

/// Refuses paths that would escape the volume directory.
fn relative(path: &str) -> Result<&Path> {
    let p = Path::new(path);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Error::ContainerConfig(format!(
            "path {path:?} must be relative and must not contain '..'"
        )));
    }
    Ok(p)
}

/// Writes via a temporary file and a rename, so a reader never sees half a token.
fn write_atomically(dir: &Path, file: &VolumeFile) -> Result<()> {
    let target = dir.join(relative(&file.path)?);
    if let Some(parent) = target.parent() {
        create_dir(parent)?;
    }
    let tmp = target.with_extension("flotilla-tmp");
    std::fs::write(&tmp, &file.bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(file.mode))
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_paths_cannot_escape_the_volume() {
        assert!(relative("token").is_ok());
        assert!(relative("a/b").is_ok());
        assert!(relative("../etc/passwd").is_err());
        assert!(relative("/etc/passwd").is_err());
    }

    #[test]
    fn items_select_and_rename_keys() {
        let data = [("a".to_owned(), b"1".to_vec()), ("b".to_owned(), b"2".to_vec())];
        let items = [KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o600),
        }];
        let files = key_files(data.clone().into_iter(), Some(&items), 0o644);
        assert_eq!(files.len(), 1);
        assert_eq!(
            (files[0].path.as_str(), files[0].bytes.as_slice(), files[0].mode),
            ("dir/b.txt", &b"2"[..], 0o600)
        );
        assert_eq!(key_files(data.into_iter(), None, 0o644).len(), 2);
    }
}
