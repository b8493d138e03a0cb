//! The Ed25519 key that signs players' connection tokens. It lives in a Secret in the
//! operator's namespace, created by whichever replica starts first; every replica signs with
//! it, and game-server pods get only its public key.

use flotilla_api::connection_token::TokenSigner;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::info;

use crate::error::{Error, Result};

const KEY: &str = "ed25519.pk8";

pub async fn load_or_create(client: Client, namespace: &str, name: &str) -> Result<TokenSigner> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    for _ in 0..3 {
        if let Some(secret) = secrets.get_opt(name).await? {
            let der = secret
                .data
                .as_ref()
                .and_then(|d| d.get(KEY))
                .ok_or_else(|| Error::Signing(format!("secret {namespace}/{name} has no {KEY}")))?;
            return TokenSigner::from_pkcs8(&der.0).map_err(|e| Error::Signing(e.to_string()));
        }
        let der = TokenSigner::generate_pkcs8().map_err(|e| Error::Signing(e.to_string()))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([(KEY.to_owned(), ByteString(der))].into()),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => info!(namespace, name, "created the connection-token signing key"),
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!(
        "could not read or create secret {namespace}/{name}"
    )))
}
