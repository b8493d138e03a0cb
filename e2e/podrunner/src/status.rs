//! What the runner knows about a pod's containers, and the `PodStatus` a kubelet would report
//! for it: phase, conditions and container states. Pure, so the phase rules are unit-tested.

use std::{collections::BTreeMap, net::Ipv4Addr};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::{
        ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn parse(policy: Option<&str>) -> Self {
        match policy {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Termination {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting { reason: String, message: Option<String> },
    Running { started_at: Timestamp },
    Terminated(Termination),
}

#[derive(Debug, Clone)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: State,
    pub last_termination: Option<Termination>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerRuntime {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRuntime {
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: String::new(),
            container_id: None,
            state: waiting("ContainerCreating", None),
            last_termination: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }

    fn ever_ran(&self) -> bool {
        self.last_termination.is_some() || !matches!(self.state, State::Waiting { .. })
    }

    fn to_status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self.container_id.clone(),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            state: Some(k8s_state(&self.state)),
            last_state: self
                .last_termination
                .clone()
                .map(|t| k8s_state(&State::Terminated(t))),
            ..Default::default()
        }
    }
}

pub fn waiting(reason: &str, message: Option<String>) -> State {
    State::Waiting {
        reason: reason.to_owned(),
        message,
    }
}

/// The runner's view of one pod.
#[derive(Debug)]
pub struct PodRuntime {
    pub restart_policy: RestartPolicy,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Ipv4Addr,
    pub start_time: Timestamp,
    pub sandbox_ready: bool,
    pub init_containers: Vec<ContainerRuntime>,
    pub containers: Vec<ContainerRuntime>,
    /// An init container failed and will not be restarted: the pod has failed.
    pub init_failed: bool,
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl PodRuntime {
    pub fn new(
        restart_policy: RestartPolicy,
        host_ip: Ipv4Addr,
        init_containers: Vec<ContainerRuntime>,
        containers: Vec<ContainerRuntime>,
    ) -> Self {
        PodRuntime {
            restart_policy,
            pod_ip: None,
            host_ip,
            start_time: Timestamp::now(),
            sandbox_ready: false,
            init_containers,
            containers,
            init_failed: false,
            transitions: BTreeMap::new(),
        }
    }

    pub fn initialized(&self) -> bool {
        self.init_containers.iter().all(ContainerRuntime::succeeded)
    }

    /// The kubelet's phase rules, for the policies and states this runner produces.
    pub fn phase(&self) -> &'static str {
        if self.init_failed {
            return "Failed";
        }
        if !self.initialized() || self.containers.iter().any(|c| !c.ever_ran()) {
            return "Pending";
        }
        let all_terminated = self
            .containers
            .iter()
            .all(|c| matches!(c.state, State::Terminated(_)));
        if !all_terminated || self.restart_policy == RestartPolicy::Always {
            return "Running";
        }
        let all_succeeded = self.containers.iter().all(ContainerRuntime::succeeded);
        match (self.restart_policy, all_succeeded) {
            (_, true) => "Succeeded",
            (RestartPolicy::Never, false) => "Failed",
            _ => "Running",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.phase(), "Succeeded" | "Failed")
    }

    pub fn status(&mut self, now: Timestamp) -> PodStatus {
        let phase = self.phase();
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let unready: Vec<String> = self
            .containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.clone())
            .collect();
        let uninitialized: Vec<String> = self
            .init_containers
            .iter()
            .filter(|c| !c.succeeded())
            .map(|c| c.name.clone())
            .collect();
        let ready = unready.is_empty() && !terminal;
        let not_ready = || {
            if terminal {
                ("PodCompleted", None)
            } else {
                (
                    "ContainersNotReady",
                    Some(format!("containers with unready status: [{}]", unready.join(" "))),
                )
            }
        };
        let (ready_reason, ready_message) = if ready { ("", None) } else { not_ready() };
        let conditions = vec![
            self.condition(
                "PodReadyToStartContainers",
                self.sandbox_ready && !terminal,
                "",
                None,
                now,
            ),
            self.condition(
                "Initialized",
                uninitialized.is_empty(),
                if uninitialized.is_empty() {
                    ""
                } else {
                    "ContainersNotInitialized"
                },
                (!uninitialized.is_empty())
                    .then(|| format!("containers with incomplete status: [{}]", uninitialized.join(" "))),
                now,
            ),
            self.condition("ContainersReady", ready, ready_reason, ready_message.clone(), now),
            self.condition("Ready", ready, ready_reason, ready_message, now),
            self.condition("PodScheduled", true, "", None, now),
        ];
        PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            host_ip: Some(self.host_ip.to_string()),
            host_ips: Some(vec![HostIP {
                ip: self.host_ip.to_string(),
            }]),
            pod_ip: self.pod_ip.map(|ip| ip.to_string()),
            pod_ips: self.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
            start_time: Some(Time(self.start_time)),
            init_container_statuses: (!self.init_containers.is_empty()).then(|| {
                self.init_containers
                    .iter()
                    .map(ContainerRuntime::to_status)
                    .collect()
            }),
            container_statuses: Some(self.containers.iter().map(ContainerRuntime::to_status).collect()),
            ..Default::default()
        }
    }

    /// A condition whose `lastTransitionTime` moves only when its status flips.
    fn condition(
        &mut self,
        type_: &'static str,
        status: bool,
        reason: &str,
        message: Option<String>,
        now: Timestamp,
    ) -> PodCondition {
        let since = match self.transitions.get(type_) {
            Some((previous, since)) if *previous == status => *since,
            _ => {
                self.transitions.insert(type_, (status, now));
                now
            }
        };
        PodCondition {
            type_: type_.to_owned(),
            status: if status { "True" } else { "False" }.to_owned(),
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
            message,
            last_transition_time: Some(Time(since)),
            ..Default::default()
        }
    }
}

fn k8s_state(state: &State) -> K8sState {
    match state {
        State::Waiting { reason, message } => K8sState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        State::Running { started_at } => K8sState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..Default::default()
        },
        State::Terminated(t) => K8sState {
            terminated: Some(ContainerStateTerminated {
                exit_code: t.exit_code,
                signal: t.signal,
                reason: Some(t.reason.clone()),
                message: t.message.clone(),
                started_at: t.started_at.map(Time),
                finished_at: Some(Time(t.finished_at)),
                container_id: None,
            }),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32) -> State {
        State::Terminated(Termination {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
        })
    }

    fn pod(policy: RestartPolicy, states: &[State]) -> PodRuntime {
        let containers = states
            .iter()
            .enumerate()
            .map(|(i, s)| ContainerRuntime {
                state: s.clone(),
                ..ContainerRuntime::new(&format!("c{i}"), "img")
            })
            .collect();
        PodRuntime::new(policy, Ipv4Addr::LOCALHOST, Vec::new(), containers)
    }

    const RUNNING: State = State::Running {
        started_at: Timestamp::UNIX_EPOCH,
    };

    #[test]
    fn pod_is_pending_until_every_container_has_started() {
        let creating = waiting("ContainerCreating", None);
        assert_eq!(
            pod(RestartPolicy::Always, &[RUNNING, creating]).phase(),
            "Pending"
        );
        assert_eq!(pod(RestartPolicy::Always, &[RUNNING, RUNNING]).phase(), "Running");
    }

    #[test]
    fn terminal_phase_follows_restart_policy() {
        assert_eq!(
            pod(RestartPolicy::Never, &[exited(0), exited(1)]).phase(),
            "Failed"
        );
        assert_eq!(
            pod(RestartPolicy::Never, &[exited(0), exited(0)]).phase(),
            "Succeeded"
        );
        assert_eq!(pod(RestartPolicy::OnFailure, &[exited(0)]).phase(), "Succeeded");
        assert_eq!(pod(RestartPolicy::OnFailure, &[exited(2)]).phase(), "Running");
        assert_eq!(pod(RestartPolicy::Always, &[exited(0)]).phase(), "Running");
        assert_eq!(
            pod(RestartPolicy::Never, &[exited(1), RUNNING]).phase(),
            "Running"
        );
    }

    #[test]
    fn crash_looping_container_keeps_pod_running() {
        let mut p = pod(RestartPolicy::Always, &[waiting("CrashLoopBackOff", None)]);
        p.containers[0].last_termination = Some(Termination {
            exit_code: 3,
            signal: None,
            reason: "Error".into(),
            message: None,
            started_at: None,
            finished_at: Timestamp::UNIX_EPOCH,
        });
        assert_eq!(p.phase(), "Running");
    }

    #[test]
    fn ready_condition_names_unready_containers_and_keeps_transition_time() {
        let mut p = pod(RestartPolicy::Always, &[RUNNING, RUNNING]);
        p.containers[0].ready = true;
        let t0 = Timestamp::from_second(100).expect("valid");
        let t1 = Timestamp::from_second(200).expect("valid");
        let find = |s: &PodStatus, t: &str| {
            s.conditions
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.type_ == t).cloned())
                .expect("condition present")
        };
        let first = p.status(t0);
        let ready = find(&first, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [c1]")
        );
        let again = find(&p.status(t1), "Ready");
        assert_eq!(again.last_transition_time, Some(Time(t0)));
        p.containers[1].ready = true;
        let flipped = find(&p.status(t1), "Ready");
        assert_eq!(
            (flipped.status.as_str(), flipped.last_transition_time),
            ("True", Some(Time(t1)))
        );
    }
}
