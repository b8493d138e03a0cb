//! Who may allocate. A matchmaker sends a Kubernetes service-account (or user) token with
//! audience [`AUDIENCE`] as a bearer token; a TokenReview says who it is and a
//! SubjectAccessReview whether RBAC lets them `create` `gameserverallocations.flotilla.dev` in
//! the namespace. So access is granted with an ordinary Role, and revoked by removing it.
//! Answers are cached for a short while, so allocations under load cost no extra API calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::error::{Error, Result};
use crate::sdk_auth::review_token;

pub const AUDIENCE: &str = "flotilla.dev/allocation";
/// The RBAC resource a matchmaker needs `create` on.
pub const RESOURCE: &str = "gameserverallocations";
/// How long an answer (yes or no) is reused. Short, so a removed RoleBinding bites soon.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// A decision for one (token, namespace): the user name, or why they may not allocate; and
/// when it was made. Shared by every request that needs it while it is being made, so a burst
/// of requests with one token costs one review, not one each.
type Decision = Arc<OnceCell<(Result<String, String>, Instant)>>;

pub struct AllocationAuth {
    client: Client,
    cache: Mutex<HashMap<(String, String), Decision>>,
}

impl AllocationAuth {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller's user name when they may allocate in `namespace`.
    pub async fn authorize(&self, token: &str, namespace: &str) -> Result<String> {
        let key = (token.to_owned(), namespace.to_owned());
        let decision = {
            let mut cache = self
                .cache
                .lock()
                .map_err(|_| Error::Forbidden("authorization cache poisoned".into()))?;
            if cache.len() > 10_000 {
                cache.retain(|_, d| d.get().is_none_or(|(_, at)| at.elapsed() < CACHE_FOR));
            }
            let decision = cache.entry(key.clone()).or_default();
            if decision.get().is_some_and(|(_, at)| at.elapsed() >= CACHE_FOR) {
                *decision = Decision::default();
            }
            decision.clone()
        };
        // Failures to decide (a bad token, an API error) are not cached: the next request asks again.
        let (answer, _) = decision
            .get_or_try_init(|| async {
                let user = review_token(&self.client, token, AUDIENCE).await?;
                let name = user.username.clone().unwrap_or_default();
                let allowed = self.access(&user, namespace).await?;
                let answer = if allowed {
                    Ok(name)
                } else {
                    Err(format!(
                        "{} may not create {RESOURCE}.flotilla.dev in namespace {namespace}",
                        name
                    ))
                };
                Ok::<_, Error>((answer, Instant::now()))
            })
            .await?;
        answer.clone().map_err(Error::Forbidden)
    }

    async fn access(&self, user: &UserInfo, namespace: &str) -> Result<bool> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(flotilla_api::GROUP.into()),
                    resource: Some(RESOURCE.into()),
                    verb: Some("create".into()),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let status = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?
            .status
            .unwrap_or_default();
        Ok(status.allowed)
    }
}
