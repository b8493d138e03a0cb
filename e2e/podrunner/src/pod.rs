//! One task per pod: give it an address and its volumes, run its init containers in order and
//! then its containers side by side under their restart policy and probes, report status as
//! it changes, and on deletion stop the processes within the grace period and finalize the pod
//! as a kubelet does (delete with grace 0 and the pod's UID as precondition).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::events::{Event, EventType, Recorder},
};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{
    env::{self, PodAddresses, PodRefs},
    error::{Error, Result},
    image_map::ImageMap,
    pod_network::AddressPool,
    probe::{self, ProbeTarget, Timing, Verdict},
    process::{Launch, Process},
    status::{ContainerRuntime, PodRuntime, RestartPolicy, State, Termination, waiting},
    volumes::Volumes,
};

/// What the node shares with each of its pod tasks.
pub struct NodeContext {
    pub client: Client,
    pub node_name: String,
    pub host_ip: Ipv4Addr,
    pub pool: Mutex<AddressPool>,
    pub image_map: PathBuf,
    pub pods_dir: PathBuf,
    pub pgid_dir: PathBuf,
    /// Variables every container gets: where the API server is (`KUBERNETES_SERVICE_*`).
    pub base_env: Vec<(String, String)>,
    pub backoff: Backoff,
    pub http: reqwest::Client,
    pub recorder: Recorder,
}

/// Restart back-off: doubles from `initial` up to `max`, reset after a container ran
/// for longer than ten times `max` (the kubelet's rule, on a shorter default scale).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

/// Why a pod's containers are being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub grace: Duration,
    /// The pod object is already gone from the API (force-deleted), so there is nothing to finalize.
    pub object_gone: bool,
}

type StopSignal = watch::Receiver<Option<Stop>>;

/// Runs the pod until it is deleted. `stop` is set by the node's watch when the pod gets a
/// deletion timestamp or disappears.
pub async fn run(ctx: Arc<NodeContext>, pod: Pod, stop: StopSignal) {
    let span = info_span!("pod", namespace = %pod.namespace().unwrap_or_default(), name = %pod.name_any());
    PodTask::new(ctx, pod, stop).run().instrument(span).await;
}

/// What happened to a supervised container.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Completed,
    Failed,
    Stopped,
}

struct PodTask {
    ctx: Arc<NodeContext>,
    pod: Pod,
    api: Api<Pod>,
    dir: PathBuf,
    runtime: Arc<Mutex<PodRuntime>>,
    changed: Arc<Notify>,
    stop: StopSignal,
}

impl PodTask {
    fn new(ctx: Arc<NodeContext>, pod: Pod, stop: StopSignal) -> Self {
        let namespace = pod.namespace().unwrap_or_else(|| "default".into());
        let spec = pod.spec.clone().unwrap_or_default();
        let runtime = PodRuntime::new(
            RestartPolicy::parse(spec.restart_policy.as_deref()),
            ctx.host_ip,
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| ContainerRuntime::new(&c.name, c.image.as_deref().unwrap_or_default()))
                .collect(),
            spec.containers
                .iter()
                .map(|c| ContainerRuntime::new(&c.name, c.image.as_deref().unwrap_or_default()))
                .collect(),
        );
        let dir = ctx.pods_dir.join(format!(
            "{namespace}_{}_{}",
            pod.name_any(),
            pod.uid().unwrap_or_default()
        ));
        PodTask {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            ctx,
            pod,
            dir,
            runtime: Arc::new(Mutex::new(runtime)),
            changed: Arc::new(Notify::new()),
            stop,
        }
    }

    async fn run(self) {
        let already_terminal = matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if already_terminal {
            let stop = self.stopped().await;
            self.finalize(stop, None).await;
            return;
        }
        let reporter = tokio::spawn(report_status(
            self.api.clone(),
            self.pod.name_any(),
            self.runtime.clone(),
            self.changed.clone(),
        ));
        let address = self.ctx.pool.lock().map(|mut p| p.allocate()).ok().flatten();
        match address {
            Some(ip) => {
                self.update(|p| p.pod_ip = Some(ip));
                self.run_containers(ip).await;
            }
            None => {
                self.set_all_waiting("ContainerCreating", "no free pod address left on this node");
            }
        }
        let stop = self.stopped().await;
        reporter.abort();
        self.finalize(stop, address).await;
    }

    /// Sets up the pod and runs its containers until they are done or the pod is deleted.
    async fn run_containers(&self, pod_ip: Ipv4Addr) {
        let addresses = PodAddresses {
            pod_ip,
            host_ip: self.ctx.host_ip,
        };
        let Some(volumes) = self.prepare(addresses).await else {
            return;
        };
        self.update(|p| p.sandbox_ready = true);
        let refresher = volumes.refresh_after.map(|after| {
            let (ctx, pod, dir) = (self.ctx.clone(), self.pod.clone(), self.dir.clone());
            tokio::spawn(refresh_tokens(ctx, pod, addresses, dir, after))
        });
        let volumes = Arc::new(volumes);
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = RestartPolicy::parse(spec.restart_policy.as_deref());

        let mut initialized = true;
        for (index, container) in spec.init_containers.iter().flatten().enumerate() {
            match self
                .supervise(container, Slot::Init(index), addresses, &volumes)
                .await
            {
                Outcome::Completed => {}
                Outcome::Failed => {
                    if policy == RestartPolicy::Never {
                        self.update(|p| p.init_failed = true);
                    }
                    initialized = false;
                    break;
                }
                Outcome::Stopped => {
                    initialized = false;
                    break;
                }
            }
        }
        if initialized {
            let containers =
                spec.containers.iter().enumerate().map(|(index, container)| {
                    self.supervise(container, Slot::Main(index), addresses, &volumes)
                });
            futures::future::join_all(containers).await;
        }
        if let Some(task) = refresher {
            task.abort();
        }
        if self.runtime.lock().map(|p| p.is_terminal()).unwrap_or(false) {
            info!("pod finished");
        }
    }

    /// Fetches the ConfigMaps and Secrets that volumes need and writes the volumes, retrying
    /// while they are missing. `None` if the pod was deleted meanwhile.
    async fn prepare(&self, addresses: PodAddresses) -> Option<Volumes> {
        loop {
            let attempt = async {
                let refs = fetch_refs(&self.ctx.client, &self.pod).await?;
                Volumes::materialize(&self.ctx.client, &self.pod, &refs, addresses, &self.dir).await
            };
            match attempt.await {
                Ok(ready) => return Some(ready),
                Err(e) => {
                    warn!(error = %e, "pod setup failed, retrying");
                    self.set_all_waiting(e.waiting_reason(), &e.to_string());
                    self.event(EventType::Warning, "FailedMount", &e.to_string())
                        .await;
                }
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.wait_for(Option::is_some) => return None,
            }
        }
    }

    /// Runs one container under the restart policy until it completes, fails for good, or
    /// the pod is stopped.
    async fn supervise(
        &self,
        container: &Container,
        slot: Slot,
        addresses: PodAddresses,
        volumes: &Volumes,
    ) -> Outcome {
        let policy = self
            .runtime
            .lock()
            .map(|p| p.restart_policy)
            .unwrap_or(RestartPolicy::Always);
        let mut backoff = self.ctx.backoff.initial;
        let mut stop = self.stop.clone();
        loop {
            let launched = self
                .launch(container, addresses, volumes)
                .await
                .and_then(|launch| Ok((Process::spawn(&launch, &self.ctx.pgid_dir)?, launch)));
            let (mut process, launch) = match launched {
                Ok(started) => started,
                Err(e) => {
                    warn!(container = %container.name, error = %e, "container cannot start");
                    self.set_container(slot, |c| {
                        c.state = waiting(e.waiting_reason(), Some(e.to_string()))
                    });
                    self.event(EventType::Warning, "Failed", &e.to_string()).await;
                    let reason = match e {
                        Error::ImageNotMapped { .. } | Error::ImageMap { .. } => "ImagePullBackOff",
                        _ => e.waiting_reason(),
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(Option::is_some) => return Outcome::Stopped,
                    }
                    self.set_container(slot, |c| c.state = waiting(reason, Some(e.to_string())));
                    backoff = (backoff * 2).min(self.ctx.backoff.max);
                    continue;
                }
            };

            let started_at = Timestamp::now();
            let ran_since = Instant::now();
            let has_startup = container.startup_probe.is_some();
            let has_readiness = container.readiness_probe.is_some();
            self.set_container(slot, |c| {
                c.state = State::Running { started_at };
                c.container_id = Some(format!("process://{}", process.pid));
                c.image_id = format!("file://{}", launch.program.display());
                c.started = !has_startup;
                c.ready = !has_startup && !has_readiness;
            });
            info!(container = %container.name, pid = process.pid, "container started");
            self.event(
                EventType::Normal,
                "Started",
                &format!("Started container {}", container.name),
            )
            .await;

            let (kill_tx, mut kill_rx) = mpsc::channel::<String>(1);
            let probes = tokio::spawn(probe_container(
                ProbeTarget {
                    pod_ip: addresses.pod_ip,
                    container: container.clone(),
                    pid: process.pid,
                    env: launch.env.clone(),
                    http: self.ctx.http.clone(),
                },
                slot,
                self.runtime.clone(),
                self.changed.clone(),
                kill_tx,
                ProbeEvents {
                    recorder: self.ctx.recorder.clone(),
                    pod: self.pod.clone(),
                },
            ));
            let pod_grace = termination_grace(&self.pod);
            let (status, message, stopped) = tokio::select! {
                status = process.wait() => (status, None, false),
                Some(reason) = kill_rx.recv() => {
                    self.event(EventType::Normal, "Killing", &reason).await;
                    (process.stop(pod_grace).await, Some(reason), false)
                }
                Ok(requested) = async { stop.wait_for(Option::is_some).await.map(|r| *r) } => {
                    let grace = requested.map_or(pod_grace, |s| s.grace);
                    (process.stop(grace).await, None, true)
                }
            };
            probes.abort();
            let termination = terminated(status, message, started_at);
            let exit_code = termination.exit_code;
            debug!(container = %container.name, exit_code, "container exited");
            let restart = !stopped
                && match slot {
                    Slot::Init(_) => policy != RestartPolicy::Never && exit_code != 0,
                    Slot::Main(_) => policy.restarts(exit_code),
                };
            if !restart {
                self.set_container(slot, |c| {
                    c.state = State::Terminated(termination);
                    c.ready = false;
                });
                return match (stopped, exit_code) {
                    (true, _) => Outcome::Stopped,
                    (false, 0) => Outcome::Completed,
                    _ => Outcome::Failed,
                };
            }
            if ran_since.elapsed() > self.ctx.backoff.max * 10 {
                backoff = self.ctx.backoff.initial;
            }
            let note = format!(
                "back-off {backoff:?} restarting failed container={} pod={}",
                container.name,
                self.pod.name_any()
            );
            self.set_container(slot, |c| {
                c.restart_count += 1;
                c.last_termination = Some(termination);
                c.ready = false;
                c.started = false;
                c.state = waiting("CrashLoopBackOff", Some(note.clone()));
            });
            self.event(EventType::Warning, "BackOff", &note).await;
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(Option::is_some) => return Outcome::Stopped,
            }
            backoff = (backoff * 2).min(self.ctx.backoff.max);
        }
    }

    /// Resolves image, command, arguments, environment and mounts of one container start.
    /// ConfigMaps and Secrets are read anew each time, so a start that failed for a missing
    /// one succeeds once it has been created.
    async fn launch(
        &self,
        container: &Container,
        addresses: PodAddresses,
        volumes: &Volumes,
    ) -> Result<Launch> {
        let image = container.image.as_deref().unwrap_or_default();
        let map = ImageMap::load(&self.ctx.image_map)?;
        let entrypoint = map.resolve(image)?.to_owned();
        let refs = fetch_refs(&self.ctx.client, &self.pod).await?;
        let env = env::resolve(&self.pod, container, addresses, &refs, &self.base_env())?;
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let mut argv: Vec<String> = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .map(|a| env::expand(a, lookup))
            .collect();
        // `command` replaces the image's entrypoint. Its first word names the entrypoint when it
        // is the binary's file name; otherwise it is a program of the host (images share the
        // host's filesystem here), such as `sh`.
        let program = match container.command.as_ref().and_then(|c| c.first()) {
            Some(first) if Path::new(first).file_name() != entrypoint.file_name() => {
                argv.remove(0);
                PathBuf::from(env::expand(first, lookup))
            }
            Some(_) => {
                argv.remove(0);
                entrypoint
            }
            None => entrypoint,
        };
        let log_dir = self.dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(|e| Error::io(&log_dir, e))?;
        let restart = self.container_restarts(&container.name);
        Ok(Launch {
            container: container.name.clone(),
            program,
            args: argv,
            mounts: volumes.mounts_for(container)?,
            working_dir: container
                .working_dir
                .as_ref()
                .map_or_else(|| self.dir.join("rootfs").join(&container.name), PathBuf::from),
            log_file: log_dir.join(format!("{}-{restart}.log", container.name)),
            env,
        })
    }

    fn base_env(&self) -> Vec<(String, String)> {
        let mut base = vec![
            (
                "PATH".to_owned(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ),
            ("HOSTNAME".to_owned(), self.pod.name_any()),
        ];
        base.extend(self.ctx.base_env.iter().cloned());
        base
    }

    fn container_restarts(&self, name: &str) -> i32 {
        self.runtime
            .lock()
            .ok()
            .and_then(|p| {
                p.init_containers
                    .iter()
                    .chain(&p.containers)
                    .find(|c| c.name == name)
                    .map(|c| c.restart_count)
            })
            .unwrap_or(0)
    }

    /// Waits until the pod is to be stopped.
    async fn stopped(&self) -> Stop {
        let mut stop = self.stop.clone();
        match stop.wait_for(Option::is_some).await {
            Ok(s) => (*s).unwrap_or(Stop {
                grace: Duration::ZERO,
                object_gone: true,
            }),
            Err(_) => Stop {
                grace: Duration::ZERO,
                object_gone: true,
            },
        }
    }

    /// The kubelet's last steps: final status, then remove the object so the API forgets it.
    async fn finalize(&self, stop: Stop, address: Option<Ipv4Addr>) {
        if !stop.object_gone {
            if let Err(e) = patch_status(&self.api, &self.pod.name_any(), &self.runtime).await {
                debug!(error = %e, "final status not written");
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: self.pod.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.api.delete(&self.pod.name_any(), &params).await {
                Ok(_) => info!("pod finalized"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => warn!(error = %e, "pod not finalized"),
            }
        }
        if let Some(ip) = address
            && let Ok(mut pool) = self.ctx.pool.lock()
        {
            pool.release(ip);
        }
        // Volumes hold secrets and tokens: they go with the pod. Logs stay for post-mortems.
        let _ = std::fs::remove_dir_all(self.dir.join("volumes"));
    }

    fn update(&self, f: impl FnOnce(&mut PodRuntime)) {
        if let Ok(mut runtime) = self.runtime.lock() {
            f(&mut runtime);
        }
        self.changed.notify_one();
    }

    fn set_container(&self, slot: Slot, f: impl FnOnce(&mut ContainerRuntime)) {
        self.update(|p| {
            if let Some(c) = slot.of(p) {
                f(c);
            }
        });
    }

    fn set_all_waiting(&self, reason: &str, message: &str) {
        self.update(|p| {
            for c in p.init_containers.iter_mut().chain(p.containers.iter_mut()) {
                c.state = waiting(reason, Some(message.to_owned()));
            }
        });
    }

    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        publish(&self.ctx.recorder, &self.pod, type_, reason, note).await;
    }
}

/// Which container of the pod a supervisor runs.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

impl Slot {
    fn of(self, pod: &mut PodRuntime) -> Option<&mut ContainerRuntime> {
        match self {
            Slot::Init(i) => pod.init_containers.get_mut(i),
            Slot::Main(i) => pod.containers.get_mut(i),
        }
    }
}

/// Writes the pod's status whenever it changes. Changes that arrive while a write is in
/// flight are folded into the next write, so a burst costs one or two requests.
async fn report_status(api: Api<Pod>, name: String, runtime: Arc<Mutex<PodRuntime>>, changed: Arc<Notify>) {
    loop {
        changed.notified().await;
        if let Err(e) = patch_status(&api, &name, &runtime).await {
            warn!(error = %e, "status update failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
            changed.notify_one();
        }
    }
}

async fn patch_status(api: &Api<Pod>, name: &str, runtime: &Mutex<PodRuntime>) -> Result<()> {
    let status = match runtime.lock() {
        Ok(mut p) => p.status(Timestamp::now()),
        Err(_) => return Ok(()),
    };
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    Ok(())
}

/// Everything a probe task needs to publish events about its pod.
struct ProbeEvents {
    recorder: Recorder,
    pod: Pod,
}

/// Runs a container's startup probe, then its readiness and liveness probes. A failed
/// startup or liveness verdict asks the supervisor (through `kill`) to restart the container.
async fn probe_container(
    target: ProbeTarget,
    slot: Slot,
    runtime: Arc<Mutex<PodRuntime>>,
    changed: Arc<Notify>,
    kill: mpsc::Sender<String>,
    events: ProbeEvents,
) {
    let set = |f: &dyn Fn(&mut ContainerRuntime)| {
        if let Ok(mut p) = runtime.lock()
            && let Some(c) = slot.of(&mut p)
        {
            f(c);
        }
        changed.notify_one();
    };
    let name = target.container.name.clone();
    if let Some(startup) = &target.container.startup_probe {
        // A startup probe ends at its first verdict, whichever way it goes.
        match run_probe(startup, &target, "Startup", &events, |_| false).await {
            true => set(&|c| {
                c.started = true;
                c.ready = target.container.readiness_probe.is_none();
            }),
            false => {
                let _ = kill
                    .send(format!(
                        "Container {name} failed startup probe, will be restarted"
                    ))
                    .await;
                return;
            }
        }
    }
    let readiness = async {
        if let Some(probe) = &target.container.readiness_probe {
            run_probe(probe, &target, "Readiness", &events, |ready| {
                set(&|c| c.ready = ready);
                true
            })
            .await;
        }
    };
    let liveness = async {
        if let Some(probe) = &target.container.liveness_probe {
            run_probe(probe, &target, "Liveness", &events, |alive| alive).await;
            let _ = kill
                .send(format!(
                    "Container {name} failed liveness probe, will be restarted"
                ))
                .await;
        }
    };
    tokio::join!(readiness, liveness);
}

/// Probes on the probe's schedule and hands every change of verdict to `on_verdict`, which
/// says whether to go on. Returns the verdict that stopped it. Each failure is an event.
async fn run_probe(
    probe: &k8s_openapi::api::core::v1::Probe,
    target: &ProbeTarget,
    kind: &str,
    events: &ProbeEvents,
    mut on_verdict: impl FnMut(bool) -> bool,
) -> bool {
    let timing = Timing::of(probe);
    tokio::time::sleep(timing.initial_delay).await;
    let mut verdict = Verdict::new(timing);
    loop {
        let result = probe::check(probe, target, timing.timeout).await;
        if let Err(reason) = &result {
            let note = format!("{kind} probe failed: {reason}");
            publish(
                &events.recorder,
                &events.pod,
                EventType::Warning,
                "Unhealthy",
                &note,
            )
            .await;
        }
        if let Some(healthy) = verdict.record(result.is_ok())
            && !on_verdict(healthy)
        {
            return healthy;
        }
        tokio::time::sleep(timing.period).await;
    }
}

async fn publish(recorder: &Recorder, pod: &Pod, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1024).collect()),
        action: reason.to_owned(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &pod.object_ref(&())).await {
        debug!(error = %e, reason, "event not recorded");
    }
}

/// Renews projected service-account tokens at 80 % of their lifetime, as the kubelet does.
async fn refresh_tokens(
    ctx: Arc<NodeContext>,
    pod: Pod,
    addresses: PodAddresses,
    dir: PathBuf,
    mut after: Duration,
) {
    loop {
        tokio::time::sleep(after.max(Duration::from_secs(1))).await;
        let refreshed = async {
            let refs = fetch_refs(&ctx.client, &pod).await?;
            Volumes::materialize(&ctx.client, &pod, &refs, addresses, &dir).await
        };
        match refreshed.await {
            Ok(volumes) => after = volumes.refresh_after.unwrap_or(after),
            Err(e) => {
                warn!(error = %e, "token refresh failed, retrying");
                after = Duration::from_secs(10);
            }
        }
    }
}

/// Fetches every ConfigMap and Secret the pod refers to; absent ones are left out, and the
/// resolver decides whether that is an error (it is unless the reference is optional).
async fn fetch_refs(client: &Client, pod: &Pod) -> Result<PodRefs> {
    let namespace = pod.namespace().unwrap_or_else(|| "default".into());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let (cm_names, secret_names) = referenced_names(pod);
    let mut refs = PodRefs::default();
    for name in cm_names {
        if let Some(found) = config_maps.get_opt(&name).await? {
            refs.config_maps.insert(name, found);
        }
    }
    for name in secret_names {
        if let Some(found) = secrets.get_opt(&name).await? {
            refs.secrets.insert(name, found);
        }
    }
    Ok(refs)
}

/// The names of the ConfigMaps and Secrets a pod's env, envFrom and volumes refer to.
fn referenced_names(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let Some(spec) = &pod.spec else {
        return (cms, secrets);
    };
    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
        for from in c.env_from.iter().flatten() {
            cms.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for var in c.env.iter().flatten() {
            if let Some(source) = &var.value_from {
                cms.extend(source.config_map_key_ref.as_ref().map(|r| r.name.clone()));
                secrets.extend(source.secret_key_ref.as_ref().map(|r| r.name.clone()));
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        cms.extend(v.config_map.as_ref().map(|r| r.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|r| r.secret_name.clone()));
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            cms.extend(source.config_map.as_ref().map(|r| r.name.clone()));
            secrets.extend(source.secret.as_ref().map(|r| r.name.clone()));
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

fn termination_grace(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64)
}

/// The termination record of an exited process: exit code 128+N for death by signal N,
/// as container runtimes report it.
fn terminated(
    status: std::process::ExitStatus,
    message: Option<String>,
    started_at: Timestamp,
) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    let signal = status.signal();
    let exit_code = status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0));
    Termination {
        exit_code,
        signal,
        reason: if exit_code == 0 { "Completed" } else { "Error" }.to_owned(),
        message,
        started_at: Some(started_at),
        finished_at: Timestamp::now(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    use super::*;

    #[test]
    fn death_by_signal_reports_128_plus_signal() {
        let killed = terminated(
            std::process::ExitStatus::from_raw(libc::SIGKILL),
            None,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(
            (killed.exit_code, killed.signal, killed.reason.as_str()),
            (137, Some(9), "Error")
        );
        let clean = terminated(std::process::ExitStatus::from_raw(0), None, Timestamp::UNIX_EPOCH);
        assert_eq!((clean.exit_code, clean.reason.as_str()), (0, "Completed"));
    }
}
