//! What every reconcile shares.

use kube::Client;

pub struct Context {
    pub client: Client,
    /// The SDK endpoint's URL as game servers reach it, put into their environment.
    pub sdk_url: String,
}
