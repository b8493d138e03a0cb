//! Starting and stopping a container's process.
//!
//! Each container runs in a session (and so a process group) of its own, so a stop signal
//! reaches everything it started; it dies with the runner (`PR_SET_PDEATHSIG`), so a killed
//! runner leaves no orphans; and when it has volume mounts it gets a private mount namespace
//! with those directories bound in. The process group ids are also written to a directory the
//! cluster's stop script sweeps, for grandchildren that outlive a runner killed with SIGKILL.

// Forking needs `pre_exec`, which is unsafe: between fork and exec only async-signal-safe calls
// are allowed. The closures below make raw syscalls only, on data prepared before the fork.
#![allow(unsafe_code)]

use std::{
    ffi::CString,
    fs::File,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::{
    error::{Error, Result},
    volumes::BindMount,
};

/// Everything needed to start one container process.
#[derive(Debug)]
pub struct Launch {
    pub container: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub log_file: PathBuf,
    pub mounts: Vec<BindMount>,
}

/// A running container process.
#[derive(Debug)]
pub struct Process {
    pub child: Child,
    pub pid: i32,
    pgid_file: PathBuf,
}

impl Process {
    pub fn spawn(launch: &Launch, pgid_dir: &Path) -> Result<Self> {
        let start_error = |message: String| Error::Start {
            container: launch.container.clone(),
            message,
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&launch.log_file)
            .map_err(|e| Error::io(&launch.log_file, e))?;
        let log_err = log.try_clone().map_err(|e| Error::io(&launch.log_file, e))?;
        std::fs::create_dir_all(&launch.working_dir).map_err(|e| Error::io(&launch.working_dir, e))?;

        let mounts = launch
            .mounts
            .iter()
            .map(|m| Ok((c_path(&m.source)?, c_path(&m.target)?, m.read_only)))
            .collect::<Result<Vec<_>>>()?;
        let parent = std::process::id() as libc::pid_t;

        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        // SAFETY: only raw syscalls on memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                die_with_parent(parent)?;
                check(libc::setsid())?;
                if !mounts.is_empty() {
                    private_mount_namespace()?;
                    for (source, target, read_only) in &mounts {
                        bind(source, target, *read_only)?;
                    }
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| start_error(format!("{}: {e}", launch.program.display())))?;
        let pid = child.id().map_or(0, |p| p as i32);
        let pgid_file = pgid_dir.join(pid.to_string());
        std::fs::write(&pgid_file, b"").map_err(|e| Error::io(&pgid_file, e))?;
        Ok(Process {
            child,
            pid,
            pgid_file,
        })
    }

    /// SIGTERM to the whole process group, SIGKILL after `grace`. Returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> std::process::ExitStatus {
        signal_group(self.pid, libc::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => {
                // Anything the container left behind in its group goes too.
                signal_group(self.pid, libc::SIGKILL);
                status
            }
            _ => {
                signal_group(self.pid, libc::SIGKILL);
                self.child.wait().await.unwrap_or_else(|_| killed_status())
            }
        }
    }

    /// Waits for the process to exit by itself, then clears up its group.
    pub async fn wait(&mut self) -> std::process::ExitStatus {
        let status = self.child.wait().await.unwrap_or_else(|_| killed_status());
        signal_group(self.pid, libc::SIGKILL);
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.pgid_file);
    }
}

/// Runs `command` to completion for an exec probe, inside the mount namespace of the
/// container's process `pid` so it sees the same files, with the container's environment.
pub async fn exec_in(
    pid: i32,
    command: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> std::result::Result<(), String> {
    let (program, args) = command.split_first().ok_or("exec probe has an empty command")?;
    let ns = File::open(format!("/proc/{pid}/ns/mnt")).map_err(|e| format!("container is gone: {e}"))?;
    let ns_fd = std::os::fd::AsRawFd::as_raw_fd(&ns);
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: one raw syscall on a descriptor opened before the fork.
    unsafe {
        cmd.pre_exec(move || check(libc::setns(ns_fd, libc::CLONE_NEWNS)).map(|_| ()));
    }
    let mut child = cmd.spawn().map_err(|e| format!("{program}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("command {program} exited with {status}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("command {program} timed out after {timeout:?}")),
    }
}

/// Kills every process group whose id is recorded in `pgid_dir`: the runner's last act on
/// shutdown, and what the stop script does if the runner itself was killed.
pub fn kill_recorded_groups(pgid_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(pgid_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Some(pgid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) {
            signal_group(pgid, libc::SIGKILL);
        }
        let _ = std::fs::remove_file(entry.path());
    }
}

fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid > 1 {
        // SAFETY: kill(2) has no memory effects; a group that is gone gives ESRCH, ignored.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn killed_status() -> std::process::ExitStatus {
    std::os::unix::process::ExitStatusExt::from_raw(libc::SIGKILL)
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::ContainerConfig(format!("path {} contains a NUL byte", path.display())))
}

fn check(ret: libc::c_int) -> std::io::Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Child side: receive SIGKILL when the runner dies, and close the race where it died first.
fn die_with_parent(parent: libc::pid_t) -> std::io::Result<()> {
    // SAFETY: prctl and getppid are async-signal-safe syscalls.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        if libc::getppid() != parent {
            libc::_exit(1);
        }
    }
    Ok(())
}

fn private_mount_namespace() -> std::io::Result<()> {
    // SAFETY: raw syscalls with static C strings.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        // Without this, our bind mounts would propagate back to the host's namespace.
        check(libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
    }
    Ok(())
}

fn bind(source: &CString, target: &CString, read_only: bool) -> std::io::Result<()> {
    // SAFETY: raw syscalls on C strings built before the fork.
    unsafe {
        check(libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        if read_only {
            check(libc::mount(
                std::ptr::null(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                std::ptr::null(),
            ))?;
        }
    }
    Ok(())
}
