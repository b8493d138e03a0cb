//! Load-test players against one game server.
//!
//! Tokens come from a file (one per line, e.g. from allocation answers) or are minted here
//! with the allocation signing key, for load tests against a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use flotilla_api::connection_token::{ConnectionClaims, TokenSigner};
use flotilla_gameserver::bots::{self, BotConfig};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-bots",
    about = "QUIC load-test players for a Flotilla game server"
)]
struct Args {
    /// The server's QUIC address.
    #[arg(long, required_unless_present = "write_key")]
    addr: Option<SocketAddr>,
    /// The server certificate's SHA-256 (annotation sdk.flotilla.dev/quic-cert-sha256).
    #[arg(long, required_unless_present = "write_key")]
    fingerprint: Option<String>,
    /// Connection tokens, one per line; one bot per token.
    #[arg(long, conflicts_with = "signing_key")]
    tokens_file: Option<PathBuf>,
    /// Mint tokens with this Ed25519 PKCS#8 key instead (DER file).
    #[arg(long, requires_all = ["server", "session"])]
    signing_key: Option<PathBuf>,
    #[arg(long)]
    server: Option<String>,
    #[arg(long)]
    session: Option<String>,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Bots to run when minting tokens.
    #[arg(long, default_value_t = 10)]
    players: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    #[arg(long, default_value_t = 30)]
    input_rate: u32,
    #[arg(long, default_value_t = 64)]
    bots_per_endpoint: usize,
    /// Write a new signing key (PKCS#8 DER) to this file, print its public key, and exit.
    #[arg(long, exclusive = true)]
    write_key: Option<PathBuf>,
}

fn write_key(path: &std::path::Path) -> Result<String, String> {
    let der = TokenSigner::generate_pkcs8().map_err(|e| e.to_string())?;
    std::fs::write(path, &der).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(TokenSigner::from_pkcs8(&der)
        .map_err(|e| e.to_string())?
        .public_key())
}

fn tokens(args: &Args) -> Result<Vec<String>, String> {
    if let Some(path) = &args.tokens_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        return Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect());
    }
    let Some(key) = &args.signing_key else {
        return Err("give --tokens-file or --signing-key".into());
    };
    let der = std::fs::read(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let signer = TokenSigner::from_pkcs8(&der).map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    (0..args.players)
        .map(|i| {
            signer
                .sign(ConnectionClaims {
                    namespace: args.namespace.clone(),
                    server: args.server.clone().unwrap_or_default(),
                    session: args.session.clone().unwrap_or_default(),
                    player: format!("bot-{i}"),
                    issued_at: now,
                    expires_at: now + args.seconds + 600,
                    id: String::new(),
                })
                .map_err(|e| e.to_string())
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    if let Some(path) = &args.write_key {
        return match write_key(path) {
            Ok(public) => {
                println!("{public}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("flotilla-bots: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let tokens = match tokens(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("flotilla-bots: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Some(addr), Some(fingerprint)) = (args.addr, args.fingerprint.clone()) else {
        eprintln!("flotilla-bots: --addr and --fingerprint are required");
        return ExitCode::FAILURE;
    };
    let config = BotConfig {
        addr,
        fingerprint,
        tokens,
        duration: Duration::from_secs(args.seconds),
        input_rate_hz: args.input_rate,
        bots_per_endpoint: args.bots_per_endpoint,
    };
    match bots::run(config).await {
        Ok(report) => {
            println!("{}", report.summary());
            for reason in report.refused.iter().take(5) {
                println!("refused: {reason}");
            }
            if report.joined == 0 || report.inconsistent() > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("flotilla-bots: {e}");
            ExitCode::FAILURE
        }
    }
}
