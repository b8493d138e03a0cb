//! Conservation through crashes: the economy binary runs as its own process while 64 writers
//! work against it; it is SIGKILLed at 20 random moments and restarted, and FerretDB itself is
//! killed and restarted halfway. Writers retry with their idempotency keys, as clients do. Then
//! recovery finishes whatever the kills left open, and the books must balance exactly with every
//! acknowledgement true.
//!
//! It restarts the shared FerretDB (from `$FLOTILLA_STORAGE_DIR/ferretdb.pid`), so it is the only
//! test in this binary: test binaries run one after another.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flotilla_economy::ledger::memory::Rng;
use support::{ADMIN_KEY, Deployment, SERVICE_KEY, check_books, players, unique, writer};

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The economy service as a process of its own.
struct Service {
    child: Child,
    port: u16,
}

impl Service {
    async fn start(deployment: &Deployment, port: u16, keys: &str) -> Self {
        let args = deployment.serve_args();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla-economy"))
            .arg("serve")
            .env("FLOTILLA_MONGO_URL", &args.storage.mongo_url)
            .env("FLOTILLA_MONGO_DATABASE", &args.storage.database)
            .env("FLOTILLA_REDIS_URL", &args.redis_url)
            .env("FLOTILLA_OPENSEARCH_URL", &args.opensearch_url)
            .env("FLOTILLA_NAMESPACE", &args.namespace)
            .env("FLOTILLA_ECONOMY_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "FLOTILLA_ECONOMY_METRICS_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("FLOTILLA_ECONOMY_CATALOG", &args.catalog)
            .env("FLOTILLA_PLAYER_TOKEN_KEYS", keys)
            .env("FLOTILLA_SERVICE_KEY", SERVICE_KEY)
            .env("FLOTILLA_ECONOMY_ADMIN_KEY", ADMIN_KEY)
            .env("FLOTILLA_ECONOMY_RECOVERY_GRACE_SECONDS", "2")
            .env("FLOTILLA_ECONOMY_RECOVERY_INTERVAL_SECONDS", "1")
            // A restarted pod keeps its name, and so takes its own lease back at once.
            .env("POD_NAME", "economy-crash-test")
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .spawn()
            .expect("start the economy binary");
        let service = Self { child, port };
        service.wait_listening().await;
        service
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the economy did not listen within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

/// Kills FerretDB outright and starts it again with the same command line, waiting until it listens.
async fn restart_ferretdb() {
    let dir = PathBuf::from(
        std::env::var("FLOTILLA_STORAGE_DIR").expect("FLOTILLA_STORAGE_DIR (e2e/storage/up.sh)"),
    );
    let pid_file = dir.join("ferretdb.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .expect("ferretdb.pid")
        .trim()
        .to_owned();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("ferretdb's command line");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--listen-addr="))
        .expect("--listen-addr")
        .to_owned();
    let killed = Command::new("kill").args(["-KILL", &pid]).status().expect("kill");
    assert!(killed.success());
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("ferretdb.log"))
        .expect("log");
    let child = Command::new("setsid")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("restart ferretdb");
    std::fs::write(&pid_file, child.id().to_string()).expect("pid file");
    // It outlives this test (e2e/storage/down.sh stops it by the pid file); reaped here if not.
    let mut child = child;
    std::thread::spawn(move || child.wait());
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(&listen).await.is_err() {
        assert!(Instant::now() < deadline, "ferretdb did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_and_a_store_restart_neither_create_nor_lose_value() {
    let soak = std::env::var("ECONOMY_SOAK_SECONDS").map_or(60, |s| s.parse().expect("a number"));
    let deployment = Deployment::new();
    let keys = deployment.serve_args().player_token_keys.join(",");
    let port = free_port();
    let mut service = Service::start(&deployment, port, &keys).await;

    let players = players(32, &unique("crash"));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(soak);
    let writers: Vec<_> = (0..64)
        .map(|i| {
            tokio::spawn(writer(
                format!("http://127.0.0.1:{port}"),
                i,
                players.clone(),
                deadline,
            ))
        })
        .collect();

    let mut rng = Rng::new(soak);
    let kills = 20;
    let mut kill_times: Vec<u64> = (0..kills).map(|_| rng.below(soak * 1000)).collect();
    kill_times.sort();
    for (index, at_ms) in kill_times.into_iter().enumerate() {
        let at = started + Duration::from_millis(at_ms);
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
        service.kill();
        if index == kills as usize / 2 {
            restart_ferretdb().await;
        }
        service = Service::start(&deployment, port, &keys).await;
    }
    let mut acks = Vec::new();
    for writer in writers {
        acks.extend(writer.await.expect("writer"));
    }
    service.kill();
    eprintln!("{kills} SIGKILLs and one FerretDB restart in {soak} s");

    // A fresh replica's recovery worker finishes what the kills left open.
    let mut args = deployment.serve_args();
    args.recovery_grace_seconds = 0;
    args.storage.replica = "economy-crash-test".into();
    let replica = deployment.replica_with(args).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let books = replica.state.ledger.store().books().await.expect("books");
        if books.finished.len() == books.transactions.len() {
            check_books(&books, &acks);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recovery did not finish everything within 120 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
