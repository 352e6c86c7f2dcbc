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
}

impl HolderInfo {
    /// The record for this process running `command`.
    pub fn for_this_process(command: &str) -> Self {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown-host".into());
        let uid = nix::unistd::getuid();
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
#[derive(Debug, Clone, Serialize)]
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
}

/// What every backend answers. Contention ("held") and failure (`Err`) are
/// different answers and must never be confused.
///
/// `async fn` in a trait is fine here: lockrun runs on a current-thread
/// runtime and only ever uses backends generically, so no `Send` bound is needed.
#[allow(async_fn_in_trait)]
pub(crate) trait Backend {
    type Lease: Lease;

    /// Try once to take slot `slot` (1-based) of the lock.
    async fn try_acquire(&mut self, req: &LockRequest, slot: u32) -> Result<Attempt<Self::Lease>>;

    /// Wait until the lock may be free, efficiently (kernel wait, pub/sub,
    /// backoff with jitter). `round` counts the waits so far, for backoff.
    async fn wait(&mut self, req: &LockRequest, round: u32) -> Result<WaitOutcome<Self::Lease>>;

    /// How often the supervisor must call [`renew`](Self::renew) while the child runs.
    fn renew_interval(&self, req: &LockRequest) -> Option<Duration>;

    /// Extend the lease / check the lock is still ours.
    async fn renew(&mut self, lease: &mut Self::Lease) -> Result<Renewal>;

    /// Resolves when something happened that may mean the lock is lost (a
    /// lock file removed or replaced), so that the supervisor renews at once
    /// instead of at the next interval. Backends without such events never
    /// resolve.
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

    /// The state of every slot of `name` (`slots` when known, else discovered).
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>>;

    /// Every lock the backend knows about.
    async fn list(&mut self) -> Result<Vec<SlotState>>;

    /// Break the lock whatever its owner; returns what was removed.
    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>>;

    /// The backend URL with secrets removed, for the child and for output.
    fn display_url(&self) -> String;

    /// Our place in the lock's queue after the last try (1 = holder), for
    /// backends that queue waiters in order (etcd).
    fn queue_position(&self) -> Option<u32> {
        None
    }
}

/// What may interrupt a wait: lockrun's signal handlers, or a test's script.
#[allow(async_fn_in_trait)]
pub(crate) trait Interrupts {
    /// The next signal meant to end the wait (its number).
    async fn recv(&mut self) -> i32;
    /// A signal that already arrived, without waiting.
    fn pending(&mut self) -> Option<i32>;
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

/// Take one of the request's slots, waiting per `policy`. A signal while
/// waiting aborts the wait (the wait futures are dropped; nothing stays
/// registered in the backend) and is reported as `Error::Interrupted`.
pub(crate) async fn acquire<B: Backend>(
    backend: &mut B,
    req: &LockRequest,
    policy: WaitPolicy,
    signals: &mut impl Interrupts,
    indicator: &mut impl WaitDisplay,
) -> Result<B::Lease> {
    let started = Instant::now();
    let mut round = 0;
    loop {
        let mut holder = None;
        for slot in 1..=req.slots {
            match backend.try_acquire(req, slot).await? {
                Attempt::Acquired(lease) => {
                    indicator.clear();
                    return Ok(lease);
                }
                Attempt::Held(info) => holder = holder.or(info),
            }
            // A signal that arrived between tries still aborts promptly.
            if let Some(signal) = signals.pending() {
                indicator.clear();
                return Err(Error::interrupted(signal));
            }
        }
        let deadline = match policy {
            WaitPolicy::NoWait => return Err(busy(req, holder.as_ref(), None)),
            WaitPolicy::Until(deadline) if Instant::now() >= deadline => {
                indicator.clear();
                return Err(busy(req, holder.as_ref(), Some(started.elapsed())));
            }
            WaitPolicy::Until(deadline) => Some(deadline),
            WaitPolicy::Forever => None,
        };
        if round == 0 {
            tracing::info!(name = %req.name, holder = ?holder, "lock busy, waiting");
        }
        let position = backend.queue_position();
        indicator.show(&req.name, holder.as_ref(), position, started);
        let outcome = {
            let wait = backend.wait(req, round);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    outcome = &mut wait => break Some(outcome?),
                    () = sleep_until_opt(deadline) => break None,
                    signal = signals.recv() => {
                        indicator.clear();
                        return Err(Error::interrupted(signal));
                    }
                    () = sleep_opt(indicator.tick()) => {
                        indicator.show(&req.name, holder.as_ref(), position, started);
                    }
                }
            }
        };
        match outcome {
            Some(WaitOutcome::Acquired(lease)) => {
                indicator.clear();
                return Ok(lease);
            }
            Some(WaitOutcome::Retry) => round += 1,
            None => {
                // One last try: the lock may have come free just at the deadline.
                round += 1;
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

/// Capped exponential backoff with full jitter, for backends that can only
/// poll: the first retry comes well under a second.
pub(crate) fn backoff_delay(round: u32, first: Duration, cap: Duration) -> Duration {
    let exp = first.saturating_mul(1u32 << round.min(16));
    let ceiling = exp.min(cap).max(Duration::from_millis(1));
    let nanos = rand::random_range(0..=u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX));
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The in-memory backend for the acquire loop: slots held by others,
    /// freed after a number of waits; waits in flight are counted, so a
    /// test sees that an abandoned wait leaves nothing registered.
    #[derive(Default)]
    struct Mem {
        held: Vec<bool>,
        /// The `n`th wait frees `slot` and returns.
        free_on_wait: Option<(u32, u32)>,
        down: bool,
        waits: u32,
        registered: std::rc::Rc<std::cell::Cell<u32>>,
    }

    struct MemLease(u32);

    impl Lease for MemLease {
        fn slot(&self) -> u32 {
            self.0
        }
        fn fence(&self) -> Option<u64> {
            None
        }
        fn expires_at(&self) -> Option<BootTime> {
            None
        }
    }

    struct Registered(std::rc::Rc<std::cell::Cell<u32>>);

    impl Drop for Registered {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    impl Backend for Mem {
        type Lease = MemLease;

        async fn try_acquire(
            &mut self,
            _req: &LockRequest,
            slot: u32,
        ) -> Result<Attempt<MemLease>> {
            if self.down {
                return Err(Error::unavailable("the test backend is down"));
            }
            let held = &mut self.held[slot as usize - 1];
            if *held {
                let holder = HolderInfo {
                    host: "elsewhere".into(),
                    pid: 7,
                    command: "make".into(),
                    ..HolderInfo::default()
                };
                return Ok(Attempt::Held(Some(holder)));
            }
            *held = true;
            Ok(Attempt::Acquired(MemLease(slot)))
        }

        async fn wait(&mut self, _req: &LockRequest, _round: u32) -> Result<WaitOutcome<MemLease>> {
            self.waits += 1;
            self.registered.set(self.registered.get() + 1);
            let _registered = Registered(self.registered.clone());
            match self.free_on_wait {
                Some((n, slot)) if self.waits >= n => {
                    self.held[slot as usize - 1] = false;
                    Ok(WaitOutcome::Retry)
                }
                _ => std::future::pending().await,
            }
        }

        fn renew_interval(&self, _req: &LockRequest) -> Option<Duration> {
            None
        }
        async fn renew(&mut self, _lease: &mut MemLease) -> Result<Renewal> {
            Ok(Renewal::Held)
        }
        async fn release(&mut self, lease: MemLease) -> Result<()> {
            self.held[lease.0 as usize - 1] = false;
            Ok(())
        }
        async fn status(&mut self, _: &LockName, _: Option<u32>) -> Result<Vec<SlotState>> {
            Ok(Vec::new())
        }
        async fn list(&mut self) -> Result<Vec<SlotState>> {
            Ok(Vec::new())
        }
        async fn force_release(&mut self, _: &LockName, _: Option<u32>) -> Result<Vec<SlotState>> {
            Ok(Vec::new())
        }
        fn display_url(&self) -> String {
            "mem:".into()
        }
    }

    /// A signal that arrives `after` the wait starts, or never.
    struct Scripted {
        after: Option<Duration>,
        signal: i32,
    }

    impl Interrupts for Scripted {
        async fn recv(&mut self) -> i32 {
            match self.after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
            self.signal
        }
        fn pending(&mut self) -> Option<i32> {
            None
        }
    }

    fn no_signal() -> Scripted {
        Scripted {
            after: None,
            signal: 0,
        }
    }

    #[derive(Default)]
    struct Shown {
        shows: u32,
        cleared: bool,
    }

    impl WaitDisplay for Shown {
        fn tick(&self) -> Option<Duration> {
            None
        }
        fn show(&mut self, _: &LockName, _: Option<&HolderInfo>, _: Option<u32>, _: Instant) {
            self.shows += 1;
            self.cleared = false;
        }
        fn clear(&mut self) {
            self.cleared = true;
        }
    }

    fn request(slots: u32) -> LockRequest {
        LockRequest {
            name: LockName::parse(OsStr::new("mem")).unwrap(),
            slots,
            ttl: Duration::from_secs(30),
            holder: HolderInfo::default(),
        }
    }

    fn mem(held: &[bool]) -> Mem {
        Mem {
            held: held.to_vec(),
            ..Mem::default()
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn busy_then_free_is_acquired_after_the_wait() {
        let mut backend = mem(&[true]);
        backend.free_on_wait = Some((1, 1));
        let mut shown = Shown::default();
        let lease = block_on(acquire(
            &mut backend,
            &request(1),
            WaitPolicy::Forever,
            &mut no_signal(),
            &mut shown,
        ))
        .unwrap();
        assert_eq!(lease.slot(), 1);
        assert_eq!(backend.waits, 1);
        assert!(
            shown.shows >= 1 && shown.cleared,
            "the line is shown, then cleared"
        );
        assert_eq!(backend.registered.get(), 0);
    }

    #[test]
    fn no_wait_on_a_busy_lock_is_busy_and_names_the_holder() {
        let mut backend = mem(&[true]);
        let result = block_on(acquire(
            &mut backend,
            &request(1),
            WaitPolicy::NoWait,
            &mut no_signal(),
            &mut Shown::default(),
        ));
        match result {
            Err(Error::Busy(message)) => {
                assert!(
                    message.contains("held by elsewhere pid 7 (make)"),
                    "{message}"
                );
            }
            _ => panic!("expected busy"),
        }
        assert_eq!(backend.waits, 0);
    }

    #[test]
    fn the_deadline_ends_the_wait_as_busy_and_leaves_nothing_registered() {
        let mut backend = mem(&[true]);
        let started = Instant::now();
        let result = block_on(acquire(
            &mut backend,
            &request(1),
            WaitPolicy::Until(started + Duration::from_millis(50)),
            &mut no_signal(),
            &mut Shown::default(),
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        match result {
            Err(Error::Busy(message)) => {
                assert!(message.contains("gave up after waiting"), "{message}");
            }
            _ => panic!("expected busy"),
        }
        assert_eq!(backend.registered.get(), 0, "the abandoned wait is dropped");
    }

    #[test]
    fn a_signal_cancels_the_wait_and_leaves_nothing_registered() {
        let mut backend = mem(&[true]);
        let mut shown = Shown::default();
        let result = block_on(acquire(
            &mut backend,
            &request(1),
            WaitPolicy::Forever,
            &mut Scripted {
                after: Some(Duration::from_millis(20)),
                signal: 15,
            },
            &mut shown,
        ));
        assert!(matches!(result, Err(Error::Interrupted { signal: 15, .. })));
        assert_eq!(backend.registered.get(), 0);
        assert!(shown.cleared);
    }

    #[test]
    fn any_free_slot_is_taken_and_all_busy_slots_wait() {
        let mut backend = mem(&[true, true, false]);
        let lease = block_on(acquire(
            &mut backend,
            &request(3),
            WaitPolicy::NoWait,
            &mut no_signal(),
            &mut Shown::default(),
        ))
        .unwrap();
        assert_eq!(lease.slot(), 3);
        let mut full = mem(&[true, true]);
        full.free_on_wait = Some((1, 2));
        let lease = block_on(acquire(
            &mut full,
            &request(2),
            WaitPolicy::Forever,
            &mut no_signal(),
            &mut Shown::default(),
        ))
        .unwrap();
        assert_eq!(lease.slot(), 2);
    }

    #[test]
    fn a_backend_error_is_an_error_never_busy() {
        let mut backend = mem(&[false]);
        backend.down = true;
        let result = block_on(acquire(
            &mut backend,
            &request(1),
            WaitPolicy::Forever,
            &mut no_signal(),
            &mut Shown::default(),
        ));
        assert!(matches!(result, Err(Error::Unavailable(_))));
        assert_eq!(backend.waits, 0, "an error is not waited out as contention");
    }

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
    fn backoff_is_capped_and_jittered() {
        let cap = Duration::from_secs(5);
        for round in 0..40 {
            assert!(backoff_delay(round, Duration::from_millis(100), cap) <= cap);
        }
        assert!(backoff_delay(0, Duration::from_millis(100), cap) <= Duration::from_millis(100));
    }

    #[test]
    fn durations_are_compact() {
        assert_eq!(compact_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(compact_duration(Duration::from_secs(5)), "5s");
        assert_eq!(compact_duration(Duration::from_secs(3720)), "1h02m");
    }
}
