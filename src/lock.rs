//! The backend abstraction and everything that sits on top of any backend:
//! lock names, holder records, slots (semaphores) and the acquire loop.

use std::ffi::OsStr;
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::os::BootTime;

pub(crate) const MAX_NAME_LEN: usize = 200;

/// A validated lock name: 1–200 bytes of `[A-Za-z0-9._-]`, not starting with `.`.
/// The same name means the same lock on every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockName(String);

impl LockName {
    pub(crate) fn parse(raw: &OsStr) -> Result<Self> {
        let Some(text) = raw.to_str() else {
            return Err(Error::usage(
                "invalid lock name: not valid UTF-8; use only A-Z a-z 0-9 . _ -",
            ));
        };
        if text.is_empty() {
            return Err(Error::usage(
                "invalid lock name: empty; give a NAME such as 'nightly-backup'",
            ));
        }
        if text.len() > MAX_NAME_LEN {
            return Err(Error::usage(format!(
                "invalid lock name: {} bytes long, the limit is {MAX_NAME_LEN}; use a shorter NAME",
                text.len()
            )));
        }
        if text.starts_with('.') {
            return Err(Error::usage(format!(
                "invalid lock name {text:?}: must not start with '.'; use only A-Z a-z 0-9 . _ -, e.g. 'nightly-backup'"
            )));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(Error::usage(format!(
                "invalid lock name {text:?}: character {bad:?} not allowed; use only A-Z a-z 0-9 . _ -"
            )));
        }
        Ok(LockName(text.to_owned()))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of slot `slot` (1-based) of this name when `slots` holders are allowed.
    /// A plain lock (one slot) is the name itself; slot keys contain `@`, which no
    /// valid name can, so they never collide with another name's lock.
    pub(crate) fn slot_key(&self, slot: u32, slots: u32) -> String {
        if slots <= 1 {
            self.0.clone()
        } else {
            format!("{}@{slot}", self.0)
        }
    }

    /// Inverse of [`slot_key`]: which name and slot a key belongs to.
    pub(crate) fn split_key(key: &str) -> Option<(LockName, Option<u32>)> {
        match key.split_once('@') {
            Some((name, slot)) => {
                let slot = slot.parse().ok()?;
                Some((LockName::parse(OsStr::new(name)).ok()?, Some(slot)))
            }
            None => Some((LockName::parse(OsStr::new(key)).ok()?, None)),
        }
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who holds (or held) a lock. Written by the holder when it acquires; read
/// by `status`, `list` and by waiters to say who they are waiting for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    pub host: String,
    pub pid: u32,
    pub user: String,
    pub command: String,
    /// Unix time (seconds) when the holder acquired the lock.
    pub since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    /// This acquisition's re-entry token (see `reentry`): the holder's
    /// command carries it in `LOCKRUN_HELD`, so a nested lockrun can prove
    /// that an ancestor holds this very lock. It grants nothing else (it
    /// is not the backend's lease token), and `status` never prints it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl HolderInfo {
    /// The record for this process running `command`.
    pub fn for_this_process(command: &str) -> Self {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".into());
        let uid = crate::os::uid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        HolderInfo {
            host,
            pid: std::process::id(),
            user,
            command: truncate_command(command),
            since: unix_now(),
            fence: None,
            token: None,
        }
    }

    /// How long the holder has held the lock, by the wall clock.
    pub(crate) fn held_for(&self) -> Duration {
        Duration::from_secs(unix_now().saturating_sub(self.since))
    }

    /// "HOST pid N (CMD) for 3m12s"
    pub(crate) fn describe(&self) -> String {
        let mut text = format!("{} pid {} ({})", self.host, self.pid, self.command);
        if self.since > 0 {
            text.push_str(" for ");
            text.push_str(&compact_duration(self.held_for()));
        }
        text
    }
}

const MAX_COMMAND_LEN: usize = 256;

fn truncate_command(command: &str) -> String {
    if command.len() <= MAX_COMMAND_LEN {
        return command.to_owned();
    }
    let mut end = MAX_COMMAND_LEN;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &command[..end])
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `3m12s`, `1h2m`, `45s`: short enough for a status line.
pub(crate) fn compact_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}

/// Render a Unix time as RFC 3339 (UTC), for status output.
pub(crate) fn rfc3339(unix_secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_secs)).to_string()
}

/// What a caller wants to lock.
#[derive(Debug, Clone)]
pub(crate) struct LockRequest {
    pub(crate) name: LockName,
    /// Number of holders allowed at once (1 = plain mutex).
    pub(crate) slots: u32,
    /// Lease length for backends with leases.
    pub(crate) ttl: Duration,
    /// A shared (reader) lock: any number of shared holders at once, or
    /// one exclusive holder (`--shared`, as `flock -s`).
    pub(crate) shared: bool,
    /// Our own record, stored with the lock.
    pub(crate) holder: HolderInfo,
}

/// Outcome of one try at one slot.
pub(crate) enum Attempt<L> {
    Acquired(L),
    /// Somebody else has it; who, when the backend can tell.
    Held(Option<HolderInfo>),
}

/// Outcome of waiting until a lock may be free.
pub(crate) enum WaitOutcome<L> {
    /// The backend took the lock for us while waiting (the file backend
    /// blocks in the kernel and wakes up holding it).
    Acquired(L),
    /// It may be free now: try again.
    Retry,
}

/// Outcome of a renewal.
pub(crate) enum Renewal {
    /// Still ours; the lease was extended (or needs no extension).
    Held,
    /// No longer ours, and another holder may be granted the lock at once:
    /// the reason, for the message.
    Lost(String),
    /// No longer ours, but nobody can be granted the lock before
    /// `others_from` (a restarted Redis refuses grants for a while): the
    /// command may have until then to stop.
    LostUntil {
        reason: String,
        others_from: BootTime,
    },
}

/// One slot of a lock as `status` and `list` see it.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SlotState {
    pub(crate) key: String,
    pub(crate) slot: Option<u32>,
    pub(crate) held: bool,
    /// The holder's record; `None` when free or when the backend cannot tell.
    pub(crate) holder: Option<HolderInfo>,
    /// Remaining lease time in milliseconds, for backends with leases.
    pub(crate) expires_in_ms: Option<u64>,
    /// Processes blocked waiting for this slot, where the backend can tell
    /// (file: counted by the kernel, flock(1) waiters included).
    pub(crate) waiters: Option<u32>,
    /// True when the backend cannot free this lock by itself if the holder
    /// dies (service-alias locks): a stale lock needs `release --force`.
    pub(crate) needs_manual_release: bool,
    /// Who waits for this slot, first in line first, where the backend keeps
    /// a queue (etcd); empty otherwise.
    pub(crate) queue: Vec<QueueEntry>,
    /// `Some(n)`: held shared (`--shared`, `flock -s`) by `n` holders;
    /// `holder` is then one of them. `None`: free, or held exclusively.
    pub(crate) shared_by: Option<u32>,
}

/// One waiter in a lock's queue.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct QueueEntry {
    /// The backend's key for this waiter (etcd: `NAME/<lease id>`).
    pub(crate) key: String,
    /// Its place in the backend's order (etcd: the key's create revision).
    pub(crate) revision: u64,
    /// Its record; `None` for waiters that store none (etcdctl lock).
    pub(crate) holder: Option<HolderInfo>,
}

pub(crate) trait Lease {
    /// 1-based slot number when `--slots` > 1.
    fn slot(&self) -> u32;
    /// Fencing token, where the backend provides one.
    fn fence(&self) -> Option<u64>;
    /// The instant, on the suspend-aware clock, after which the lease may
    /// have expired on the server (send time of the last successful renewal
    /// + ttl). `None` for locks without a lease.
    fn expires_at(&self) -> Option<BootTime>;
    /// Variables for the child that only this backend has (etcd: `LOCKRUN_ETCD_KEY`).
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The descriptor that holds the lock, where a descriptor is the lock
    /// (flock): the guardian keeps a copy, so that the lock outlives a
    /// SIGKILLed lockrun until the command is dead.
    fn lock_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// The hot path every backend provides: take the lock, hold it, give it
/// back. Contention ("held") and failure (`Err`) are different answers and
/// must never be confused. See docs/DESIGN.md, "The backend contract", for
/// how each engine maps onto it.
///
/// `async fn` in a trait is fine here: lockrun runs on a current-thread
/// runtime and only ever uses backends generically, so no `Send` bound is needed.
#[allow(async_fn_in_trait)]
pub(crate) trait Backend {
    type Lease: Lease;

    /// Take one of `req.slots` slots, as one operation that `wait` can
    /// cancel: the backend waits only through `wait` ([`Wait::until`]),
    /// which ends the wait with an error on a signal, at the `--wait`
    /// deadline or at once for `--no-wait`; the backend then removes whatever
    /// it registered (a queue key) before it returns the error, so nothing
    /// is left behind. Requests themselves are never cut off half-way.
    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<Self::Lease>;

    /// How often the supervisor renews the lease (or checks the lock is
    /// still ours) while the command runs; `None`: never.
    fn renew_interval(&self, req: &LockRequest) -> Option<Duration>;

    /// Extend the lease / check the lock is still ours.
    async fn renew(&mut self, lease: &mut Self::Lease) -> Result<Renewal>;

    /// The lease's loss as an event: resolves when something happened that
    /// may mean the lock is lost (a connection dropped, a watch fired), so
    /// that the supervisor renews at once instead of at the next interval.
    /// Backends without such events never resolve.
    async fn loss_hint(&mut self, _lease: &mut Self::Lease) {
        std::future::pending::<()>().await;
    }

    /// Release, only if still ours.
    async fn release(&mut self, lease: Self::Lease) -> Result<()>;

    /// How long a release may take, retries included, before lockrun gives
    /// up on it. Backends whose locks never expire need the whole budget.
    fn release_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
}

/// The read-only and administrative side, off the hot path: `status`,
/// `list`, `release --force`.
#[allow(async_fn_in_trait)]
pub(crate) trait Inspect {
    /// The state of every slot of `name` (`slots` when known, else discovered).
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>>;

    /// Every lock the backend knows about.
    async fn list(&mut self) -> Result<Vec<SlotState>>;

    /// Something `status` should say about the backend as a whole: why a
    /// lock that shows free is not granted yet (a restarted Redis).
    async fn note(&mut self) -> Option<String> {
        None
    }

    /// Break the lock whatever its owner; returns what was removed.
    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>>;

    /// The backend URL with secrets removed, for the child and for output.
    fn display_url(&self) -> String;
}

/// For backends whose engine can only be asked "take slot k now?" and
/// "tell me when it may be free": the generic [`poll_acquire`] turns these
/// into [`Backend::acquire`]. Slots are then keys of their own (`NAME@k`),
/// the fallback for engines without a semaphore of their own.
#[allow(async_fn_in_trait)]
pub(crate) trait Polling: Backend {
    /// Try once to take slot `slot` (1-based) of the lock.
    async fn try_acquire(&mut self, req: &LockRequest, slot: u32) -> Result<Attempt<Self::Lease>>;

    /// Wait until the lock may be free, efficiently. `round` counts the
    /// waits so far, for backoff. A backend that takes the lock while it
    /// waits (the file backend blocks in flock) returns it.
    async fn wait(&mut self, req: &LockRequest, round: u32) -> Result<WaitOutcome<Self::Lease>>;

    /// Our place in the lock's queue after the last try (1 = holder), for
    /// backends that queue waiters in order (etcd).
    fn queue_position(&self) -> Option<u32> {
        None
    }

    /// Why the last round granted nothing when no holder was seen (a
    /// restarted Redis grants nothing for a while), for the busy message.
    fn busy_reason(&self) -> Option<String> {
        None
    }
}

/// A waiter's side of [`Backend::acquire`]: how long it may wait, what
/// interrupts it, where the waiting line goes, and who it saw holding the
/// lock (for that line and for the busy message).
pub(crate) struct Wait<'a, I, D> {
    req: &'a LockRequest,
    policy: WaitPolicy,
    started: Instant,
    holder: Option<HolderInfo>,
    /// Our place in the backend's queue (1 = holder), where it keeps one.
    position: Option<u32>,
    /// Why nothing was granted although nobody holds the lock.
    reason: Option<String>,
    signals: &'a mut I,
    display: &'a mut D,
    logged: bool,
}

impl<'a, I: Interrupts, D: WaitDisplay> Wait<'a, I, D> {
    pub(crate) fn new(
        req: &'a LockRequest,
        policy: WaitPolicy,
        signals: &'a mut I,
        display: &'a mut D,
    ) -> Self {
        Wait {
            req,
            policy,
            started: Instant::now(),
            holder: None,
            position: None,
            reason: None,
            signals,
            display,
            logged: false,
        }
    }

    /// Who holds the lock, as the backend learnt it.
    pub(crate) fn saw(&mut self, holder: Option<HolderInfo>) {
        if holder.is_some() {
            self.holder = holder;
        }
    }

    /// Why the backend granted nothing although nobody holds the lock.
    pub(crate) fn because(&mut self, reason: Option<String>) {
        self.reason = reason;
    }

    /// Our place in the queue, where the backend keeps one (etcd).
    pub(crate) fn at_position(&mut self, position: Option<u32>) {
        self.position = position;
    }

    /// A signal that already arrived ends the acquisition.
    pub(crate) fn check_signals(&mut self) -> Result<()> {
        match self.signals.pending() {
            Some(signal) => {
                self.display.clear();
                Err(Error::interrupted(signal))
            }
            None => Ok(()),
        }
    }

    /// The lock is busy: give up now if we may not wait (`--no-wait`) or
    /// may not wait any longer (`--wait` ran out), as busy.
    pub(crate) fn give_up_if_over(&mut self) -> Result<()> {
        match self.policy {
            WaitPolicy::NoWait => Err(self.busy(None)),
            WaitPolicy::Until(deadline) if Instant::now() >= deadline => {
                self.display.clear();
                Err(self.busy(Some(self.started.elapsed())))
            }
            _ => Ok(()),
        }
    }

    /// How much longer `--wait` lets us wait (`None`: no limit), for a
    /// backend whose server ends its own wait at the deadline.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        match self.policy {
            WaitPolicy::Until(deadline) => Some(deadline.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    fn busy(&self, waited: Option<Duration>) -> Error {
        match &self.reason {
            // Nobody holds it, the backend just grants nothing yet: say so,
            // not "held (holder unknown)".
            Some(reason) if self.holder.is_none() => {
                let after = waited.map_or_else(
                    || "; use --wait DURATION to wait for it".to_owned(),
                    |w| format!("; gave up after waiting {}", compact_duration(w)),
                );
                Error::Busy(format!(
                    "{} is not granted yet: {reason}{after}",
                    self.req.name
                ))
            }
            _ => busy(self.req, self.holder.as_ref(), waited),
        }
    }

    /// Wait for `waiting` (the backend's efficient wait), showing the
    /// waiting line: its output, or `None` when the `--wait` deadline came
    /// first (the caller tries once more, then gives up). A signal ends it
    /// with `Error::Interrupted`; `waiting` is then dropped, so it must not
    /// hold anything a drop would leave behind.
    pub(crate) async fn until<T>(
        &mut self,
        waiting: impl std::future::Future<Output = Result<T>>,
    ) -> Result<Option<T>> {
        self.announce();
        let deadline = self.deadline();
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                outcome = &mut waiting => return outcome.map(Some),
                () = sleep_until_opt(deadline) => return Ok(None),
                signal = self.signals.recv() => {
                    self.display.clear();
                    return Err(Error::interrupted(signal));
                }
                () = sleep_opt(self.display.tick()) => {
                    self.display.show(&self.req.name, self.holder.as_ref(), self.position, self.started);
                }
            }
        }
    }
}

impl<I: Interrupts, D: WaitDisplay> Wait<'_, I, D> {
    /// May the backend wait by blocking this thread ([`Wait::until_blocking`])?
    pub(crate) fn can_block(&mut self) -> bool {
        self.signals.prepare_blocking_wait()
    }

    /// [`Wait::until`] for a backend whose wait is one system call that
    /// blocks this thread and that lockrun's signal handlers end
    /// ([`crate::signals::unless_woken`]): the file backend's flock(2),
    /// which then needs no helper thread, and the lock, once granted, no
    /// hand-over from one thread to another (bench/analysis.md, "eighth
    /// round"). `block` waits once: `Some` when it got what it waited for,
    /// `None` when it was cut short (a signal, the deadline, the waiting
    /// line being due) and may be called again.
    pub(crate) fn until_blocking<T>(
        &mut self,
        mut block: impl FnMut() -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        self.announce();
        let deadline = self.deadline();
        let mut show_at = self.display.tick().map(|tick| Instant::now() + tick);
        let outcome = loop {
            self.signals.wake_at(match (deadline, show_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            });
            match block() {
                Ok(None) => {}
                done => break done,
            }
            if let Some(signal) = self.signals.pending() {
                self.display.clear();
                break Err(Error::interrupted(signal));
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                break Ok(None);
            }
            if show_at.is_some_and(|at| now >= at) {
                self.display.show(
                    &self.req.name,
                    self.holder.as_ref(),
                    self.position,
                    self.started,
                );
                show_at = self.display.tick().map(|tick| now + tick);
            }
        };
        // A timer left armed would interrupt whatever comes next.
        self.signals.wake_at(None);
        outcome
    }

    /// The first time a wait starts: the log line, then the waiting line.
    fn announce(&mut self) {
        if !self.logged {
            self.logged = true;
            // Display, not Debug: a log shows "HOST pid N (CMD) for 3m12s",
            // never `Some(HolderInfo { … })`.
            let holder = self
                .holder
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), HolderInfo::describe);
            tracing::info!(name = %self.req.name, %holder, "lock busy, waiting");
        }
        self.display.show(
            &self.req.name,
            self.holder.as_ref(),
            self.position,
            self.started,
        );
    }

    fn deadline(&self) -> Option<Instant> {
        match self.policy {
            WaitPolicy::Until(deadline) => Some(deadline),
            _ => None,
        }
    }
}

/// What may interrupt a wait: lockrun's signal handlers, or a test's script.
#[allow(async_fn_in_trait)]
pub(crate) trait Interrupts {
    /// The next signal meant to end the wait (its number).
    async fn recv(&mut self) -> i32;
    /// A signal that already arrived, without waiting.
    fn pending(&mut self) -> Option<i32>;
    /// Can a wait that blocks this thread be ended by what interrupts it?
    /// Only where everything that does comes as a signal whose handler ends
    /// such a wait ([`crate::signals::unless_woken`]), and the timer for the
    /// deadline could be made; then a backend may wait that way
    /// ([`Wait::until_blocking`]).
    fn prepare_blocking_wait(&mut self) -> bool {
        false
    }
    /// End a blocked wait at `at` (`None`: disarm).
    fn wake_at(&mut self, _at: Option<Instant>) {}
}

/// Where a wait is shown to a person (the terminal line), or nowhere.
pub(crate) trait WaitDisplay {
    /// How often `show` wants to be called again; `None`: never.
    fn tick(&self) -> Option<Duration>;
    /// `position`: our place in the queue, where the backend keeps one.
    fn show(
        &mut self,
        name: &LockName,
        holder: Option<&HolderInfo>,
        position: Option<u32>,
        waiting_since: Instant,
    );
    fn clear(&mut self);
}

/// How long to wait for a busy lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WaitPolicy {
    NoWait,
    Until(Instant),
    Forever,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

fn busy(req: &LockRequest, holder: Option<&HolderInfo>, waited: Option<Duration>) -> Error {
    let what = if req.slots > 1 {
        format!("all {} slots of {} are", req.slots, req.name)
    } else {
        format!("{} is", req.name)
    };
    let by = holder.map_or_else(
        || " (holder unknown)".to_owned(),
        |h| format!(" by {}", h.describe()),
    );
    let after = waited.map_or_else(
        || "; use --wait DURATION to wait for it".to_owned(),
        |w| format!("; gave up after waiting {}", compact_duration(w)),
    );
    Error::Busy(format!("{what} held{by}{after}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "MUTEX", "nightly-db_migration.v2", &"x".repeat(200)] {
            assert!(LockName::parse(OsStr::new(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "a\0b",
            "a@1",
            &"x".repeat(201),
        ] {
            assert!(LockName::parse(OsStr::new(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn slot_keys_round_trip_and_never_collide_with_names() {
        let name = LockName::parse(OsStr::new("build")).unwrap();
        assert_eq!(name.slot_key(1, 1), "build");
        assert_eq!(name.slot_key(2, 3), "build@2");
        assert!(LockName::parse(OsStr::new("build@2")).is_err());
        let (n, slot) = LockName::split_key("build@2").unwrap();
        assert_eq!((n.as_str(), slot), ("build", Some(2)));
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(compact_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(compact_duration(Duration::from_secs(5)), "5s");
        assert_eq!(compact_duration(Duration::from_secs(3720)), "1h02m");
    }
}
