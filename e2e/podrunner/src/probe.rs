//! Readiness, liveness and startup probes (HTTP GET, TCP socket, exec), with the kubelet's
//! timing: `initialDelaySeconds`, then one try every `periodSeconds` with `timeoutSeconds`,
//! and a verdict after `successThreshold` / `failureThreshold` consecutive results.

use std::{net::Ipv4Addr, time::Duration};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};

use crate::process::exec_in;

/// Where and how to run a container's probes.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub pod_ip: Ipv4Addr,
    pub container: Container,
    pub pid: i32,
    pub env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

/// The probe settings with Kubernetes' defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(probe: &Probe) -> Self {
        let secs = |v: Option<i32>, default: u64| Duration::from_secs(v.map_or(default, |s| s.max(0) as u64));
        Timing {
            initial_delay: secs(probe.initial_delay_seconds, 0),
            period: secs(probe.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: probe.success_threshold.map_or(1, |t| t.max(1) as u32),
            failure_threshold: probe.failure_threshold.map_or(3, |t| t.max(1) as u32),
        }
    }
}

/// Counts consecutive results and says when the verdict flips.
#[derive(Debug)]
pub struct Verdict {
    timing: Timing,
    successes: u32,
    failures: u32,
    pub healthy: Option<bool>,
}

impl Verdict {
    pub fn new(timing: Timing) -> Self {
        Verdict {
            timing,
            successes: 0,
            failures: 0,
            healthy: None,
        }
    }

    /// Records one result; returns the new verdict when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let verdict = if self.successes >= self.timing.success_threshold {
            Some(true)
        } else if self.failures >= self.timing.failure_threshold {
            Some(false)
        } else {
            None
        };
        match verdict {
            Some(v) if self.healthy != Some(v) => {
                self.healthy = Some(v);
                Some(v)
            }
            _ => None,
        }
    }
}

/// One try of `probe`; `Err` carries the reason shown in the `Unhealthy` event.
pub async fn check(probe: &Probe, target: &ProbeTarget, timeout: Duration) -> Result<(), String> {
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, &target.container)?;
        let host = http.host.clone().unwrap_or_else(|| target.pod_ip.to_string());
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let path = http.path.as_deref().unwrap_or("/");
        let url = format!("{scheme}://{host}:{port}{path}");
        let mut request = target.http.get(&url).timeout(timeout);
        for header in http.http_headers.iter().flatten() {
            request = request.header(&header.name, &header.value);
        }
        let response = request.send().await.map_err(|e| format!("Get {url:?}: {e}"))?;
        let status = response.status();
        return if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {}", status.as_u16()))
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, &target.container)?;
        let host = tcp.host.clone().unwrap_or_else(|| target.pod_ip.to_string());
        let address = format!("{host}:{port}");
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {address}: {e}")),
            Err(_) => Err(format!("dial tcp {address}: timeout")),
        };
    }
    if let Some(exec) = &probe.exec {
        return exec_in(
            target.pid,
            exec.command.as_deref().unwrap_or_default(),
            &target.env,
            timeout,
        )
        .await;
    }
    Err("only httpGet, tcpSocket and exec probes are supported by the pod runner".into())
}

/// A probe port is a number or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                format!(
                    "port {name:?} is not a named port of container {}",
                    container.name
                )
            })?,
    };
    u16::try_from(number)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {number} is out of range"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ContainerPort;

    use super::*;

    #[test]
    fn defaults_match_kubernetes() {
        let timing = Timing::of(&Probe::default());
        assert_eq!(timing.period, Duration::from_secs(10));
        assert_eq!(timing.timeout, Duration::from_secs(1));
        assert_eq!((timing.success_threshold, timing.failure_threshold), (1, 3));
    }

    #[test]
    fn verdict_flips_only_after_consecutive_thresholds() {
        let mut verdict = Verdict::new(Timing {
            success_threshold: 2,
            failure_threshold: 3,
            ..Timing::of(&Probe::default())
        });
        assert_eq!(verdict.record(true), None);
        assert_eq!(verdict.record(true), Some(true));
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(true), None, "a success resets the failure count");
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(false), None);
        assert_eq!(verdict.record(false), Some(false));
        assert_eq!(verdict.record(false), None, "no repeated verdicts");
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let container = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &container),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("grpc".into()), &container).is_err());
        assert!(resolve_port(&IntOrString::Int(70000), &container).is_err());
    }
}
