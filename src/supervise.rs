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
use crate::guardian::{Deadline, Enforced, Guardian};
use crate::lock::{Backend, Inspect, Lease, LockRequest, Renewal};
use crate::os::BootTime;
use crate::signals::Signals;
use crate::terminal::Terminal;

/// Environment variables that hold secrets (never passed to the child).
pub use crate::ui::SECRET_ENV;

/// What to run and with which extra environment.
pub(crate) struct ChildSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct StopPolicy<'a> {
    /// Grace between SIGTERM and SIGKILL.
    pub(crate) kill_after: Duration,
    pub(crate) max_time: Option<Duration>,
    /// Also stop processes that left the command's process group.
    pub(crate) kill_escaped: bool,
    /// Children lockrun had before it started anything (it was exec'ed by
    /// a process that had them): never the command's, never stopped.
    pub(crate) inherited: &'a [i32],
}

/// Why lockrun stopped the child itself.
enum StopReason {
    LockLost,
    MaxTime,
}

/// How supervision ended.
pub(crate) enum Supervised {
    /// The command ran (or could not be executed); lockrun's exit status.
    Ran(Exit),
    /// The lease's deadline had passed before the command could start: it
    /// was not started, and the lock was released. Acquire again.
    Stale,
}

/// Run the child while holding `lease`, then release it. Every path,
/// including a failed spawn, releases the lock before returning.
pub(crate) async fn run_locked<B: Backend + Inspect>(
    backend: &mut B,
    mut lease: B::Lease,
    req: &LockRequest,
    spec: &ChildSpec,
    policy: StopPolicy<'_>,
    signals: &mut Signals,
    guardian: &Guardian,
) -> Result<Supervised> {
    let outcome = supervise(backend, &mut lease, req, spec, policy, signals, guardian).await;
    // A lock with a lease frees itself; one without (a CloudShell alias)
    // stays until somebody removes it, so a failed release must be loud.
    let stays_behind = lease.expires_at().is_none() && backend.renew_interval(req).is_some();
    let failure = match tokio::time::timeout(backend.release_timeout(), backend.release(lease))
        .await
    {
        Ok(Ok(())) => {
            tracing::info!(name = %req.name, "released");
            crate::telemetry::released(None);
            return outcome;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "releasing {} timed out; it may be left behind: if nobody holds it, clear it with 'lockrun --backend {} release --force {}'",
            req.name,
            backend.display_url(),
            req.name
        ),
    };
    crate::telemetry::released(Some(&failure));
    if stays_behind && !matches!(outcome, Ok(Supervised::Stale)) {
        eprintln!("lockrun: {}", crate::ui::error_line(&failure));
        return outcome.map(|_| Supervised::Ran(Exit::ReleaseFailed));
    }
    eprintln!(
        "lockrun: warning: {}",
        crate::ui::error_line(&format!("could not release {}: {failure}", req.name))
    );
    outcome
}

/// The lease's deadline, from the instant it may expire on the server: a
/// safety margin (a third of the renewal interval) before that, SIGKILL;
/// a grace before that (`--kill-after`, capped at one renewal interval so
/// that renewals can still fail for a while), SIGTERM.
fn lease_deadline(expires: BootTime, interval: Option<Duration>, kill_after: Duration) -> Deadline {
    let every = interval.unwrap_or(Duration::ZERO);
    let kill_at = expires.saturating_sub(every / 3);
    Deadline {
        term_at: Some(kill_at.saturating_sub(kill_after.min(every))),
        kill_at,
    }
}

async fn supervise<B: Backend>(
    backend: &mut B,
    lease: &mut B::Lease,
    req: &LockRequest,
    spec: &ChildSpec,
    policy: StopPolicy<'_>,
    signals: &mut Signals,
    guardian: &Guardian,
) -> Result<Supervised> {
    let renew_every = backend.renew_interval(req);
    let deadline_of = |lease: &B::Lease| {
        lease
            .expires_at()
            .map(|e| lease_deadline(e, renew_every, policy.kill_after))
    };
    let mut deadline = deadline_of(lease);
    // A lease dated from a request sent long before the grant (a Redis try
    // that waited behind its BLPOP) may come with less than half a renewal
    // interval before its TERM instant: renewed once before the command
    // starts, so the command is not started only to be stopped. Not ours
    // any more: taken afresh, as a stale one is.
    let hurried = renew_every.zip(deadline.and_then(|d| d.term_at));
    if let Some((every, term_at)) = hurried
        && term_at.remaining() < every / 2
    {
        let renewed = backend.renew(lease).await;
        // As after the acquire: the command never starts after a signal,
        // and none is left waiting while the lock is taken afresh.
        if let Some(signal) = signals.pending() {
            return Err(Error::interrupted(signal));
        }
        match renewed {
            Ok(Renewal::Held) => deadline = deadline_of(lease),
            Ok(_) => return Ok(Supervised::Stale),
            Err(e) => {
                tracing::warn!(error = %e, "could not renew a lease that came with little left before starting the command");
                return Ok(Supervised::Stale);
            }
        }
    }
    // No spawn on a stale lease: lockrun may have been stopped or starved
    // between the acquire reply and here.
    if deadline.is_some_and(|d| d.term_at.is_some_and(BootTime::has_passed)) {
        return Ok(Supervised::Stale);
    }
    // Handed over before the command exists: from its first instruction on,
    // the deadline is enforced by a process that is not lockrun.
    guardian.set_deadline(deadline);
    let terminal = Terminal::of_stdin();
    let claim_terminal = terminal.as_ref().is_some_and(Terminal::can_hand_over);
    let term_at_nanos = deadline
        .and_then(|d| d.term_at)
        .map_or(0, BootTime::as_nanos);
    // Nothing that started before the command can be one of its processes:
    // a lower bound for their start times, read before the spawn instead of
    // from /proc/PID/stat after it (9 system calls off the critical path).
    let command_start = crate::os::start_time_lower_bound();
    let mut child = match spawn(
        spec,
        claim_terminal,
        guardian.registration_fd(),
        lease.lock_fd(),
        term_at_nanos,
    ) {
        Ok(child) => child,
        Err(e) => {
            guardian.clear_group();
            guardian.set_deadline(None);
            return match e {
                SpawnFailure::Stale => Ok(Supervised::Stale),
                SpawnFailure::Error(e) => Err(e),
            };
        }
    };
    let pgid = Pid::from_raw(child.id());
    tracing::info!(pid = pgid.as_raw(), "child started");

    let max_deadline = policy.max_time.and_then(|d| Instant::now().checked_add(d));
    let mut stop: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    // Processes that survive SIGKILL (uninterruptible sleep) must not hang us.
    let mut give_up_at: Option<Instant> = None;
    let mut leader: Option<ExitStatus> = None;
    let mut leftovers_signalled = false;
    let mut lease_watch_done = false;
    let mut guardian_done = false;
    // The lease's current deadline, kept up to date by the lease watch, for
    // the SIGCONT decision and for lockrun's own SIGKILL.
    let current = Cell::new(deadline);
    let lease_watch = keep_lease(
        backend,
        lease,
        renew_every,
        policy.kill_after,
        guardian,
        &current,
    );
    tokio::pin!(lease_watch);
    let lost = |stop: &mut Option<StopReason>, why: &str| {
        crate::telemetry::lost(why);
        if !matches!(stop, Some(StopReason::LockLost)) {
            eprintln!(
                "lockrun: lost the lock {}: {}; stopping the command",
                req.name,
                crate::ui::sanitize(why)
            );
        }
        *stop = Some(StopReason::LockLost);
    };

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
                kill_at = earliest(kill_at, Instant::now().checked_add(policy.kill_after));
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
                handle_signal(signal, pgid, &current, terminal.as_ref());
            }
            // At a terminal, Ctrl-Z (or reading it from the background)
            // stops the child's group directly; lockrun follows it, so the
            // shell sees the job as stopped and gets its prompt back.
            () = tokio::time::sleep(STOP_POLL), if terminal.is_some() && leader.is_none() && stop.is_none() => {
                // Not when lockrun itself left it stopped (lease ran out).
                if !past_term(&current) && crate::os::proc_stat(pgid.as_raw()).map(|s| s.state) == Some('T') {
                    suspend_with_child(pgid, &current, terminal.as_ref());
                }
            }
            enforced = guardian.enforced(), if !guardian_done => {
                if enforced == Enforced::Gone {
                    // Nothing would stop the group now if lockrun were
                    // stopped past the deadline or killed: stop it while
                    // lockrun still can, within the lease.
                    guardian_done = true;
                    if !matches!(stop, Some(StopReason::LockLost)) {
                        signal_group(pgid, Some(Signal::SIGTERM));
                    }
                    lost(&mut stop, GUARDIAN_GONE);
                    let grace = match current.get() {
                        Some(d) => policy.kill_after.min(d.kill_at.remaining()),
                        None => policy.kill_after,
                    };
                    kill_at = earliest(kill_at, Instant::now().checked_add(grace));
                    continue;
                }
                if enforced == Enforced::FileLost {
                    // The guardian saw the lock file go and killed the group.
                    guardian_done = true;
                    lost(&mut stop, "the lock file was removed or replaced");
                    give_up_at = give_up_at.or_else(|| Instant::now().checked_add(GIVE_UP_AFTER_KILL));
                    continue;
                }
                // The guardian acted on the deadline: lockrun was stopped,
                // starved, or could not renew in time.
                guardian_done = enforced == Enforced::Killed;
                lost(&mut stop, MISSED_DEADLINE);
                if let Some(d) = current.get() {
                    kill_at = earliest(kill_at, Some(d.kill_at.to_instant()));
                }
                if enforced == Enforced::Killed {
                    give_up_at = give_up_at.or_else(|| Instant::now().checked_add(GIVE_UP_AFTER_KILL));
                }
            }
            end = &mut lease_watch, if !lease_watch_done => {
                lease_watch_done = true;
                let already = matches!(stop, Some(StopReason::LockLost));
                lost(&mut stop, &end.reason);
                match end.others_from {
                    // The deadline passed: the guardian sends SIGTERM (and
                    // has, or will at once); lockrun adds its own SIGKILL.
                    None if end.deadline => {}
                    others_from => {
                        if !already {
                            signal_group(pgid, Some(Signal::SIGTERM));
                        }
                        // Dead no later than the instant another holder
                        // could be granted the lock, whatever --kill-after says.
                        let grace = BootTime::now().saturating_add(policy.kill_after);
                        let by = others_from
                            .map_or(BootTime::now(), |at| at.saturating_sub(renew_every.unwrap_or_default() / 3))
                            .min(grace);
                        guardian.set_deadline(Some(Deadline { term_at: None, kill_at: by }));
                        current.set(Some(Deadline { term_at: None, kill_at: by }));
                        if by.has_passed() {
                            signal_group(pgid, Some(Signal::SIGKILL));
                        }
                    }
                }
                if let Some(d) = current.get() {
                    kill_at = earliest(kill_at, Some(d.kill_at.to_instant()));
                }
            }
            () = sleep_until_opt(max_deadline), if stop.is_none() && leader.is_none() => {
                eprintln!("lockrun: --max-time ran out for {}; stopping the command", req.name);
                stop = Some(StopReason::MaxTime);
                signal_group(pgid, Some(Signal::SIGTERM));
                kill_at = earliest(kill_at, Instant::now().checked_add(policy.kill_after));
            }
            () = sleep_until_opt(kill_at) => {
                tracing::info!("grace period over, sending SIGKILL");
                signal_group(pgid, Some(Signal::SIGKILL));
                kill_at = None;
                give_up_at = give_up_at.or_else(|| Instant::now().checked_add(GIVE_UP_AFTER_KILL));
            }
            () = tokio::time::sleep(LEFTOVER_POLL), if leader.is_some() => {}
        }
    }
    if let Some(status) = leader {
        crate::telemetry::child_exit(status);
    }
    match guardian.already_enforced() {
        Some(Enforced::FileLost) => lost(&mut stop, "the lock file was removed or replaced"),
        Some(_) => lost(&mut stop, MISSED_DEADLINE),
        None => {}
    }
    escaped(policy, guardian, &current, command_start).await;
    if let Some(terminal) = &terminal {
        terminal.take_back(pgid);
    }

    let status = leader.ok_or_else(|| Error::internal("child status lost"))?;
    Ok(Supervised::Ran(match stop {
        Some(StopReason::LockLost) => Exit::LockLost,
        Some(StopReason::MaxTime) => Exit::MaxTime,
        None => exit_of(status),
    }))
}

/// Why the lock counts as lost when its deadline passed without a renewal
/// (lockrun was stopped or starved, or the backend did not answer in time).
const MISSED_DEADLINE: &str = "could not renew the lease before its deadline";

/// Why the lock counts as lost when the guardian died under the command.
const GUARDIAN_GONE: &str = "its guardian process died, so nothing would enforce the lease if lockrun were stopped or killed";

/// How long processes get to die after SIGKILL before lockrun gives up on
/// them (a process in uninterruptible sleep cannot be killed).
const GIVE_UP_AFTER_KILL: Duration = Duration::from_secs(5);

fn past_term(current: &Cell<Option<Deadline>>) -> bool {
    current
        .get()
        .is_some_and(|d| d.term_at.is_none_or(BootTime::has_passed))
}

/// Processes the command started that left its process group (`setsid`, a
/// double fork into a new session): the group's signals do not reach them,
/// but as lockrun is their subreaper they are still its descendants. By
/// default they are named in one warning; with `--kill-escaped` they are
/// stopped like leftovers in the group (SIGTERM, SIGKILL after the grace).
async fn escaped(
    policy: StopPolicy<'_>,
    guardian: &Guardian,
    current: &Cell<Option<Deadline>>,
    command_start: u64,
) {
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    let mut exclude = vec![guardian.pid().as_raw()];
    exclude.extend_from_slice(policy.inherited);
    reap_orphans();
    // Every live descendant is one of lockrun's children or below one (an
    // orphan is reparented to lockrun, its subreaper): with no child but
    // the guardian there is nothing to look for, and no need to read
    // every process's /proc entry inside the critical section.
    // The guardian is a clone child (it sends no SIGCHLD), so one waitid
    // without __WALL answers "no other child" when lockrun had none before.
    if guardian.is_clone_child()
        && policy.inherited.is_empty()
        && !crate::os::has_signalling_child()
    {
        return;
    }
    if crate::os::children_of_self().is_some_and(|kids| kids.iter().all(|k| exclude.contains(k))) {
        return;
    }
    let found = crate::os::descendants(me, &exclude, command_start);
    if found.is_empty() {
        return;
    }
    let names: Vec<String> = found
        .iter()
        .take(5)
        .map(|&pid| {
            let command = u32::try_from(pid)
                .ok()
                .and_then(crate::os::process_command)
                .unwrap_or_else(|| "?".into());
            format!("pid {pid} ({})", crate::ui::sanitize(&command))
        })
        .collect();
    let more = found.len().saturating_sub(names.len());
    let list = if more > 0 {
        format!("{} and {more} more", names.join(", "))
    } else {
        names.join(", ")
    };
    if !policy.kill_escaped {
        eprintln!(
            "lockrun: warning: {} left the command's process group and run on without the lock: {list} (--kill-escaped stops them)",
            plural(found.len(), "process", "processes")
        );
        return;
    }
    tracing::info!(%list, "stopping processes that left the command's group");
    for &pid in &found {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let grace = match current.get() {
        Some(d) => policy.kill_after.min(d.kill_at.remaining()),
        None => policy.kill_after,
    };
    let kill_at = Instant::now().checked_add(grace);
    loop {
        reap_orphans();
        let alive: Vec<i32> = crate::os::descendants(me, &exclude, command_start);
        if alive.is_empty() {
            return;
        }
        if kill_at.is_none_or(|at| Instant::now() >= at) {
            for pid in alive {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            reap_orphans();
            return;
        }
        tokio::time::sleep(LEFTOVER_POLL).await;
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// Reap exited orphans that were reparented to lockrun (its subreaper role).
fn reap_orphans() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// The child's group is stopped: stop lockrun too (so its caller sees the
/// job as stopped), and on SIGCONT resume the child if the lease allows.
fn suspend_with_child(pgid: Pid, current: &Cell<Option<Deadline>>, terminal: Option<&Terminal>) {
    // All of the group, also members that ignore SIGTSTP: nothing may run
    // while lockrun, stopped, renews nothing.
    signal_group(pgid, Some(Signal::SIGSTOP));
    if let Some(terminal) = terminal {
        terminal.take_back(pgid);
    }
    // Returns once somebody sends SIGCONT.
    let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    resume_child(pgid, current, terminal);
}

fn resume_child(pgid: Pid, current: &Cell<Option<Deadline>>, terminal: Option<&Terminal>) {
    if past_term(current) {
        // Left stopped: the guardian kills it (SIGKILL works on a stopped process).
        tracing::info!("lease may have run out while stopped; not resuming the command");
        return;
    }
    if let Some(terminal) = terminal {
        terminal.give_to(pgid);
    }
    signal_group(pgid, Some(Signal::SIGCONT));
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
/// stays stopped and the guardian kills it.
fn handle_signal(
    signal: Signal,
    pgid: Pid,
    current: &Cell<Option<Deadline>>,
    terminal: Option<&Terminal>,
) {
    match signal {
        Signal::SIGTSTP => suspend_with_child(pgid, current, terminal),
        Signal::SIGCONT => resume_child(pgid, current, terminal),
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

enum SpawnFailure {
    /// The lease's TERM instant passed before the command could exec.
    Stale,
    Error(Error),
}

fn spawn(
    spec: &ChildSpec,
    claim_terminal: bool,
    guardian_fd: std::os::fd::RawFd,
    lock_fd: Option<std::os::fd::RawFd>,
    term_at_nanos: u64,
) -> Result<crate::spawn::Child, SpawnFailure> {
    let io = |e: std::io::Error| SpawnFailure::Error(spawn_error(&spec.program, &e));
    let prepared = crate::spawn::Prepared::new(&spec.program, &spec.args, &spec.env).map_err(io)?;
    let setup = crate::spawn::Setup {
        claim_terminal,
        guardian_fd,
        lock_fd,
        term_at_nanos,
    };
    crate::spawn::spawn(&prepared, &setup).map_err(|e| match e {
        crate::spawn::Failure::Stale => SpawnFailure::Stale,
        crate::spawn::Failure::NoGuardian => SpawnFailure::Error(Error::internal(
            "the guardian process died, so the command was not started (the lock was released)",
        )),
        crate::spawn::Failure::Register(e) => SpawnFailure::Error(Error::internal(format!(
            "cannot hand the command to the guardian process: {}; it was not started (the lock was released)",
            crate::ui::plain_io_message(&e)
        ))),
        crate::spawn::Failure::Io(e) => io(e),
    })
}

pub(crate) fn spawn_error(program: &OsString, e: &std::io::Error) -> Error {
    let program = crate::ui::sanitize(&program.to_string_lossy());
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::Spawn {
            message: format!("command not found: {program} (the lock was released)"),
            not_found: true,
        },
        _ => Error::Spawn {
            message: format!(
                "cannot execute {program}: {} (the lock was released)",
                crate::ui::plain_io_message(e)
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
    /// The lease's deadline passed without a renewal (the guardian acts on it).
    deadline: bool,
    /// When the lock is gone: nobody can be granted it before this (`None`:
    /// somebody may have it already).
    others_from: Option<BootTime>,
}

/// Renew the lease for as long as the child runs, and hand every new
/// deadline to the guardian. Returns when the lock is lost, or when its
/// deadline passed without a renewal. `current` is kept up to date for the
/// supervisor.
async fn keep_lease<B: Backend>(
    backend: &mut B,
    lease: &mut B::Lease,
    interval: Option<Duration>,
    kill_after: Duration,
    guardian: &Guardian,
    current: &Cell<Option<Deadline>>,
) -> LeaseEnd {
    let Some(every) = interval else {
        return std::future::pending().await;
    };
    let retry = (every / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut next = Instant::now() + every;
    // A lease that starts with less than an interval before its TERM
    // instant (see `supervise`) is renewed ahead of that instant, with
    // half an interval left for retries, not let run out.
    if let Some(term_at) = current.get().and_then(|d| d.term_at) {
        let ahead = term_at
            .to_instant()
            .checked_sub(every / 2)
            .unwrap_or_else(Instant::now);
        next = next.min(ahead);
    }
    let missed = || LeaseEnd {
        reason: MISSED_DEADLINE.into(),
        deadline: true,
        others_from: None,
    };
    loop {
        let term_at = current.get().and_then(|d| d.term_at);
        if let Some(term_at) = term_at
            && term_at.to_instant() <= next
        {
            tokio::time::sleep_until(term_at.to_instant().into()).await;
            return missed();
        }
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            // An event that may mean loss (a lock file removed): check now.
            () = backend.loss_hint(lease) => {}
        }
        // The next renewal is timed from this one's send, not its reply: a
        // slow link then eats into the margin once, not twice.
        let sent = Instant::now();
        let renewal = match term_at {
            Some(term_at) => {
                match tokio::time::timeout_at(term_at.to_instant().into(), backend.renew(lease))
                    .await
                {
                    Ok(renewal) => renewal,
                    Err(_) => return missed(),
                }
            }
            None => backend.renew(lease).await,
        };
        match renewal {
            Ok(Renewal::Held) => {
                // A renewal answered after the old TERM instant is too late:
                // the guardian has acted on it already, or is about to.
                if term_at.is_some_and(BootTime::has_passed) {
                    return missed();
                }
                let deadline = lease
                    .expires_at()
                    .map(|e| lease_deadline(e, interval, kill_after));
                if deadline.is_some() {
                    // Only a lease that was extended is an event; the
                    // file backend's frequent inode checks are not.
                    crate::telemetry::renewed();
                    guardian.set_deadline(deadline);
                }
                current.set(deadline.or(current.get()));
                next = sent + every;
            }
            Ok(Renewal::Lost(reason)) => {
                return LeaseEnd {
                    reason,
                    deadline: false,
                    others_from: None,
                };
            }
            Ok(Renewal::LostUntil {
                reason,
                others_from,
            }) => {
                return LeaseEnd {
                    reason,
                    deadline: false,
                    others_from: Some(others_from),
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
