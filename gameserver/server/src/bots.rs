//! Load-test players: each bot joins with its token, steers at the client input rate, rebuilds
//! the world from snapshots and checks every delta applies, and measures input-to-snapshot
//! latency and snapshot loss.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flotilla_game::replication::{Inconsistency, Receiver};
use flotilla_game::wire::{InputDatagram, InputFrame, PlayerResult, ServerControl};

use crate::client::GameClient;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct BotConfig {
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub tokens: Vec<String>,
    /// Stop after this long even if the match goes on.
    pub duration: Duration,
    pub input_rate_hz: u32,
    /// Bots per client endpoint (UDP socket); many bots share one, like players behind a NAT.
    pub bots_per_endpoint: usize,
}

/// What one bot saw.
#[derive(Debug, Clone, Default)]
pub struct BotStats {
    pub entity: u16,
    pub resumed: bool,
    pub snapshots: u64,
    pub first_tick: u32,
    pub last_tick: u32,
    pub stale: u64,
    pub inconsistent: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latencies_us: Vec<u64>,
    pub score: u32,
    pub results: Option<Vec<PlayerResult>>,
    /// Why the connection ended, when the server ended it.
    pub closed: Option<String>,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct BotReport {
    pub joined: usize,
    pub refused: Vec<String>,
    pub bots: Vec<BotStats>,
}

impl BotReport {
    pub fn snapshots(&self) -> u64 {
        self.bots.iter().map(|b| b.snapshots).sum()
    }

    pub fn inconsistent(&self) -> u64 {
        self.bots.iter().map(|b| b.inconsistent).sum()
    }

    /// Share of snapshots that never arrived, from the tick range each bot saw.
    pub fn loss(&self) -> f64 {
        let expected: u64 = self
            .bots
            .iter()
            .filter(|b| b.snapshots > 0)
            .map(|b| u64::from(b.last_tick.saturating_sub(b.first_tick)) + 1)
            .sum();
        if expected == 0 {
            0.0
        } else {
            1.0 - self.snapshots() as f64 / expected as f64
        }
    }

    /// Input-to-snapshot latency percentile in milliseconds.
    pub fn latency_ms(&self, percentile: f64) -> f64 {
        let mut all: Vec<u64> = self
            .bots
            .iter()
            .flat_map(|b| b.latencies_us.iter().copied())
            .collect();
        if all.is_empty() {
            return 0.0;
        }
        all.sort_unstable();
        let index = ((all.len() - 1) as f64 * percentile).round() as usize;
        all[index.min(all.len() - 1)] as f64 / 1000.0
    }

    /// Mean bytes per second per bot, received and sent.
    pub fn bytes_per_player_second(&self) -> (f64, f64) {
        let secs: f64 = self.bots.iter().map(|b| b.elapsed.as_secs_f64()).sum();
        if secs == 0.0 {
            return (0.0, 0.0);
        }
        let bytes_in: u64 = self.bots.iter().map(|b| b.bytes_in).sum();
        let bytes_out: u64 = self.bots.iter().map(|b| b.bytes_out).sum();
        (bytes_in as f64 / secs, bytes_out as f64 / secs)
    }

    pub fn summary(&self) -> String {
        let (bin, bout) = self.bytes_per_player_second();
        format!(
            "bots joined={} refused={} snapshots={} loss={:.2}% inconsistent={} latency p50={:.1}ms p99={:.1}ms \
             bytes/player/s in={:.0} out={:.0}",
            self.joined,
            self.refused.len(),
            self.snapshots(),
            self.loss() * 100.0,
            self.inconsistent(),
            self.latency_ms(0.5),
            self.latency_ms(0.99),
            bin,
            bout
        )
    }
}

/// Runs one bot per token until the match ends, the server closes, or `duration` passes.
pub async fn run(config: BotConfig) -> Result<BotReport> {
    let mut endpoints = Vec::new();
    let bind: SocketAddr = if config.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| Error::Config("bind".into()))?;
    let mut tasks = Vec::new();
    for (i, token) in config.tokens.iter().enumerate() {
        if i % config.bots_per_endpoint.max(1) == 0 {
            endpoints.push(crate::client::endpoint(bind)?);
        }
        let endpoint = endpoints.last().cloned().ok_or(Error::Stopped)?;
        let (config, token) = (config.clone(), token.clone());
        tasks.push(tokio::spawn(
            async move { play(&endpoint, &config, &token, i).await },
        ));
    }
    let mut report = BotReport::default();
    for task in tasks {
        match task.await {
            Ok(Ok(stats)) => {
                report.joined += 1;
                report.bots.push(stats);
            }
            Ok(Err(e)) => report.refused.push(e.to_string()),
            Err(e) => report.refused.push(format!("bot task failed: {e}")),
        }
    }
    Ok(report)
}

async fn play(endpoint: &quinn::Endpoint, config: &BotConfig, token: &str, index: usize) -> Result<BotStats> {
    let mut client = join(endpoint, config, token).await?;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.duration;
    let mut stats = BotStats {
        entity: client.welcome.entity,
        resumed: client.welcome.resumed,
        ..BotStats::default()
    };
    stats.score = client.welcome.score;
    let mut receiver = Receiver::default();
    let mut control = client.take_control();
    let mut sent: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut recent: VecDeque<InputFrame> = VecDeque::new();
    let mut seq = 0u32;
    let mut direction = Steering::new(index as u64);
    let mut inputs = tokio::time::interval(Duration::from_secs(1) / config.input_rate_hz.max(1));
    loop {
        tokio::select! {
            _ = inputs.tick() => {
                seq += 1;
                let (dx, dy) = direction.next();
                if recent.len() == 3 {
                    recent.pop_front();
                }
                recent.push_back(InputFrame { seq, dx, dy });
                let input = InputDatagram { ack_tick: receiver.latest_tick(), inputs: recent.iter().copied().collect() };
                match client.send_input(input) {
                    Ok(n) => stats.bytes_out += n as u64,
                    Err(e) => {
                        stats.closed = Some(e.to_string());
                        break;
                    }
                }
                sent.push_back((seq, Instant::now()));
                if sent.len() > 256 {
                    sent.pop_front();
                }
            }
            snapshot = client.next_snapshot() => {
                let (snapshot, size) = match snapshot {
                    Ok(s) => s,
                    Err(e) => {
                        stats.closed = Some(e.to_string());
                        break;
                    }
                };
                stats.bytes_in += size as u64;
                while let Some(&(s, at)) = sent.front() {
                    if s > snapshot.input_seq {
                        break;
                    }
                    sent.pop_front();
                    if s == snapshot.input_seq {
                        stats.latencies_us.push(u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX));
                    }
                }
                match receiver.apply(&snapshot) {
                    Ok(view) => {
                        match view.get(&stats.entity) {
                            Some(me) => stats.score = me.score,
                            // A player always sees itself: anything else is a replication bug.
                            None => stats.inconsistent += 1,
                        }
                        if stats.snapshots == 0 {
                            stats.first_tick = snapshot.tick;
                        }
                        stats.snapshots += 1;
                        stats.last_tick = snapshot.tick;
                    }
                    Err(Inconsistency::Stale) => stats.stale += 1,
                    Err(_) => stats.inconsistent += 1,
                }
            }
            message = control.recv() => match message {
                Some(ServerControl::MatchEnded { results }) => {
                    stats.results = Some(results);
                    break;
                }
                Some(_) => {}
                None => {
                    stats.closed = Some(client.closed().await);
                    break;
                }
            },
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    stats.elapsed = started.elapsed();
    client.close();
    Ok(stats)
}

/// Joins, retrying for a few seconds while the server has not yet started the session it was
/// just allocated for: it learns of the allocation through its watch, a few milliseconds after
/// the matchmaker's answer, so a fast client can arrive first.
async fn join(endpoint: &quinn::Endpoint, config: &BotConfig, token: &str) -> Result<GameClient> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match GameClient::join(endpoint, config.addr, &config.fingerprint, token).await {
            Err(Error::Refused(reason))
                if reason.contains("not allocated") && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A wandering direction that changes every second or so, different per bot.
struct Steering {
    state: u64,
    current: (i8, i8),
    left: u32,
}

impl Steering {
    fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            current: (0, 0),
            left: 0,
        }
    }

    fn next(&mut self) -> (i8, i8) {
        if self.left == 0 {
            // xorshift64
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let [a, b, c, ..] = self.state.to_le_bytes();
            self.current = (a as i8, b as i8);
            self.left = 15 + u32::from(c % 30);
        }
        self.left -= 1;
        self.current
    }
}
