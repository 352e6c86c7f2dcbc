//! Run the child under the lock: spawn it in its own process group, forward
//! signals, keep the lease alive, stop the child when the lease is lost or
//! `--max-time` runs out, and release the lock on every path.

use std::ffi::OsString;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::exit::Exit;
use crate::lock::{Backend, Lease, LockRequest, Renewal};
use crate::signals::Signals;

/// What to run and with which extra environment.
pub struct ChildSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

/// Environment variables that hold secrets: never passed to the child.
pub const SECRET_ENV: &[&str] = &[
    "LOCKRUN_REDIS_PASSWORD",
    "LOCKRUN_CLOUDSHELL_USER",
    "LOCKRUN_CLOUDSHELL_PASSWORD",
    "LOCKRUN_CLOUDSHELL_TOKEN",
];

#[derive(Debug, Clone, Copy)]
pub struct StopPolicy {
    /// Grace between SIGTERM and SIGKILL.
    pub kill_after: Duration,
    pub max_time: Option<Duration>,
}

/// Why lockrun stopped the child itself.
enum StopReason {
    LockLost,
    MaxTime,
}

/// How long release may take before we give up on it (the lease, if any,
/// then runs out by itself).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the child while holding `lease`, then release it. Every path,
/// including a failed spawn, releases the lock before returning.
pub async fn run_locked<B: Backend>(
    backend: &mut B,
    mut lease: B::Lease,
    req: &LockRequest,
    spec: &ChildSpec,
    policy: StopPolicy,
    signals: &mut Signals,
) -> Result<Exit> {
    let outcome = supervise(backend, &mut lease, req, spec, policy, signals).await;
    match tokio::time::timeout(RELEASE_TIMEOUT, backend.release(lease)).await {
        Ok(Ok(())) => tracing::info!(name = %req.name, "released"),
        Ok(Err(e)) => eprintln!("lockrun: warning: could not release {}: {e}", req.name),
        Err(_) => eprintln!("lockrun: warning: releasing {} timed out", req.name),
    }
    outcome
}

async fn supervise<B: Backend>(
    backend: &mut B,
    lease: &mut B::Lease,
    req: &LockRequest,
    spec: &ChildSpec,
    policy: StopPolicy,
    signals: &mut Signals,
) -> Result<Exit> {
    let renew_every = backend.renew_interval(req);
    let mut child = spawn(spec)?;
    let pgid = Pid::from_raw(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| Error::internal("child has no pid"))?,
    );
    tracing::info!(pid = pgid.as_raw(), "child started");
    signals.set_child_group(Some(pgid));

    let max_deadline = policy.max_time.map(|d| Instant::now() + d);
    let mut stop: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    let mut lease_watch_done = false;
    let lease_watch = keep_lease(backend, lease, renew_every, policy.kill_after);
    tokio::pin!(lease_watch);

    let status: ExitStatus = loop {
        tokio::select! {
            status = child.wait() => {
                break status.map_err(|e| Error::internal(format!("waiting for the child: {e}")))?;
            }
            signal = signals.recv() => {
                tracing::info!(signal, "forwarding signal to the child");
                signal_group(pgid, Signal::try_from(signal).ok());
            }
            end = &mut lease_watch, if !lease_watch_done => {
                lease_watch_done = true;
                if stop.is_none() {
                    eprintln!("lockrun: lost the lock {}: {}; stopping the command", req.name, end.reason);
                    stop = Some(StopReason::LockLost);
                    signal_group(pgid, Some(Signal::SIGTERM));
                    let grace = Instant::now() + policy.kill_after;
                    kill_at = Some(end.kill_by.map_or(grace, |by| by.min(grace)));
                }
            }
            () = sleep_until_opt(max_deadline), if stop.is_none() => {
                eprintln!("lockrun: --max-time ran out for {}; stopping the command", req.name);
                stop = Some(StopReason::MaxTime);
                signal_group(pgid, Some(Signal::SIGTERM));
                kill_at = Some(Instant::now() + policy.kill_after);
            }
            () = sleep_until_opt(kill_at) => {
                tracing::info!("grace period over, sending SIGKILL");
                signal_group(pgid, Some(Signal::SIGKILL));
                kill_at = None;
            }
        }
    };
    stop_leftovers(pgid, policy.kill_after).await;
    signals.set_child_group(None);

    Ok(match stop {
        Some(StopReason::LockLost) => Exit::LockLost,
        Some(StopReason::MaxTime) => Exit::MaxTime,
        None => exit_of(status),
    })
}

fn exit_of(status: ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Exit::Success,
        (Some(code), _) => Exit::Child(u8::try_from(code).unwrap_or(u8::MAX)),
        (None, Some(signal)) => Exit::ChildSignal(signal),
        (None, None) => Exit::Software,
    }
}

fn spawn(spec: &ChildSpec) -> Result<tokio::process::Child> {
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    for secret in SECRET_ENV {
        command.env_remove(secret);
    }
    // Its own process group, so a lost lock or --max-time can stop the whole
    // tree, and so a terminal's Ctrl-C reaches it once (through us), not twice.
    command.process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, raise).
    unsafe {
        command.pre_exec(move || {
            // If lockrun is SIGKILLed the child must not run on unprotected.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // lockrun may have died before prctl took effect.
            if nix::unistd::getppid() != parent {
                nix::sys::signal::raise(Signal::SIGKILL)?;
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| spawn_error(&spec.program, &e))
}

fn spawn_error(program: &OsString, e: &std::io::Error) -> Error {
    let program = program.to_string_lossy();
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::Spawn {
            message: format!("command not found: {program} (the lock was released)"),
            not_found: true,
        },
        _ => Error::Spawn {
            message: format!(
                "cannot execute {program}: {} (the lock was released)",
                e.to_string().split(" (os error").next().unwrap_or_default()
            ),
            not_found: false,
        },
    }
}

fn signal_group(pgid: Pid, signal: Option<Signal>) {
    if let Err(e) = killpg(pgid, signal) {
        tracing::debug!(%e, "killpg");
    }
}

struct LeaseEnd {
    reason: String,
    /// The child must be dead by then: the lease may expire on the server after it.
    kill_by: Option<Instant>,
}

/// Renew the lease for as long as the child runs. Returns when the lock is
/// lost, or when renewals have failed for so long that the lease could
/// expire before the child is stopped (self-fencing on the monotonic clock).
async fn keep_lease<B: Backend>(
    backend: &mut B,
    lease: &mut B::Lease,
    interval: Option<Duration>,
    kill_after: Duration,
) -> LeaseEnd {
    let Some(interval) = interval else {
        return std::future::pending().await;
    };
    let retry = (interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut next = Instant::now() + interval;
    loop {
        // Deadline to start stopping the child: SIGKILL must land before the
        // lease can expire, so SIGTERM goes out a grace period earlier.
        let fence = lease.expires_at().map(|expires| {
            let kill_by = expires.checked_sub(interval / 3).unwrap_or(expires);
            let grace = kill_after.min(interval);
            (kill_by.checked_sub(grace).unwrap_or(kill_by), kill_by)
        });
        let self_fence = |kill_by| LeaseEnd {
            reason: "could not renew the lease before it could expire".into(),
            kill_by: Some(kill_by),
        };
        if let Some((term_at, kill_by)) = fence
            && term_at <= next
        {
            tokio::time::sleep_until(term_at.into()).await;
            return self_fence(kill_by);
        }
        tokio::time::sleep_until(next.into()).await;
        let renewal = match fence {
            Some((term_at, kill_by)) => {
                match tokio::time::timeout_at(term_at.into(), backend.renew(lease)).await {
                    Ok(renewal) => renewal,
                    Err(_) => return self_fence(kill_by),
                }
            }
            None => backend.renew(lease).await,
        };
        match renewal {
            Ok(Renewal::Held) => next = Instant::now() + interval,
            Ok(Renewal::Lost(reason)) => {
                return LeaseEnd {
                    reason,
                    kill_by: None,
                };
            }
            Err(e) => {
                tracing::warn!(%e, "renewal failed, retrying");
                next = Instant::now() + retry;
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// After the child itself exited: anything it left running in its process
/// group would run on without the lock, so it gets SIGTERM, then SIGKILL.
/// lockrun is a child subreaper, so orphans are ours to reap here.
async fn stop_leftovers(pgid: Pid, kill_after: Duration) {
    reap_group(pgid);
    if !group_alive(pgid) {
        return;
    }
    tracing::info!(
        pgid = pgid.as_raw(),
        "stopping processes the command left behind"
    );
    signal_group(pgid, Some(Signal::SIGTERM));
    let deadline = Instant::now() + kill_after;
    while group_alive(pgid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        reap_group(pgid);
    }
    if group_alive(pgid) {
        signal_group(pgid, Some(Signal::SIGKILL));
        let deadline = Instant::now() + Duration::from_secs(1);
        while group_alive(pgid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            reap_group(pgid);
        }
    }
}

fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid, None), Err(nix::errno::Errno::ESRCH))
}

fn reap_group(pgid: Pid) {
    let group = Pid::from_raw(-pgid.as_raw());
    while let Ok(status) = waitpid(group, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Make orphaned grandchildren ours (instead of init's), so that
/// `stop_leftovers` can reap them and tell when the group is really gone.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and touches
    // no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!("PR_SET_CHILD_SUBREAPER failed");
    }
}
