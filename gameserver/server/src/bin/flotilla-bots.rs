//! Load-test players against one game server.
//!
//! Three ways to get a server and tokens: ask the allocation API (`--allocation-url`, as a
//! matchmaker would: one session for all the bots), read tokens from a file (one per line),
//! or mint them with the signing key (`--signing-key`) for a standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use flotilla_allocation_client::{AllocationClient, AllocationRequest, ClientOptions};
use flotilla_api::connection_token::{ConnectionClaims, TokenSigner};
use flotilla_gameserver::bots::{self, BotConfig};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla-bots",
    about = "QUIC load-test players for a Flotilla game server"
)]
struct Args {
    /// The server's QUIC address.
    #[arg(long, required_unless_present_any = ["write_key", "allocation_url"])]
    addr: Option<SocketAddr>,
    /// The server certificate's SHA-256 (annotation sdk.flotilla.dev/quic-cert-sha256).
    #[arg(long, required_unless_present_any = ["write_key", "allocation_url"])]
    fingerprint: Option<String>,
    /// Allocate a server for the bots through this allocation API
    /// (`https://flotilla-allocator.flotilla-system.svc`).
    #[arg(long, requires = "fleet", conflicts_with_all = ["addr", "fingerprint", "tokens_file", "signing_key"])]
    allocation_url: Option<String>,
    /// The fleet to allocate from.
    #[arg(long)]
    fleet: Option<String>,
    /// A token for the allocation API (audience flotilla.dev/allocation).
    #[arg(long, requires = "allocation_url", conflicts_with = "client_cert")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) the allocation API's certificate must chain to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS with the allocation API, instead of a token.
    #[arg(long, requires_all = ["client_key", "allocation_url"])]
    client_cert: Option<PathBuf>,
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Connect to this address for the allocation URL's host (its certificate is still checked
    /// against the host name), e.g. the Service's ClusterIP where there is no cluster DNS.
    #[arg(long)]
    connect_to: Option<SocketAddr>,
    /// Connection tokens, one per line; one bot per token.
    #[arg(long, conflicts_with = "signing_key")]
    tokens_file: Option<PathBuf>,
    /// Mint tokens with this Ed25519 PKCS#8 key instead (DER file); needs --server and --session.
    #[arg(long, requires_all = ["server", "session"])]
    signing_key: Option<PathBuf>,
    #[arg(long)]
    server: Option<String>,
    #[arg(long)]
    session: Option<String>,
    #[arg(long, default_value = "default")]
    namespace: String,
    /// Bots to run (when minting tokens or allocating).
    #[arg(long, default_value_t = 10)]
    players: usize,
    /// The bots' player ids (comma-separated; e.g. accounts signed in to the player service),
    /// instead of `bot-0`, `bot-1`, …; as many bots as ids.
    #[arg(long, value_delimiter = ',')]
    player_ids: Vec<String>,
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
    player_ids(args)
        .into_iter()
        .map(|player| {
            signer
                .sign(ConnectionClaims {
                    namespace: args.namespace.clone(),
                    server: args.server.clone().unwrap_or_default(),
                    session: args.session.clone().unwrap_or_default(),
                    player,
                    issued_at: now,
                    expires_at: now + args.seconds + 600,
                    id: String::new(),
                })
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The bots' player ids: `--player-ids`, else `bot-0` … `bot-<players - 1>`.
fn player_ids(args: &Args) -> Vec<String> {
    if !args.player_ids.is_empty() {
        return args.player_ids.clone();
    }
    (0..args.players).map(|i| format!("bot-{i}")).collect()
}

/// Asks the allocation API for one server for all the bots: its address, its certificate
/// fingerprint and a token per bot.
async fn allocate(args: &Args, url: &str) -> Result<(SocketAddr, String, Vec<String>), String> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()));
    if args.token_file.is_none() && args.client_cert.is_none() {
        return Err("--allocation-url needs --token-file or --client-cert".into());
    }
    let mut options = ClientOptions::default();
    if let Some(path) = &args.token_file {
        options.token = Some(String::from_utf8_lossy(&read(path)?).into_owned());
    }
    if let Some(path) = &args.ca_file {
        options.ca_pem = Some(read(path)?);
    }
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        options.identity_pem = Some(pem);
    }
    if let Some(address) = args.connect_to {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .ok_or("--allocation-url has no host")?;
        options.resolve = Some((host.to_owned(), address));
    }
    let client = AllocationClient::with_options(url, options).map_err(|e| e.to_string())?;
    let session = args
        .session
        .clone()
        .unwrap_or_else(|| format!("bots-{}", std::process::id()));
    let request = AllocationRequest {
        fleet: args.fleet.clone(),
        session_id: Some(session.clone()),
        players: player_ids(args),
        ..Default::default()
    };
    let answer = client
        .allocate_with_retry(&args.namespace, &request, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let port = answer
        .ports
        .iter()
        .find(|p| p.name == "game")
        .or(answer.ports.first())
        .map(|p| p.port)
        .ok_or("no ports")?;
    let addr = format!("{}:{port}", answer.address)
        .parse()
        .map_err(|e| format!("address: {e}"))?;
    let fingerprint = answer
        .certificate_sha256
        .ok_or("the server has not published its certificate fingerprint")?;
    println!("allocated {} ({addr}) for session {session}", answer.game_server);
    Ok((addr, fingerprint, answer.tokens.into_values().collect()))
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
    let target = match &args.allocation_url {
        Some(url) => allocate(&args, url).await,
        None => tokens(&args).and_then(|tokens| match (args.addr, args.fingerprint.clone()) {
            (Some(addr), Some(fingerprint)) => Ok((addr, fingerprint, tokens)),
            _ => Err("--addr and --fingerprint are required".into()),
        }),
    };
    let (addr, fingerprint, tokens) = match target {
        Ok(target) => target,
        Err(e) => {
            eprintln!("flotilla-bots: {e}");
            return ExitCode::FAILURE;
        }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    fn parse(line: &str) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("flotilla-bots").chain(line.split_whitespace()))
    }

    #[test]
    fn direct_mode_needs_no_allocation_credential() {
        let args = parse(
            "--addr 127.0.0.1:7777 --fingerprint ab --signing-key k.der --server s --session x --players 5",
        )
        .expect("direct mode parses");
        assert_eq!(args.players, 5);
        assert!(args.token_file.is_none());
    }

    #[test]
    fn allocation_mode_takes_a_token_or_a_client_certificate() {
        parse("--allocation-url https://a --fleet f --token-file t").expect("with a token");
        parse("--allocation-url https://a --fleet f --client-cert c --client-key k").expect("with mTLS");
        assert!(
            parse("--allocation-url https://a --fleet f --token-file t --client-cert c --client-key k")
                .is_err()
        );
        assert!(parse("--addr 127.0.0.1:7777 --fingerprint ab --token-file t").is_err());
        assert!(
            parse("--allocation-url https://a --token-file t").is_err(),
            "needs --fleet"
        );
    }
}
