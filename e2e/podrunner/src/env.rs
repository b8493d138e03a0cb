//! A container's environment, resolved the way the kubelet does it: service variables first,
//! then `envFrom` sources in order, then `env` entries, each of which may refer to variables
//! defined before it with `$(NAME)`. ConfigMaps and Secrets are fetched by the caller
//! beforehand ([`PodRefs`]), so everything here is pure and tested without a cluster.

use std::{collections::BTreeMap, net::Ipv4Addr};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, ObjectFieldSelector, Pod, Secret};

use crate::error::{Error, Result};

/// The ConfigMaps and Secrets a pod refers to, by name, as fetched from the API.
#[derive(Debug, Default)]
pub struct PodRefs {
    pub config_maps: BTreeMap<String, ConfigMap>,
    pub secrets: BTreeMap<String, Secret>,
}

impl PodRefs {
    pub fn config_map_value(&self, name: &str, key: &str) -> Option<String> {
        self.config_maps.get(name)?.data.as_ref()?.get(key).cloned()
    }

    pub fn secret_value(&self, name: &str, key: &str) -> Option<String> {
        let bytes = self.secrets.get(name)?.data.as_ref()?.get(key)?;
        Some(String::from_utf8_lossy(&bytes.0).into_owned())
    }
}

/// What the runner knows about a pod beyond its spec.
#[derive(Debug, Clone, Copy)]
pub struct PodAddresses {
    pub pod_ip: Ipv4Addr,
    pub host_ip: Ipv4Addr,
}

/// Resolves `container`'s environment. `base` holds the variables every container gets
/// (`KUBERNETES_SERVICE_HOST` and friends); `env` and `envFrom` override them.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    addresses: PodAddresses,
    refs: &PodRefs,
    base: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    let mut vars: Vec<(String, String)> = base.to_vec();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let entries: Vec<(String, String)> = if let Some(cm) = &source.config_map_ref {
            match refs.config_maps.get(&cm.name) {
                Some(found) => found.data.clone().unwrap_or_default().into_iter().collect(),
                None if cm.optional == Some(true) => Vec::new(),
                None => return Err(missing("configmap", &cm.name)),
            }
        } else if let Some(secret) = &source.secret_ref {
            match refs.secrets.get(&secret.name) {
                Some(found) => found
                    .data
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if secret.optional == Some(true) => Vec::new(),
                None => return Err(missing("secret", &secret.name)),
            }
        } else {
            Vec::new()
        };
        for (key, value) in entries {
            set(&mut vars, format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_value(pod, var, addresses, refs, &vars)? {
            set(&mut vars, var.name.clone(), value);
        }
    }
    Ok(vars)
}

/// One `env` entry's value; `None` for an optional reference that is absent.
fn env_value(
    pod: &Pod,
    var: &EnvVar,
    addresses: PodAddresses,
    refs: &PodRefs,
    defined: &[(String, String)],
) -> Result<Option<String>> {
    let Some(source) = &var.value_from else {
        let lookup = |name: &str| defined.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        return Ok(Some(expand(var.value.as_deref().unwrap_or(""), lookup)));
    };
    if let Some(field) = &source.field_ref {
        return field_value(pod, field, addresses).map(Some);
    }
    if let Some(key) = &source.config_map_key_ref {
        return match refs.config_map_value(&key.name, &key.key) {
            Some(value) => Ok(Some(value)),
            None if key.optional == Some(true) => Ok(None),
            None => Err(missing_key("configmap", &key.name, &key.key)),
        };
    }
    if let Some(key) = &source.secret_key_ref {
        return match refs.secret_value(&key.name, &key.key) {
            Some(value) => Ok(Some(value)),
            None if key.optional == Some(true) => Ok(None),
            None => Err(missing_key("secret", &key.name, &key.key)),
        };
    }
    Err(Error::ContainerConfig(format!(
        "env {}: only fieldRef, configMapKeyRef and secretKeyRef sources are supported by the pod runner",
        var.name
    )))
}

/// The downward API: the value of `fieldRef.fieldPath` for this pod.
pub fn field_value(pod: &Pod, field: &ObjectFieldSelector, addresses: PodAddresses) -> Result<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = field.field_path.as_str();
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" => Some(addresses.pod_ip.to_string()),
        "status.hostIP" | "status.hostIPs" => Some(addresses.host_ip.to_string()),
        _ => {
            if let Some(key) = map_key(path, "metadata.labels") {
                Some(
                    meta.labels
                        .as_ref()
                        .and_then(|l| l.get(key))
                        .cloned()
                        .unwrap_or_default(),
                )
            } else if let Some(key) = map_key(path, "metadata.annotations") {
                Some(
                    meta.annotations
                        .as_ref()
                        .and_then(|a| a.get(key))
                        .cloned()
                        .unwrap_or_default(),
                )
            } else {
                return Err(Error::ContainerConfig(format!("unsupported fieldRef {path:?}")));
            }
        }
    };
    Ok(value.unwrap_or_default())
}

/// `metadata.labels['app']` → `app`.
fn map_key<'a>(path: &'a str, map: &str) -> Option<&'a str> {
    path.strip_prefix(map)?.strip_prefix("['")?.strip_suffix("']")
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is substituted, an undefined reference
/// is left as written, and `$$` is an escaped `$`.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|s| s.split_once(')')) {
            match lookup(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(vars: &mut Vec<(String, String)>, name: String, value: String) {
    match vars.iter_mut().find(|(k, _)| *k == name) {
        Some(existing) => existing.1 = value,
        None => vars.push((name, value)),
    }
}

fn missing(kind: &str, name: &str) -> Error {
    Error::ContainerConfig(format!("{kind} {name:?} not found"))
}

fn missing_key(kind: &str, name: &str, key: &str) -> Error {
    Error::ContainerConfig(format!("couldn't find key {key} in {kind} {name:?}"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        ByteString,
        api::core::v1::{
            ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, PodSpec, SecretKeySelector,
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("games".into()),
                labels: Some([("app".to_owned(), "arena".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-0".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const ADDRESSES: PodAddresses = PodAddresses {
        pod_ip: Ipv4Addr::new(127, 5, 1, 2),
        host_ip: Ipv4Addr::new(127, 5, 1, 1),
    };

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn value(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    fn refs() -> PodRefs {
        let mut refs = PodRefs::default();
        refs.config_maps.insert(
            "settings".into(),
            ConfigMap {
                data: Some([("MODE".to_owned(), "arena".to_owned())].into()),
                ..Default::default()
            },
        );
        refs.secrets.insert(
            "creds".into(),
            Secret {
                data: Some([("token".to_owned(), ByteString(b"s3cret".to_vec()))].into()),
                ..Default::default()
            },
        );
        refs
    }

    #[test]
    fn downward_api_fields_come_from_the_pod_and_its_addresses() {
        let container = Container {
            env: Some(vec![
                field("POD_IP", "status.podIP"),
                field("NODE", "spec.nodeName"),
                field("NAME", "metadata.name"),
                field("APP", "metadata.labels['app']"),
                value("URL", "http://$(POD_IP):8080/$(MISSING)/$$(NAME)"),
            ]),
            ..Default::default()
        };
        let env = resolve(&pod(), &container, ADDRESSES, &PodRefs::default(), &[]).expect("resolves");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("POD_IP"), Some("127.5.1.2"));
        assert_eq!(get("NODE"), Some("node-0"));
        assert_eq!(get("NAME"), Some("web-1"));
        assert_eq!(get("APP"), Some("arena"));
        assert_eq!(get("URL"), Some("http://127.5.1.2:8080/$(MISSING)/$(NAME)"));
    }

    #[test]
    fn env_overrides_env_from_which_overrides_the_base() {
        let container = Container {
            env_from: Some(vec![EnvFromSource {
                prefix: Some("CFG_".into()),
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "settings".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            env: Some(vec![
                value("KUBERNETES_SERVICE_PORT", "1"),
                EnvVar {
                    name: "TOKEN".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "token".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let base = [("KUBERNETES_SERVICE_PORT".to_owned(), "6443".to_owned())];
        let env = resolve(&pod(), &container, ADDRESSES, &refs(), &base).expect("resolves");
        assert_eq!(
            env,
            vec![
                ("KUBERNETES_SERVICE_PORT".to_owned(), "1".to_owned()),
                ("CFG_MODE".to_owned(), "arena".to_owned()),
                ("TOKEN".to_owned(), "s3cret".to_owned()),
            ]
        );
    }

    #[test]
    fn missing_required_key_is_a_config_error_and_optional_is_skipped() {
        let key_ref = |optional| EnvVar {
            name: "X".into(),
            value_from: Some(EnvVarSource {
                config_map_key_ref: Some(ConfigMapKeySelector {
                    name: "settings".into(),
                    key: "absent".into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let required = Container {
            env: Some(vec![key_ref(None)]),
            ..Default::default()
        };
        let err = resolve(&pod(), &required, ADDRESSES, &refs(), &[]).expect_err("missing key");
        assert_eq!(err.waiting_reason(), "CreateContainerConfigError");
        assert_eq!(
            err.to_string(),
            r#"couldn't find key absent in configmap "settings""#
        );

        let optional = Container {
            env: Some(vec![key_ref(Some(true))]),
            ..Default::default()
        };
        assert!(
            resolve(&pod(), &optional, ADDRESSES, &refs(), &[])
                .expect("optional")
                .is_empty()
        );
    }

    #[test]
    fn expansion_leaves_unterminated_and_lone_dollars_alone() {
        let lookup = |n: &str| (n == "A").then_some("1");
        assert_eq!(expand("$(A)$(A", lookup), "1$(A");
        assert_eq!(expand("cost: 5$ $x", lookup), "cost: 5$ $x");
        assert_eq!(expand("$$$(A)", lookup), "$1");
    }
}
