//! Counts the operator's Kubernetes API requests by verb and resource
//! (`flotilla_kube_api_requests_total`), so the cost of running fleets on the API server is
//! visible: a fleet that churns shows as creates and deletes, a hot SDK as status patches, and a
//! heartbeat never shows at all (it is kept in memory).
//!
//! A tower layer on the kube client sees every request; [`classify`] turns its method and path
//! into the verb and resource Kubernetes' own audit log would name.

use http::{Method, Request};
use prometheus_client::metrics::{counter::Counter, family::Family};

use crate::metrics::ApiRequestLabels;

/// A request's verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
/// `deletecollection`) and resource (`pods`, `gameservers/status`, …).
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    // /api/v1/[namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]] or /apis/GROUP/VERSION/…
    let mut parts = path
        .trim_matches('/')
        .split('/')
        .skip_while(|p| *p != "api" && *p != "apis");
    let skip = match parts.next() {
        Some("api") => 1,  // version
        Some("apis") => 2, // group, version
        _ => return (verb(method, false, query), "other".into()),
    };
    let mut rest: Vec<&str> = parts.skip(skip).collect();
    if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        rest.drain(..2);
    }
    let resource = match rest.as_slice() {
        [] => "other".to_owned(),
        [resource] | [resource, _] => (*resource).to_owned(),
        [resource, _, subresource, ..] => format!("{resource}/{subresource}"),
    };
    (verb(method, rest.len() >= 2, query), resource)
}

fn verb(method: &Method, named: bool, query: Option<&str>) -> &'static str {
    let watching = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// Counts one request; the layer's request hook.
pub fn count<B>(requests: &Family<ApiRequestLabels, Counter>, request: &Request<B>) {
    let (verb, resource) = classify(request.method(), request.uri().path(), request.uri().query());
    requests
        .get_or_create(&ApiRequestLabels {
            verb: verb.into(),
            resource,
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_verbs_and_resources() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods",
                Some("labelSelector=x&watch=true"),
                "watch",
                "pods",
            ),
            (Method::GET, "/api/v1/namespaces/games/pods", None, "list", "pods"),
            (
                Method::GET,
                "/api/v1/namespaces/games/pods/arena-1",
                None,
                "get",
                "pods",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/games/pods",
                None,
                "create",
                "pods",
            ),
            (
                Method::PATCH,
                "/apis/flotilla.dev/v1alpha1/namespaces/games/gameservers/arena-1/status",
                None,
                "patch",
                "gameservers/status",
            ),
            (
                Method::DELETE,
                "/apis/flotilla.dev/v1alpha1/namespaces/games/gameservers/arena-1",
                None,
                "delete",
                "gameservers",
            ),
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                None,
                "create",
                "tokenreviews",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/flotilla-system/leases/flotilla-operator",
                None,
                "update",
                "leases",
            ),
            (Method::GET, "/api/v1/namespaces", None, "list", "namespaces"),
            (Method::GET, "/api/v1/namespaces/games", None, "get", "namespaces"),
            (Method::GET, "/version", None, "list", "other"),
        ];
        for (method, path, query, verb, resource) in cases {
            assert_eq!(
                classify(&method, path, query),
                (verb, resource.to_owned()),
                "{method} {path}"
            );
        }
    }
}
