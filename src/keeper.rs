//! `lockrun acquire NAME` and `lockrun release NAME`: a lock that spans the
//! steps of a CI job.
//!
//! `acquire` starts a *keeper*: lockrun itself again (same arguments and
//! environment, `LOCKRUN_KEEPER` set), detached from the job (its own
//! session, `/` as working directory, stdin/stdout/stderr on /dev/null and
//! no other inherited descriptor, so a CI runner waiting for the step's
//! pipes to close is not held up). The keeper takes the lock as the run
//! mode would, reports the outcome through a pipe to the `acquire` process
//! (which prints any error and exits with its code, or exits 0 once the lock
//! is held) and then holds it: the file backend's descriptor stays open, a
//! lease is renewed. It releases the lock when the watched process exits
//! (`--for-pid`, default `acquire`'s parent: the job's shell), when
//! `release` sends it SIGTERM, and it records a lost lock so that `release`
//! can say so (exit 76).
//!
//! Keepers are found through state files, one per keeper, in the user's
//! private lock directory (`keepers/NAME.BACKEND/PID.keeper`: a directory
//! per lock and backend, removed with its last keeper, so that every run's
//! "is there a keeper of NAME?" is one `stat` of a path that does not
//! exist); `release` ends only keepers of this user that watch one of its
//! own ancestors (the same job) or the process given with `--for-pid`.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{AnyBackend, BackendConfig};
use crate::cli::{AcquireArgs, GlobalArgs, ReleaseArgs};
use crate::error::{Error, Result};
use crate::exit::Exit;
use crate::lock::{
    Backend, HolderInfo, Inspect, Interrupts, Lease, LockName, LockRequest, Renewal, WaitPolicy,
};
use crate::signals::Signals;

/// Set in the keeper's environment: `FD:PID:START:FRONT`, the report pipe,
/// the process to watch (with its start time, against pid reuse) and the
/// `acquire` process waiting for the report (the keeper's parent, until it
/// exits; passed on, as it may be gone before the keeper looks).
const KEEPER_ENV: &str = "LOCKRUN_KEEPER";

/// The descriptor the report pipe gets in the keeper.
const REPORT_FD: RawFd = 3;

pub(crate) const ACQUIRE_SCHEMA: &str = "lockrun.acquire/1";

/// One keeper's state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    name: String,
    key: String,
    backend: String,
    keeper_pid: u32,
    keeper_start: u64,
    for_pid: u32,
    for_start: u64,
    since: u64,
    /// "held", "lost" or "release-failed".
    phase: String,
    #[serde(default)]
    reason: String,
    /// The holder record's re-entry token (see `reentry`), for the job's
    /// own lockruns of NAME.
    #[serde(default)]
    token: String,
}

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Process {
    pid: u32,
    start: u64,
}

impl Process {
    fn of(pid: u32) -> Option<Process> {
        let stat = crate::os::proc_stat(i32::try_from(pid).ok()?)?;
        (stat.state != 'Z').then_some(Process {
            pid,
            start: stat.start,
        })
    }

    fn alive(self) -> bool {
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
        {
            return false;
        }
        Process::of(self.pid) == Some(self)
    }
}

/// Resolves when a process has exited: a pidfd (Linux 5.3+) becomes
/// readable then; without one, `kill(pid, 0)` and the start time are polled.
struct PidWatch {
    process: Process,
    pidfd: Option<tokio::io::unix::AsyncFd<OwnedFd>>,
}

impl PidWatch {
    fn new(process: Process) -> PidWatch {
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, process.pid as libc::pid_t, 0) };
        let pidfd = (fd >= 0)
            .then(|| {
                // SAFETY: a descriptor the kernel just gave us, owned by nobody else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
                // SAFETY: the AsyncFd owns the descriptor, which nothing
                // else closes or replaces while it is registered.
                unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        fd,
                        tokio::io::Interest::READABLE,
                    )
                }
                .ok()
            })
            .flatten();
        // Opened by pid: only now is it certain which process it names.
        PidWatch { process, pidfd }
    }

    async fn exited(&self) {
        if !self.process.alive() {
            return;
        }
        if let Some(fd) = &self.pidfd {
            let _ = fd.readable().await;
            return;
        }
        while self.process.alive() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn state_dir() -> PathBuf {
    crate::backend::file::default_dir().join("keepers")
}

/// What names a backend in state file names: the URL as given (hashed), so
/// `release` must name the backend as `acquire` did (the same
/// `--backend`/`LOCKRUN_BACKEND`), and needs no connection to find its keeper.
fn backend_tag(config: &BackendConfig, global: &GlobalArgs) -> String {
    tag_of(config, global.backend.as_deref())
}

fn tag_of(config: &BackendConfig, raw_backend: Option<&str>) -> String {
    match config {
        BackendConfig::File(crate::backend::file::FileConfig { dir: None }) => {
            crate::reentry::backend_id("file:")
        }
        _ => crate::reentry::backend_id(raw_backend.unwrap_or_default().trim()),
    }
}

/// The directory of the keepers of `name` on the backend tagged `tag`.
fn keeper_dir(name: &LockName, tag: &str) -> PathBuf {
    state_dir().join(format!("{name}.{tag}"))
}

/// Whether a keeper of `name` may exist: one `stat` per place the default
/// lock directory can be (`/run/lock` or `/tmp`, see `default_dir`), without
/// deciding which one it is now (that costs two more system calls). Every
/// lockrun run asks; nearly always the answer is no after the first `stat`
/// and the second.
fn may_have_keepers(name: &LockName, tag: &str) -> bool {
    let relative = Path::new("keepers").join(format!("{name}.{tag}"));
    crate::backend::file::default_dir_candidates()
        .iter()
        .any(|dir| std::fs::symlink_metadata(dir.join(&relative)).is_ok())
}

/// Remove a keeper's state file and, if it was the last of its lock, the
/// lock's keeper directory (`remove_dir` fails while others are in it).
fn remove_state(path: &Path) {
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}

fn ensure_state_dir() -> Result<PathBuf> {
    crate::backend::file::ensure_private_dir(&crate::backend::file::default_dir())?;
    let dir = state_dir();
    crate::backend::file::ensure_private_dir(&dir)?;
    Ok(dir)
}

fn write_state(path: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_vec(state).map_err(|e| Error::internal(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let mut attempts = 0;
    loop {
        if let Some(dir) = path.parent() {
            crate::backend::file::ensure_private_dir(dir)?;
        }
        match std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, path)) {
            Ok(()) => return Ok(()),
            // The lock's last other keeper removed the directory between
            // our mkdir and our write: make it again (bounded).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 8 => attempts += 1,
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "cannot write keeper state {}: {e}",
                    path.display()
                )));
            }
        }
    }
}

fn read_states(name: &LockName, tag: &str) -> Vec<(PathBuf, State)> {
    let Ok(entries) = std::fs::read_dir(keeper_dir(name, tag)) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if !path.file_name()?.to_str()?.ends_with(".keeper") {
                return None;
            }
            let state: State = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            (state.name == name.as_str()).then_some((path, state))
        })
        .collect()
}

fn wait_policy(args: &AcquireArgs) -> WaitPolicy {
    if args.no_wait {
        WaitPolicy::NoWait
    } else {
        args.wait.map_or(WaitPolicy::Forever, |wait| {
            WaitPolicy::Until(Instant::now() + wait)
        })
    }
}

/// `lockrun acquire NAME`: in the job, or (with `LOCKRUN_KEEPER`) in the keeper.
pub(crate) async fn acquire(args: &AcquireArgs, global: &GlobalArgs) -> Result<Exit> {
    let name = LockName::parse(&args.name)?;
    let config = BackendConfig::parse(global.backend.as_deref())?;
    if let BackendConfig::Redis(redis) = &config
        && args.ttl > redis.max_ttl
    {
        return Err(Error::usage(format!(
            "--ttl {} is longer than the Redis backend's max-ttl {}; add ?max-ttl={} to the URL of every lockrun using this server",
            humantime::format_duration(args.ttl),
            humantime::format_duration(redis.max_ttl),
            humantime::format_duration(args.ttl),
        )));
    }
    if let Ok(spec) = std::env::var(KEEPER_ENV) {
        return keep(args, global, name, config, &spec).await;
    }
    let for_pid = args
        .for_pid
        .unwrap_or_else(|| nix::unistd::getppid().as_raw() as u32);
    let Some(watched) = Process::of(for_pid) else {
        return Err(Error::usage(format!(
            "--for-pid {for_pid}: no such process"
        )));
    };
    ensure_state_dir()?;
    start_keeper(watched, global.quiet, args.json).await
}

/// Start the keeper and wait for its report.
async fn start_keeper(watched: Process, quiet: bool, json: bool) -> Result<Exit> {
    let mut signals = Signals::install()?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::internal(format!("cannot create a pipe: {e}")))?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot find lockrun's own executable: {e}")))?;
    let mut command = std::process::Command::new(exe);
    command
        .args(crate::startup::args().iter().skip(1))
        .env(
            KEEPER_ENV,
            format!(
                "{REPORT_FD}:{}:{}:{}",
                watched.pid,
                watched.start,
                std::process::id()
            ),
        )
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let write_fd = write.as_raw_fd();
    // SAFETY: only async-signal-safe calls (setsid, dup2, fcntl,
    // close_range) between fork and exec, on integers. Nothing here may
    // allocate: the static build's allocator (dlmalloc) has no fork
    // handler, so a lock another thread held at the fork stays held.
    unsafe {
        command.pre_exec(move || {
            // Out of the job's session and process group: the job's Ctrl-C
            // and its group's SIGTERM/SIGKILL are not meant for the keeper.
            libc::setsid();
            if write_fd == REPORT_FD {
                let flags = libc::fcntl(REPORT_FD, libc::F_GETFD);
                libc::fcntl(REPORT_FD, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(write_fd, REPORT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing else the job had open may stay open in the keeper: a
            // CI runner waits for every copy of a step's pipes to close.
            // Close-on-exec (Linux 5.11+) keeps std's own exec-error pipe
            // working; without close_range, close them one by one (std
            // then cannot report a failed exec: the report pipe's EOF does).
            if libc::syscall(
                libc::SYS_close_range,
                REPORT_FD + 1,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                let mut limit: libc::rlimit = std::mem::zeroed();
                let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0 {
                    limit.rlim_cur.min(65_536) as RawFd
                } else {
                    1024
                };
                for fd in REPORT_FD + 1..max {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| Error::internal(format!("cannot start the keeper: {e}")))?;
    drop(write);
    let keeper_pid = child.id();
    let mut report = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
        .map_err(|e| Error::internal(format!("keeper pipe: {e}")))?;
    let mut line = Vec::new();
    let read = async {
        use tokio::io::AsyncReadExt;
        report.read_to_end(&mut line).await
    };
    tokio::select! {
        result = read => {
            result.map_err(|e| Error::internal(format!("reading the keeper's report: {e}")))?;
        }
        signal = signals.recv() => {
            // The keeper gives up its wait (and anything it got) on SIGTERM.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(keeper_pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            return Err(Error::interrupted(signal));
        }
    }
    let text = String::from_utf8_lossy(&line);
    let text = text.trim_end();
    if let Some(doc) = text.strip_prefix("ok ") {
        if json {
            // A closed stdout does not undo the acquisition: the keeper
            // holds the lock either way, and exit 0 says so.
            let _ = writeln!(std::io::stdout(), "{doc}");
        }
        return Ok(Exit::Success);
    }
    // "err CODE BUSY MESSAGE"
    let mut parts = text.strip_prefix("err ").unwrap_or_default().splitn(3, ' ');
    let code = parts.next().and_then(|c| c.parse::<u8>().ok());
    let busy = parts.next() == Some("1");
    let message = parts.next().unwrap_or_default();
    match code {
        Some(code) => {
            if !(quiet && busy) {
                eprintln!("lockrun: {}", crate::ui::error_line(message));
            }
            // The keeper's verdict, as lockrun's own exit code.
            Ok(Exit::Child(code))
        }
        None => Err(Error::internal(
            "the keeper ended without saying whether it holds the lock",
        )),
    }
}

/// What may end the keeper's wait: a signal, the watched process's exit,
/// or the exit of the `acquire` process that waits for the report.
struct KeeperInterrupts<'a> {
    signals: &'a mut Signals,
    watch: &'a PidWatch,
    front: i32,
}

impl Interrupts for KeeperInterrupts<'_> {
    async fn recv(&mut self) -> i32 {
        let front = self.front;
        tokio::select! {
            signal = self.signals.recv() => signal,
            () = self.watch.exited() => libc::SIGHUP,
            () = async {
                while nix::unistd::getppid().as_raw() == front {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            } => libc::SIGHUP,
        }
    }
    fn pending(&mut self) -> Option<i32> {
        self.signals.pending()
    }
}

struct Report(File);

impl Report {
    fn send(&mut self, line: &str) -> bool {
        self.0
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.0.flush())
            .is_ok()
    }
}

/// The keeper: take the lock, report, hold it until told otherwise.
async fn keep(
    args: &AcquireArgs,
    global: &GlobalArgs,
    name: LockName,
    config: BackendConfig,
    spec: &str,
) -> Result<Exit> {
    let mut fields = spec.split(':').map(str::parse::<u64>);
    let (Some(Ok(fd)), Some(Ok(pid)), Some(Ok(start)), Some(Ok(front))) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(Error::usage(format!("invalid {KEEPER_ENV}")));
    };
    if fd != REPORT_FD as u64 || pid > u64::from(u32::MAX) || front > i32::MAX as u64 {
        return Err(Error::usage(format!("invalid {KEEPER_ENV}")));
    }
    // SAFETY: `start_keeper` put the pipe's write end on this descriptor.
    let mut report = Report(unsafe { File::from_raw_fd(fd as RawFd) });
    // A broken report pipe must be an error on write, not a fatal signal.
    // SAFETY: setting a signal's disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let watched = Process {
        pid: pid as u32,
        start,
    };
    let fail = |report: &mut Report, e: &Error| {
        let code = e.exit(args.conflict_exit_code).code();
        let busy = u8::from(matches!(e, Error::Busy(_)));
        report.send(&format!("err {code} {busy} {e}"));
        Ok(Exit::Success)
    };
    let watch = PidWatch::new(watched);
    if !watched.alive() {
        return fail(
            &mut report,
            &Error::usage(format!("--for-pid {pid}: the process exited")),
        );
    }
    let mut signals = Signals::install()?;
    let front = front as i32;
    let me = Process::of(std::process::id())
        .ok_or_else(|| Error::internal("cannot read the keeper's own /proc entry"))?;
    let req = LockRequest {
        name: name.clone(),
        slots: args.slots.unwrap_or(1),
        shared: false,
        ttl: args.ttl,
        holder: HolderInfo {
            token: Some(crate::reentry::new_token()),
            ..HolderInfo::for_this_process(&format!(
                "lockrun acquire {name} (keeper for pid {pid})"
            ))
        },
    };
    let mut backend = match AnyBackend::connect(config.clone()).await {
        Ok(backend) => backend,
        Err(e) => return fail(&mut report, &e),
    };
    let mut indicator = crate::ui::WaitIndicator::new(true);
    let mut interrupts = KeeperInterrupts {
        signals: &mut signals,
        watch: &watch,
        front,
    };
    let lease = match crate::acquire::acquire(
        &mut backend,
        &req,
        wait_policy(args),
        &mut interrupts,
        &mut indicator,
    )
    .await
    {
        Ok(lease) => lease,
        Err(e) => return fail(&mut report, &e),
    };
    let key = req.name.slot_key(lease.slot(), req.slots);
    let path = keeper_dir(&name, &backend_tag(&config, global)).join(format!("{}.keeper", me.pid));
    let mut state = State {
        name: name.to_string(),
        key: key.clone(),
        backend: backend.display_url(),
        keeper_pid: me.pid,
        keeper_start: me.start,
        for_pid: watched.pid,
        for_start: watched.start,
        since: crate::lock::unix_now(),
        phase: "held".into(),
        reason: String::new(),
        token: req.holder.token.clone().unwrap_or_default(),
    };
    if let Err(e) = write_state(&path, &state) {
        let _ = backend.release(lease).await;
        return fail(&mut report, &e);
    }
    let doc = serde_json::json!({
        "schema": ACQUIRE_SCHEMA,
        "name": name.as_str(),
        "key": key,
        "slot": (req.slots > 1).then(|| lease.slot()),
        "backend": state.backend,
        "fence": lease.fence(),
        "keeper_pid": me.pid,
        "for_pid": watched.pid,
    });
    if !report.send(&format!("ok {doc}")) {
        // Nobody is waiting for this lock any more.
        let _ = backend.release(lease).await;
        remove_state(&path);
        return Ok(Exit::Success);
    }
    drop(report);
    let lost = hold(&mut backend, lease, &req, &watch, &mut signals).await;
    match lost {
        None => remove_state(&path),
        Some((kind, reason)) => {
            state.phase = kind.into();
            state.reason = reason;
            let _ = write_state(&path, &state);
        }
    }
    Ok(Exit::Success)
}

/// Hold `lease` until the watched process exits or a signal comes (then
/// release it: `None`), or until it is lost (`Some(("lost", why))`), or
/// its release fails (`Some(("release-failed", why))`).
async fn hold(
    backend: &mut AnyBackend,
    mut lease: crate::backend::AnyLease,
    req: &LockRequest,
    watch: &PidWatch,
    signals: &mut Signals,
) -> Option<(&'static str, String)> {
    let every = backend.renew_interval(req);
    let retry = every.map(|e| (e / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    let mut next = every.map(|e| Instant::now() + e);
    loop {
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        let renew_now = tokio::select! {
            () = watch.exited() => false,
            _ = signals.recv_any() => false,
            () = sleep => true,
            () = backend.loss_hint(&mut lease) => true,
        };
        if !renew_now {
            break;
        }
        // A lease past its expiry is lost, whatever a late reply says.
        if lease
            .expires_at()
            .is_some_and(crate::os::BootTime::has_passed)
        {
            return Some((
                "lost",
                "the lease ran out before it could be renewed".into(),
            ));
        }
        let sent = Instant::now();
        match backend.renew(&mut lease).await {
            Ok(Renewal::Held) => next = every.map(|e| sent + e),
            Ok(Renewal::Lost(reason) | Renewal::LostUntil { reason, .. }) => {
                return Some(("lost", reason));
            }
            Err(e) => {
                tracing::warn!(%e, "renewal failed, retrying");
                next = retry.map(|r| Instant::now() + r);
            }
        }
    }
    match tokio::time::timeout(backend.release_timeout(), backend.release(lease)).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(("release-failed", e.to_string())),
        Err(_) => Some(("release-failed", "the release timed out".into())),
    }
}

/// A live keeper of this user that holds `name` for one of this process's
/// ancestors (the job): its pid and token, for `reentry`. A lockrun of the
/// job for that lock must not wait for the job's own keeper.
pub(crate) fn kept_for_this_job(
    name: &LockName,
    config: &BackendConfig,
    raw_backend: Option<&str>,
) -> Option<(u32, String)> {
    let tag = tag_of(config, raw_backend);
    if !may_have_keepers(name, &tag) {
        return None;
    }
    read_states(name, &tag).into_iter().find_map(|(_, s)| {
        let keeper = Process {
            pid: s.keeper_pid,
            start: s.keeper_start,
        };
        let job = Process {
            pid: s.for_pid,
            start: s.for_start,
        };
        (s.phase == "held"
            && !s.token.is_empty()
            && keeper.alive()
            && job.alive()
            && crate::reentry::is_ancestor(s.for_pid))
        .then_some((s.keeper_pid, s.token))
    })
}

/// One line per keeper of this user that lost `name` on this backend and
/// has not been released since, for `status` (stderr).
pub(crate) fn lost_notes(
    name: &LockName,
    config: &BackendConfig,
    raw_backend: Option<&str>,
) -> Vec<String> {
    read_states(name, &tag_of(config, raw_backend))
        .into_iter()
        .filter(|(_, s)| s.phase == "lost")
        .map(|(_, s)| {
            crate::ui::sanitize(&format!(
                "lockrun: note: the keeper of {} for pid {} (lockrun acquire) lost the lock: {}; 'lockrun release {}' clears this",
                s.key, s.for_pid, s.reason, s.name
            ))
        })
        .collect()
}

/// `lockrun release NAME` without `--force`: end this job's keeper of NAME.
pub(crate) async fn release(args: &ReleaseArgs, global: &GlobalArgs) -> Result<Exit> {
    let name = LockName::parse(&args.name)?;
    let config = BackendConfig::parse(global.backend.as_deref())?;
    let tag = backend_tag(&config, global);
    let states = read_states(&name, &tag);
    let ours = |s: &State| match args.for_pid {
        Some(pid) => s.for_pid == pid,
        None => {
            crate::reentry::is_ancestor(s.for_pid)
                && Process::of(s.for_pid).is_some_and(|p| p.start == s.for_start)
        }
    };
    let (mine, others): (Vec<_>, Vec<_>) = states.into_iter().partition(|(_, s)| ours(s));
    if mine.is_empty() {
        let hint = if others.is_empty() {
            String::new()
        } else {
            let pids: Vec<String> = others.iter().map(|(_, s)| s.for_pid.to_string()).collect();
            format!(
                "; keepers of yours hold it for other processes (--for-pid {})",
                pids.join(", ")
            )
        };
        let whose = args.for_pid.map_or_else(
            || "this job (lockrun acquire in an ancestor of this process)".to_owned(),
            |pid| format!("pid {pid}"),
        );
        return Err(Error::NothingToRelease(format!(
            "no lock {name} kept for {whose}; nothing was released{hint} (to break whoever holds it: lockrun release --force {name})"
        )));
    }
    let mut outcome: Result<Exit> = Ok(Exit::Success);
    for (path, state) in mine {
        let keeper = Process {
            pid: state.keeper_pid,
            start: state.keeper_start,
        };
        if keeper.alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(keeper.pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let watch = PidWatch::new(keeper);
            // The keeper's own release has a timeout of its own; this is a
            // bound on top, for a keeper that is stopped or stuck.
            if tokio::time::timeout(Duration::from_secs(30), watch.exited())
                .await
                .is_err()
            {
                outcome = Err(Error::unavailable(format!(
                    "the keeper of {} (pid {}) did not end within 30s",
                    state.key, keeper.pid
                )));
                continue;
            }
        }
        // What the keeper left: nothing (released), or why not.
        let last: Option<State> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        remove_state(&path);
        let Some(last) = last else { continue };
        let line = |what: &str| {
            crate::ui::sanitize(&format!(
                "the keeper of {} {what} at {}: {}",
                last.key, last.backend, last.reason
            ))
        };
        match last.phase.as_str() {
            "lost" => outcome = Err(Error::Lost(line("had lost the lock"))),
            "release-failed" => {
                outcome = Err(Error::unavailable(line("could not release the lock")));
            }
            // Still "held" though the keeper is gone: it was killed. A file
            // lock died with it; a lease runs out by itself.
            _ if !keeper.alive() => {
                outcome = Err(Error::NothingToRelease(format!(
                    "the keeper of {} (pid {}) was gone (killed?); a file lock was freed with it, a lease expires after --ttl; nothing was released",
                    last.key, last.keeper_pid
                )));
            }
            _ => {}
        }
    }
    outcome
}
