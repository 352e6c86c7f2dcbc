//! Run the child under the lock: spawn it in its own process group, forward
//! signals, keep the lease alive, stop the child when the lease is lost or
//! `--max-time` runs out, and release the lock on every path.

use std::cell::Cell;
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
use crate::terminal::Terminal;

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
    match tokio::time::timeout(backend.release_timeout(), backend.release(lease)).await {
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
    let terminal = Terminal::of_stdin();
    let mut child = spawn(spec, terminal.as_ref().is_some_and(Terminal::can_hand_over))?;
    let pgid = Pid::from_raw(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| Error::internal("child has no pid"))?,
    );
    tracing::info!(pid = pgid.as_raw(), "child started");
    let guardian = Guardian::start(pgid);

    let max_deadline = policy.max_time.map(|d| Instant::now() + d);
    let mut stop: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    // Processes that survive SIGKILL (uninterruptible sleep) must not hang us.
    let mut give_up_at: Option<Instant> = None;
    let mut leader: Option<ExitStatus> = None;
    let mut leftovers_signalled = false;
    let mut lease_watch_done = false;
    // The watch publishes the instant by which the child must be dead if
    // no further renewal succeeds, for the SIGCONT decision below.
    let must_die_by = Cell::new(lease.expires_at().map(|e| kill_deadline(e, renew_every)));
    let lease_watch = keep_lease(backend, lease, renew_every, policy.kill_after, &must_die_by);
    tokio::pin!(lease_watch);

    // Runs until the child has exited *and* nothing it left in its process
    // group is alive: the lease is watched the whole time, because those
    // leftovers must not run on without the lock either.
    loop {
        if leader.is_some() {
            reap_group(pgid);
            if !group_alive(pgid) {
                break;
            }
            if !leftovers_signalled {
                leftovers_signalled = true;
                tracing::info!(
                    pgid = pgid.as_raw(),
                    "stopping processes the command left behind"
                );
                signal_group(pgid, Some(Signal::SIGTERM));
                kill_at = earliest(kill_at, Some(Instant::now() + policy.kill_after));
            }
            if give_up_at.is_some_and(|at| Instant::now() >= at) {
                eprintln!(
                    "lockrun: warning: processes of the command survive SIGKILL; giving up on them"
                );
                break;
            }
        }
        tokio::select! {
            status = child.wait(), if leader.is_none() => {
                leader = Some(status.map_err(|e| Error::internal(format!("waiting for the child: {e}")))?);
            }
            signal = signals.recv_any() => {
                handle_signal(signal, pgid, &must_die_by, terminal.as_ref());
            }
            // At a terminal, Ctrl-Z (or reading it from the background)
            // stops the child's group directly; lockrun follows it, so the
            // shell sees the job as stopped and gets its prompt back.
            () = tokio::time::sleep(STOP_POLL), if terminal.is_some() && leader.is_none() && stop.is_none() => {
                // Not when lockrun itself left it stopped (lease ran out).
                let left_stopped = must_die_by.get().is_some_and(|by| Instant::now() >= by);
                if !left_stopped && process_state(pgid) == Some('T') {
                    suspend_with_child(pgid, &must_die_by, terminal.as_ref());
                }
            }
            end = &mut lease_watch, if !lease_watch_done => {
                lease_watch_done = true;
                eprintln!("lockrun: lost the lock {}: {}; stopping the command", req.name, crate::ui::sanitize(&end.reason));
                // Losing the lock outranks --max-time: the exit code says the worse news.
                if !matches!(stop, Some(StopReason::LockLost)) {
                    signal_group(pgid, Some(Signal::SIGTERM));
                }
                stop = Some(StopReason::LockLost);
                let grace = Instant::now() + policy.kill_after;
                kill_at = earliest(kill_at, Some(end.kill_by.map_or(grace, |by| by.min(grace))));
            }
            () = sleep_until_opt(max_deadline), if stop.is_none() && leader.is_none() => {
                eprintln!("lockrun: --max-time ran out for {}; stopping the command", req.name);
                stop = Some(StopReason::MaxTime);
                signal_group(pgid, Some(Signal::SIGTERM));
                kill_at = earliest(kill_at, Some(Instant::now() + policy.kill_after));
            }
            () = sleep_until_opt(kill_at) => {
                tracing::info!("grace period over, sending SIGKILL");
                signal_group(pgid, Some(Signal::SIGKILL));
                kill_at = None;
                give_up_at = Some(Instant::now() + Duration::from_secs(5));
            }
            () = tokio::time::sleep(LEFTOVER_POLL), if leader.is_some() => {}
        }
    }
    guardian.dismiss();
    if let Some(terminal) = &terminal {
        terminal.take_back(pgid);
    }

    let status = leader.ok_or_else(|| Error::internal("child status lost"))?;
    Ok(match stop {
        Some(StopReason::LockLost) => Exit::LockLost,
        Some(StopReason::MaxTime) => Exit::MaxTime,
        None => exit_of(status),
    })
}

/// The child's group is stopped: stop lockrun too (so its caller sees the
/// job as stopped), and on SIGCONT resume the child if the lease allows.
fn suspend_with_child(pgid: Pid, must_die_by: &Cell<Option<Instant>>, terminal: Option<&Terminal>) {
    // All of the group, also members that ignore SIGTSTP: nothing may run
    // while lockrun, stopped, renews nothing.
    signal_group(pgid, Some(Signal::SIGSTOP));
    if let Some(terminal) = terminal {
        terminal.take_back(pgid);
    }
    // Returns once somebody sends SIGCONT.
    let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    resume_child(pgid, must_die_by, terminal);
}

fn resume_child(pgid: Pid, must_die_by: &Cell<Option<Instant>>, terminal: Option<&Terminal>) {
    if must_die_by.get().is_some_and(|by| Instant::now() >= by) {
        // Left stopped: the lease watch kills it (SIGKILL works on a stopped process).
        tracing::info!("lease may have run out while stopped; not resuming the command");
        return;
    }
    if let Some(terminal) = terminal {
        terminal.give_to(pgid);
    }
    signal_group(pgid, Some(Signal::SIGCONT));
}

fn process_state(pid: Pid) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// How often an interactive child is checked for having been stopped by
/// the terminal (there is no event for it that tokio exposes).
const STOP_POLL: Duration = Duration::from_millis(100);

/// How often to look whether the child's leftovers are gone (they are not
/// our children, so there is no event for it).
const LEFTOVER_POLL: Duration = Duration::from_millis(10);

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Forward a signal to the child's group, with job control done right:
/// the group is stopped with SIGSTOP (a command that ignores SIGTSTP must
/// not run on while lockrun, stopped, renews nothing), and on SIGCONT it is
/// resumed only if the lease cannot have run out meanwhile; otherwise it
/// stays stopped and the lease watch kills it.
fn handle_signal(
    signal: Signal,
    pgid: Pid,
    must_die_by: &Cell<Option<Instant>>,
    terminal: Option<&Terminal>,
) {
    match signal {
        Signal::SIGTSTP => suspend_with_child(pgid, must_die_by, terminal),
        Signal::SIGCONT => resume_child(pgid, must_die_by, terminal),
        _ => {
            tracing::info!(%signal, "forwarding signal to the child");
            signal_group(pgid, Some(signal));
        }
    }
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

fn spawn(spec: &ChildSpec, claim_terminal: bool) -> Result<tokio::process::Child> {
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
    // async-signal-safe system calls (prctl, getppid, raise, setpgid,
    // sigprocmask, tcsetpgrp).
    unsafe {
        command.pre_exec(move || {
            // If lockrun is SIGKILLed the child must not run on unprotected.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // lockrun may have died before prctl took effect.
            if nix::unistd::getppid() != parent {
                nix::sys::signal::raise(Signal::SIGKILL)?;
            }
            if claim_terminal {
                crate::terminal::claim_in_child()?;
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

/// The instant by which the child must be dead if no renewal succeeds after
/// the one that set `expires`: a safety margin (a third of the renewal
/// interval) before the lease can expire on the server.
fn kill_deadline(expires: Instant, interval: Option<Duration>) -> Instant {
    let margin = interval.map_or(Duration::ZERO, |i| i / 3);
    expires.checked_sub(margin).unwrap_or(expires)
}

/// Renew the lease for as long as the child runs. Returns when the lock is
/// lost, or when renewals have failed for so long that the lease could
/// expire before the child is stopped (self-fencing on the monotonic clock).
/// `must_die_by` is kept up to date for the supervisor.
async fn keep_lease<B: Backend>(
    backend: &mut B,
    lease: &mut B::Lease,
    interval: Option<Duration>,
    kill_after: Duration,
    must_die_by: &Cell<Option<Instant>>,
) -> LeaseEnd {
    let Some(every) = interval else {
        return std::future::pending().await;
    };
    let retry = (every / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut next = Instant::now() + every;
    loop {
        // SIGKILL must land before the lease can expire, so SIGTERM goes out
        // a grace period earlier.
        let fence = lease.expires_at().map(|expires| {
            let kill_by = kill_deadline(expires, interval);
            let grace = kill_after.min(every);
            (kill_by.checked_sub(grace).unwrap_or(kill_by), kill_by)
        });
        must_die_by.set(fence.map(|(_, kill_by)| kill_by));
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
            Ok(Renewal::Held) => next = Instant::now() + every,
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

/// A tiny forked process that SIGKILLs the child's process group if lockrun
/// dies without dismissing it (e.g. lockrun is SIGKILLed). PR_SET_PDEATHSIG
/// only reaches the direct child; this reaches everything in its group.
///
/// It learns of lockrun's death by EOF on a pipe whose write end only
/// lockrun holds; a byte on the pipe dismisses it.
struct Guardian {
    pid: Option<Pid>,
    dismiss: Option<std::os::fd::OwnedFd>,
}

impl Guardian {
    fn start(group: Pid) -> Guardian {
        let none = Guardian {
            pid: None,
            dismiss: None,
        };
        let Ok((read_end, write_end)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
            return none;
        };
        use std::os::fd::AsRawFd;
        let read_fd = read_end.as_raw_fd();
        // SAFETY: the forked process only makes async-signal-safe system
        // calls (signal, open, dup2, close_range, read, kill, _exit) and
        // never returns into Rust code that could touch shared state.
        match unsafe { libc::fork() } {
            // SAFETY: we are the freshly forked child, as guardian_main requires.
            0 => unsafe { guardian_main(read_fd, group.as_raw()) },
            -1 => none,
            pid => {
                drop(read_end);
                Guardian {
                    pid: Some(Pid::from_raw(pid)),
                    dismiss: Some(write_end),
                }
            }
        }
    }

    fn dismiss(mut self) {
        self.dismiss_now();
    }

    fn dismiss_now(&mut self) {
        if let Some(fd) = self.dismiss.take() {
            let _ = nix::unistd::write(&fd, b"d");
        }
        // Reaped without waiting: releasing the lock must not wait for the
        // guardian to be scheduled. If it has not exited yet, it is a zombie
        // for the few moments until lockrun itself exits.
        if let Some(pid) = self.pid.take() {
            let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        self.dismiss_now();
    }
}

/// The guardian's whole life, in the forked process.
///
/// # Safety
/// Must only be called in a freshly forked child.
unsafe fn guardian_main(read_fd: i32, group: i32) -> ! {
    // SAFETY: plain system calls on integers and a static C string; this is
    // a forked child that runs nothing else.
    unsafe {
        // Its own process group: a SIGKILL sent to lockrun's whole group
        // (`kill -9 %1`, `timeout -s KILL`) must not take the guardian along.
        libc::setpgid(0, 0);
        // Terminal and job-control signals are for lockrun and its child,
        // not for the guardian, which must outlive them to do its job.
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGUSR1,
            libc::SIGUSR2,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
            libc::SIGPIPE,
        ] {
            libc::signal(sig, libc::SIG_IGN);
        }
        // Hold nothing of lockrun's: not the lock file, not its sockets, not
        // the stdout a caller reads to EOF.
        // Out of the way first: with stdin closed, the pipe may be fd 0.
        let pipe = libc::fcntl(read_fd, libc::F_DUPFD, 10);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        libc::dup2(pipe, 3);
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        let mut byte = 0u8;
        let n = loop {
            let n = libc::read(3, (&raw mut byte).cast(), 1);
            if n >= 0 || *libc::__errno_location() != libc::EINTR {
                break n;
            }
        };
        if n == 0 {
            // EOF without a dismissal: lockrun is gone.
            libc::kill(-group, libc::SIGKILL);
        }
        libc::_exit(0)
    }
}
