//! The game server on Flotilla: it reports itself Ready through the SDK, heartbeats, learns of
//! its allocation by watching its own GameServer, reports players and results, checkpoints the
//! match, and after the match either returns to Ready or shuts down.

use std::collections::HashSet;
use std::time::Duration;

use flotilla_api::GameServerState;
use flotilla_game::GameEvent;
use flotilla_sdk::Sdk;
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::checkpoint_store::CheckpointStore;
use crate::metrics::Metrics;
use crate::results_report::ResultsReporter;
use crate::server::{GameHandle, RunningServer};
use crate::{Error, Result};

/// The annotation (under `sdk.flotilla.dev/`) that carries the certificate fingerprint players
/// pin; the allocation answer passes it on.
pub const FINGERPRINT_ANNOTATION: &str = "quic-cert-sha256";
/// The annotation naming the session the game is running, set once the match is set up
/// (fresh or restored): from then on players can join.
pub const SESSION_ANNOTATION: &str = "match-session";
/// The annotation with the last match's results, as JSON.
pub const RESULTS_ANNOTATION: &str = "match-results";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AfterMatch {
    /// Back to Ready: the same process hosts the next session.
    Ready,
    /// Shut down: the fleet replaces the server with a fresh one.
    Shutdown,
}

pub struct Platform {
    pub sdk: Sdk,
    pub store: Option<CheckpointStore>,
    pub after_match: AfterMatch,
    pub heartbeat: Duration,
    pub checkpoint_every: Duration,
    pub max_players: u32,
    pub metrics: Metrics,
    /// Where match results go besides the GameServer's annotation: the player service.
    pub results: Option<ResultsReporter>,
}

impl Platform {
    /// Runs until the server shuts down (after a match, with [`AfterMatch::Shutdown`]) or
    /// `stop` fires.
    pub async fn run(
        self,
        mut server: RunningServer,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        let handle = server.handle.clone();
        retry("announce certificate", || {
            self.sdk
                .set_annotation(FINGERPRINT_ANNOTATION, &server.fingerprint)
        })
        .await?;
        retry("set player capacity", || {
            self.sdk.set_player_capacity(self.max_players)
        })
        .await?;
        let _heartbeats = self.sdk.spawn_health(self.heartbeat);
        retry("ready", || self.sdk.ready()).await?;
        info!(addr = %server.addr, "ready for allocation");

        let (sessions_tx, mut sessions) = mpsc::unbounded_channel();
        let watcher = tokio::spawn(watch_allocations(self.sdk.clone(), sessions_tx));
        let mut checkpoints = tokio::time::interval(self.checkpoint_every);
        let mut finished: HashSet<String> = HashSet::new();
        let result = loop {
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                Some(session) = sessions.recv() => {
                    if !finished.contains(&session) {
                        self.start_session(&handle, &session).await?;
                    }
                }
                Some(event) = server.events.recv() => {
                    if let Some(done) = self.on_event(&handle, event).await? {
                        finished.insert(done);
                        if self.after_match == AfterMatch::Shutdown {
                            break Ok(());
                        }
                    }
                }
                _ = checkpoints.tick() => self.save_checkpoint(&handle).await,
            }
        };
        watcher.abort();
        server.close();
        result
    }

    /// Allocated for `session`: continue it from a checkpoint if one exists (this server
    /// replaces one that died), otherwise start fresh.
    async fn start_session(&self, handle: &GameHandle, session: &str) -> Result<()> {
        let status = handle.status().await?;
        if status.session.is_some() {
            return Ok(());
        }
        let checkpoint = match &self.store {
            Some(store) => store.load(session).await.unwrap_or_else(|e| {
                warn!(session, error = %e, "could not read checkpoint; starting fresh");
                None
            }),
            None => None,
        };
        match checkpoint {
            Some(checkpoint) => match handle.restore(checkpoint).await {
                Ok(()) => info!(session, "match restored from checkpoint"),
                Err(e) => {
                    warn!(session, error = %e, "checkpoint unusable; starting fresh");
                    handle.allocate(session).await?;
                }
            },
            None => {
                info!(session, "allocated; waiting for players");
                handle.allocate(session).await?;
            }
        }
        if let Err(e) = self.sdk.set_annotation(SESSION_ANNOTATION, session).await {
            warn!(session, error = %e, "could not report the session");
        }
        Ok(())
    }

    /// Reports an event to the platform; returns the session when its match ended.
    async fn on_event(&self, handle: &GameHandle, event: GameEvent) -> Result<Option<String>> {
        match event {
            GameEvent::PlayerConnected { player } => {
                let sdk = self.sdk.clone();
                tokio::spawn(async move {
                    if let Err(e) = sdk.player_connect(&player).await {
                        warn!(error = %e, "could not report a player connection");
                    }
                });
            }
            GameEvent::PlayerDisconnected { player } => {
                let sdk = self.sdk.clone();
                tokio::spawn(async move {
                    if let Err(e) = sdk.player_disconnect(&player).await {
                        warn!(error = %e, "could not report a player disconnection");
                    }
                });
            }
            GameEvent::MatchStarted { .. } => {}
            GameEvent::MatchEnded { session, results } => {
                let json: Vec<_> = results
                    .iter()
                    .map(|r| serde_json::json!({"player": r.player, "score": r.score}))
                    .collect();
                let json = serde_json::Value::Array(json).to_string();
                if let Err(e) = self.sdk.set_annotation(RESULTS_ANNOTATION, &json).await {
                    warn!(%session, error = %e, "could not report match results");
                }
                if let Some(reporter) = self.results.clone() {
                    // In the background: the server's return to Ready must not wait on another service.
                    let (session, results) = (session.clone(), results.clone());
                    tokio::spawn(async move { reporter.report(&session, &results).await });
                }
                if let Some(store) = &self.store
                    && let Err(e) = store.delete(&session).await
                {
                    warn!(%session, error = %e, "could not delete the checkpoint");
                }
                match self.after_match {
                    AfterMatch::Ready => {
                        handle.reset().await?;
                        retry("ready", || self.sdk.ready()).await?;
                        info!(%session, "match over; ready for the next allocation");
                    }
                    AfterMatch::Shutdown => {
                        retry("shutdown", || self.sdk.shutdown()).await?;
                        info!(%session, "match over; shutting down");
                    }
                }
                return Ok(Some(session));
            }
        }
        Ok(None)
    }

    async fn save_checkpoint(&self, handle: &GameHandle) {
        let Some(store) = &self.store else { return };
        let Ok(Some((session, checkpoint))) = handle.checkpoint().await else {
            return;
        };
        match store.save(&session, &checkpoint).await {
            Ok(()) => self.metrics.checkpoint("saved"),
            Err(e) => {
                self.metrics.checkpoint("failed");
                warn!(%session, error = %e, "checkpoint failed");
            }
        }
    }
}

/// Sends the session id of every allocation seen on the server's own GameServer.
async fn watch_allocations(sdk: Sdk, sessions: mpsc::UnboundedSender<String>) {
    loop {
        match sdk.watch().await {
            Ok(mut watch) => {
                while let Some(item) = watch.next().await {
                    let Ok(server) = item else { break };
                    let Some(status) = server.status else { continue };
                    if status.state != GameServerState::Allocated {
                        continue;
                    }
                    // Without a session id the allocation id names the session.
                    if let Some(allocation) = status.allocation {
                        let session = allocation.session_id.unwrap_or(allocation.id);
                        if sessions.send(session).is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e) => warn!(error = %e, "watching own GameServer failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Retries a platform call until it succeeds, for a while: at start-up the operator may not
/// be reachable yet.
async fn retry<T, F, Fut>(what: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, flotilla_sdk::Error>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match call().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt >= 20 => return Err(Error::Sdk(e)),
            Err(e) => {
                warn!(what, attempt, error = %e, "platform call failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
        }
    }
    Err(Error::Stopped)
}
