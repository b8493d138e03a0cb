//! The machine's raw UDP ceiling on loopback, the physical limit the game server's packet
//! rate is compared with: `recv` counts datagrams for a while on one socket, `send` blasts
//! them as fast as one thread can. Run each pinned to its own core (`taskset`).
//!
//!     bench-udp recv 127.0.0.1:9999 5        # prints "udp: N datagrams/s received"
//!     bench-udp send 127.0.0.1:9999 6 100    # seconds, payload bytes

use std::net::UdpSocket;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["recv", addr, seconds] => recv(addr, seconds.parse().unwrap_or(5)),
        ["send", addr, seconds, size] => {
            send(addr, seconds.parse().unwrap_or(5), size.parse().unwrap_or(100))
        }
        _ => Err("usage: bench-udp recv ADDR SECONDS | bench-udp send ADDR SECONDS BYTES".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-udp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn recv(addr: &str, seconds: u64) -> Result<(), String> {
    let socket = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    // The clock starts at the first datagram, so start-up order does not matter.
    while socket.recv(&mut buf).is_err() {}
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        if socket.recv(&mut buf).is_ok() {
            count += 1;
        }
    }
    println!(
        "udp: {:.0} datagrams/s received",
        count as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn send(addr: &str, seconds: u64, size: usize) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let payload = vec![7u8; size];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..256 {
            if socket.send_to(&payload, addr).is_ok() {
                sent += 1;
            }
        }
    }
    println!(
        "udp: {:.0} datagrams/s sent",
        sent as f64 / started.elapsed().as_secs_f64()
    );
    Ok(())
}
