//! What every reconcile shares.

use kube::Client;

pub struct Context {
    pub client: Client,
}
