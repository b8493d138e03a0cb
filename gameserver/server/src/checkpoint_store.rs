//! Match checkpoints in Redis, so a replacement server can continue a match whose server died.
//!
//! One key per session, `flotilla:checkpoint:<namespace>:<session>`, overwritten every few
//! seconds with a TTL: a match that nobody continues cleans up after itself. Writes are plain
//! `SET`s of the whole checkpoint, idempotent, so a retried write can never corrupt one.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::Result;

/// How long a checkpoint outlives its last write.
const TTL: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct CheckpointStore {
    redis: ConnectionManager,
    namespace: String,
}

impl CheckpointStore {
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let redis = ConnectionManager::new(client).await?;
        Ok(Self {
            redis,
            namespace: namespace.to_owned(),
        })
    }

    fn key(&self, session: &str) -> String {
        format!("flotilla:checkpoint:{}:{session}", self.namespace)
    }

    pub async fn save(&self, session: &str, checkpoint: &[u8]) -> Result<()> {
        let mut redis = self.redis.clone();
        let () = redis.set_ex(self.key(session), checkpoint, TTL.as_secs()).await?;
        Ok(())
    }

    pub async fn load(&self, session: &str) -> Result<Option<Vec<u8>>> {
        let mut redis = self.redis.clone();
        Ok(redis.get(self.key(session)).await?)
    }

    /// The match is over: nothing to continue.
    pub async fn delete(&self, session: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        let _: i64 = redis.del(self.key(session)).await?;
        Ok(())
    }
}
