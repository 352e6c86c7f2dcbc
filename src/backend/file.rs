//! The embedded default backend: flock(2) on `DIR/NAME.lock`.
//!
//! * flock(1) on the same path and lockrun exclude each other, both ways;
//!   `--shared` is LOCK_SH, so `flock -s` and `lockrun -s` share the lock.
//! * Waiting blocks in the kernel. For one lock file it is lockrun's own
//!   thread, in flock(2), which a signal ends (`signals::unless_woken`): no
//!   thread to start, and no hand-over from a thread once the lock is
//!   granted, which was a wake-up inside every contended critical section.
//!   With slots (or when more than signals may end the wait) it is a helper
//!   thread per slot; cancelling that wait is dropping the channel (the
//!   thread's late lock is released at once) or exiting the process.
//! * Lock files are never unlinked: a waiter may already be blocked on the
//!   inode (the nova `synchronized` lesson). After every acquisition we check
//!   that the path still names the inode we locked, and retry if not.
//! * The fd is close-on-exec (std opens everything `O_CLOEXEC`), so the child
//!   and anything it daemonizes never hold the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::acquire::poll_acquire;
use crate::error::{Error, Result};
use crate::lock::{
    Attempt, Backend, HolderInfo, Inspect, Interrupts, Lease, LockName, LockRequest, Polling,
    Renewal, SlotState, Wait, WaitDisplay, WaitOutcome,
};
use crate::os::BootTime;

/// How often a holder checks that its lock file still names its inode.
///
/// A `stat` every 50 ms, so that a removed or replaced lock file stops the
/// command within about that, and costs nothing measurable. Not inotify: on
/// Linux, closing an inotify instance that had watches waits for an RCU grace
/// period (measured 7–15 ms per run, more than a whole flock(1) run), and
/// lockrun would pay it on every exit.
const INODE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileConfig {
    /// `None`: the per-user default directory.
    pub dir: Option<PathBuf>,
}

pub(crate) struct FileBackend {
    dir: PathBuf,
    waiters: Option<Waiters>,
    /// The directory is shared by a group (setgid or group-writable): lock
    /// files we create must be group-writable too, or the next member of
    /// the group could lock the file but not write its holder record.
    group_shared: bool,
}

pub(crate) struct FileLease {
    locked: LockedFile,
    slot: u32,
    fence: Option<u64>,
}

/// An open, flock(2)ed lock file and the identity of the inode we locked.
struct LockedFile {
    file: File,
    path: PathBuf,
    dev: u64,
    ino: u64,
    writable: bool,
    slot: u32,
}

impl FileLease {
    /// Let the lock's descriptor survive an exec (`--exec`): the command
    /// then holds the lock itself.
    pub(crate) fn keep_across_exec(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.locked.file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own, with integer arguments.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: as above.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Lease for FileLease {
    fn slot(&self) -> u32 {
        self.slot
    }
    fn fence(&self) -> Option<u64> {
        self.fence
    }
    fn expires_at(&self) -> Option<BootTime> {
        None
    }
    fn lock_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.locked.file.as_raw_fd())
    }
}

/// Every place `default_dir` can be, whichever of its bases is usable now.
pub(crate) fn default_dir_candidates() -> [PathBuf; 2] {
    let name = format!("lockrun-{}", crate::os::uid());
    [
        Path::new("/run/lock").join(&name),
        Path::new("/tmp").join(name),
    ]
}

/// The default lock directory. It depends only on the uid, never on
/// variables such as `XDG_RUNTIME_DIR`, `TMPDIR` or `HOME` that cron or
/// systemd may not set, so a cron job, a CI job and an interactive shell of
/// the same user agree. `/run/lock` survives systemd's `PrivateTmp=`.
pub(crate) fn default_dir() -> PathBuf {
    let uid = crate::os::uid();
    let run_lock = Path::new("/run/lock");
    let base = if run_lock.is_dir()
        && nix::unistd::access(
            run_lock,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok()
    {
        run_lock
    } else {
        Path::new("/tmp")
    };
    base.join(format!("lockrun-{uid}"))
}

impl FileBackend {
    pub(crate) fn open(config: &FileConfig) -> Result<Self> {
        let (dir, group_shared) = match &config.dir {
            Some(dir) => {
                ensure_shared_dir(dir)?;
                let group_shared = std::fs::metadata(dir)
                    .is_ok_and(|meta| meta.mode() & (libc::S_ISGID | 0o020) != 0);
                (dir.clone(), group_shared)
            }
            None => {
                let dir = default_dir();
                ensure_private_dir(&dir)?;
                (dir, false)
            }
        };
        Ok(FileBackend {
            dir,
            waiters: None,
            group_shared,
        })
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    /// Fence and holder record, once the lock is ours.
    ///
    /// The fence lives in the holder record of the lock file itself (no second
    /// file to open on the hot path): the previous holder's fence + 1, or the
    /// current time in microseconds if that is larger. So it strictly
    /// increases for a lock file even if the file is deleted and recreated,
    /// and across the slot files of a name as long as the clock does not step
    /// back.
    ///
    /// A shared holder writes no record and gets no fence: the file has room
    /// for one record, several shared holders would overwrite each other's,
    /// and a fence orders writers, which shared holders are not. `status`
    /// names shared holders from the kernel's lock table instead.
    fn finish_acquire(&self, req: &LockRequest, locked: LockedFile) -> Result<FileLease> {
        if req.shared {
            return Ok(FileLease {
                slot: locked.slot,
                locked,
                fence: None,
            });
        }
        let (previous, previous_len) = read_record_len(&locked.file);
        let previous = previous.and_then(|r| r.fence).unwrap_or(0);
        let fence = previous.saturating_add(1).max(unix_micros());
        let mut record = req.holder.clone();
        record.fence = Some(fence);
        // A lock file we may only read (one another user created in a
        // shared directory) has no room for the record that keeps the fence
        // and names the holder: refuse it rather than run without either.
        if !locked.writable {
            return Err(Error::no_permission(format!(
                "lock file {} is read-only for you, so lockrun cannot keep the holder record and LOCKRUN_FENCE in it; make it writable for everyone who uses the lock (e.g. chmod g+w in a group directory), or use a directory of your own",
                locked.path.display()
            )));
        }
        if self.group_shared {
            share_with_group(&locked.file);
        }
        write_record(&locked.file, &record, previous_len)?;
        self.warn_if_other_kind_held(req);
        Ok(FileLease {
            slot: locked.slot,
            locked,
            fence: Some(fence),
        })
    }

    /// A plain lock and a semaphore (`--slots`) of the same NAME are
    /// different files and do not exclude each other: say so when the
    /// other kind is held right now. Costs one failed stat when NAME has
    /// never been used the other way.
    fn warn_if_other_kind_held(&self, req: &LockRequest) {
        let name = &req.name;
        let other: Vec<String> = if req.slots > 1 {
            vec![name.as_str().to_owned()]
        } else if self.lock_path(&name.slot_key(1, 2)).exists() {
            self.keys_of(name, None)
                .unwrap_or_default()
                .into_iter()
                .filter(|key| key.contains('@'))
                .collect()
        } else {
            return;
        };
        let held: Vec<String> = other
            .into_iter()
            .filter(|key| {
                std::fs::symlink_metadata(self.lock_path(key)).is_ok()
                    && self.slot_state(key).is_ok_and(|s| s.held)
            })
            .collect();
        if held.is_empty() {
            return;
        }
        let (ours, theirs) = if req.slots > 1 {
            ("a semaphore (--slots)", "a plain lock")
        } else {
            ("a plain lock", "a semaphore (--slots)")
        };
        tracing::warn!(
            "{name} is also used as {theirs} and {} is held now; {ours} of {name} does not exclude it: use the same --slots everywhere {name} is used",
            held.join(", ")
        );
    }

    fn slot_state(&self, key: &str) -> Result<SlotState> {
        let path = self.lock_path(key);
        let slot = LockName::split_key(key).and_then(|(_, slot)| slot);
        let mut state = SlotState {
            key: key.to_owned(),
            slot,
            held: false,
            holder: None,
            expires_in_ms: None,
            waiters: None,
            needs_manual_release: false,
            queue: Vec::new(),
            shared_by: None,
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(state),
            Err(e) => return Err(io_error("cannot inspect lock file", &path, &e)),
        };
        let kernel = kernel_lock_state(&path, &meta)?;
        state.waiters = kernel.waiters;
        if !kernel.held {
            return Ok(state);
        }
        state.held = true;
        state.shared_by = kernel.shared_by;
        let record = File::open(&path).ok().and_then(|f| read_record(&f));
        state.holder = trusted_holder(record, kernel.pid);
        Ok(state)
    }

    fn keys_of(&self, name: &LockName, slots: Option<u32>) -> Result<Vec<String>> {
        if let Some(slots) = slots {
            return Ok((1..=slots).map(|slot| name.slot_key(slot, slots)).collect());
        }
        let mut keys: Vec<String> = self
            .all_keys()?
            .into_iter()
            .filter(|key| LockName::split_key(key).is_some_and(|(n, _)| &n == name))
            .collect();
        if keys.is_empty() {
            keys.push(name.as_str().to_owned());
        }
        Ok(keys)
    }

    fn all_keys(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| io_error("cannot read lock directory", &self.dir, &e))?;
        let mut keys: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter_map(|file| file.strip_suffix(".lock").map(str::to_owned))
            .filter(|key| LockName::split_key(key).is_some())
            .collect();
        keys.sort();
        Ok(keys)
    }
}

impl Backend for FileBackend {
    type Lease = FileLease;

    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<FileLease> {
        // One lock file, and nothing but signals to end the wait: wait in
        // flock(2) on this thread. Otherwise (slots, or a keeper that also
        // watches a process) on helper threads, through `Polling::wait`.
        if req.slots > 1 {
            return poll_acquire(self, req, wait).await;
        }
        let path = self.lock_path(&req.name.slot_key(1, 1));
        loop {
            match self.try_acquire(req, 1).await? {
                Attempt::Acquired(lease) => return Ok(lease),
                Attempt::Held(holder) => wait.saw(holder),
            }
            wait.check_signals()?;
            wait.give_up_if_over()?;
            // Asked only once the lock is busy: an uncontended run makes
            // no timer and no spare file.
            if !wait.can_block() {
                return poll_acquire(self, req, wait).await;
            }
            if let Some(locked) = wait.until_blocking(|| lock_unless_woken(&path, req.shared))? {
                return self.finish_acquire(req, locked);
            }
            // The deadline came: one last try, then give up.
        }
    }

    fn renew_interval(&self, _req: &LockRequest) -> Option<Duration> {
        Some(INODE_CHECK_INTERVAL)
    }

    async fn renew(&mut self, lease: &mut FileLease) -> Result<Renewal> {
        let locked = &lease.locked;
        Ok(match std::fs::symlink_metadata(&locked.path) {
            Ok(meta) if meta.dev() == locked.dev && meta.ino() == locked.ino => Renewal::Held,
            Ok(_) => Renewal::Lost(format!("lock file {} was replaced", locked.path.display())),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Renewal::Lost(format!("lock file {} was removed", locked.path.display()))
            }
            // Not a verdict on the lock: try again next time.
            Err(e) => return Err(io_error("cannot check lock file", &locked.path, &e)),
        })
    }

    async fn release(&mut self, lease: FileLease) -> Result<()> {
        // Unlocked explicitly, not only by closing: the guardian holds a
        // copy of the descriptor (see `guardian::register`), and the
        // flock belongs to the open file description they share. The file
        // stays, so a waiter blocked on this inode gets the lock and not a
        // dead inode.
        let _ = lease.locked.file.unlock();
        drop(lease);
        Ok(())
    }
}

impl Polling for FileBackend {
    async fn try_acquire(&mut self, req: &LockRequest, slot: u32) -> Result<Attempt<FileLease>> {
        // A waiting thread may have taken a lock just as the wait ended
        // (at the --wait deadline): that lock is ours, not a busy answer.
        if let Some(waiters) = &mut self.waiters
            && let Ok(won) = waiters.results.try_recv()
        {
            self.waiters = None;
            return Ok(Attempt::Acquired(self.finish_acquire(req, won?)?));
        }
        let path = self.lock_path(&req.name.slot_key(slot, req.slots));
        loop {
            let (file, writable) = open_lock_file(&path)?;
            let tried = if req.shared {
                file.try_lock_shared()
            } else {
                file.try_lock()
            };
            match tried {
                Ok(()) => {
                    if let Some(locked) = still_names_inode(file, &path, writable, slot)? {
                        // Wait threads from an earlier round must not park a
                        // second slot in the channel while we hold this one.
                        self.waiters = None;
                        return Ok(Attempt::Acquired(self.finish_acquire(req, locked)?));
                    }
                    // Replaced between open and lock: lock the new file instead.
                }
                Err(TryLockError::WouldBlock) => {
                    // Who holds it, by the same rule as `status`.
                    let kernel_pid = file
                        .metadata()
                        .ok()
                        .and_then(|meta| kernel_lock_state(&path, &meta).ok())
                        .and_then(|kernel| kernel.pid);
                    return Ok(Attempt::Held(trusted_holder(
                        read_record(&file),
                        kernel_pid,
                    )));
                }
                Err(TryLockError::Error(e)) => return Err(io_error("cannot lock", &path, &e)),
            }
        }
    }

    async fn wait(&mut self, req: &LockRequest, _round: u32) -> Result<WaitOutcome<FileLease>> {
        let dir = &self.dir;
        let waiters = self.waiters.get_or_insert_with(|| {
            Waiters::start(
                req.shared,
                (1..=req.slots)
                    .map(|slot| {
                        (
                            slot,
                            dir.join(format!("{}.lock", req.name.slot_key(slot, req.slots))),
                        )
                    })
                    .collect(),
            )
        });
        match waiters.results.recv().await {
            Some(Ok(locked)) => {
                waiters.delivered = Some(locked.slot);
                // Other slots' threads may still win later; closing the
                // channel makes them let go at once.
                self.waiters = None;
                Ok(WaitOutcome::Acquired(self.finish_acquire(req, locked)?))
            }
            Some(Err(e)) => {
                self.waiters = None;
                Err(e)
            }
            None => Err(Error::internal("lock wait threads ended")),
        }
    }
}

impl Inspect for FileBackend {
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>> {
        self.keys_of(name, slots)?
            .iter()
            .map(|key| self.slot_state(key))
            .collect()
    }

    async fn list(&mut self) -> Result<Vec<SlotState>> {
        self.all_keys()?
            .iter()
            .map(|key| self.slot_state(key))
            .collect()
    }

    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>> {
        let held: Vec<SlotState> = self
            .status(name, slots)
            .await?
            .into_iter()
            .filter(|s| s.held)
            .collect();
        if let Some(state) = held.first() {
            let who = state.holder.as_ref().map_or_else(
                || "a live process".to_owned(),
                |h| format!("pid {} on {}", h.pid, h.host),
            );
            return Err(Error::Busy(format!(
                "{} is held by {who}; a file lock is freed by the kernel the moment its holder exits, so stop that process instead",
                state.key
            )));
        }
        Ok(Vec::new())
    }

    fn display_url(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

/// Open (creating) a lock file without following symlinks: a symlink planted
/// at the lock path could make us create or truncate someone else's file.
/// Falls back to read-only (flock works on it) when the file is not ours to write.
fn open_lock_file(path: &Path) -> Result<(File, bool)> {
    let open = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .create(write)
            .mode(0o666)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(path)
    };
    match open(true) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Err(Error::no_permission(format!(
            "lock file {} is a symlink; refusing to follow it (remove it if it is yours)",
            path.display()
        ))),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => match open(false) {
            Ok(file) => Ok((file, false)),
            Err(_) => Err(Error::no_permission(format!(
                "cannot open lock file {}: permission denied; check the directory's permissions or use another --backend file:///DIR",
                path.display()
            ))),
        },
        Err(e) => Err(io_error("cannot open lock file", path, &e)),
    }
}

/// After flock succeeded: does `path` still name the inode we locked? If it
/// was unlinked or replaced meanwhile, our lock protects nothing.
fn still_names_inode(
    file: File,
    path: &Path,
    writable: bool,
    slot: u32,
) -> Result<Option<LockedFile>> {
    let ours = file
        .metadata()
        .map_err(|e| io_error("cannot stat lock file", path, &e))?;
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => Ok(Some(LockedFile {
            file,
            path: path.to_owned(),
            dev: ours.dev(),
            ino: ours.ino(),
            writable,
            slot,
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("cannot stat lock file", path, &e)),
    }
}

/// Threads blocked in flock(2), one per slot, that report the first lock
/// they get. Dropping it cancels the ones still blocked: they are
/// interrupted by a thread-directed signal (flock then fails with EINTR) and
/// give up, so a slot we no longer want is never taken, not even briefly,
/// from a process that is really waiting for it.
struct Waiters {
    results: tokio::sync::mpsc::UnboundedReceiver<Result<LockedFile>>,
    /// Each thread: its slot, and whether it is past waiting (it no longer
    /// needs to be interrupted).
    threads: Vec<(
        u32,
        std::thread::JoinHandle<()>,
        std::sync::Arc<std::sync::atomic::AtomicBool>,
    )>,
    cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The slot whose lock was received.
    delivered: Option<u32>,
}

impl Waiters {
    fn start(shared: bool, paths: Vec<(u32, PathBuf)>) -> Waiters {
        install_wake_handler();
        let (sender, results) = tokio::sync::mpsc::unbounded_channel();
        let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = paths
            .into_iter()
            .map(|(slot, path)| {
                let sender = sender.clone();
                let cancelled = cancelled.clone();
                let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let past_waiting = done.clone();
                let thread = std::thread::spawn(move || {
                    let result = block_until_locked(&path, slot, shared, &cancelled);
                    // Before the send: whoever receives the result finds
                    // the thread marked, and does not interrupt it.
                    past_waiting.store(true, std::sync::atomic::Ordering::SeqCst);
                    // A send to a dropped receiver drops the file, which
                    // releases a lock taken after the wait was abandoned.
                    if let Some(result) = result {
                        let _ = sender.send(result);
                    }
                });
                (slot, thread, done)
            })
            .collect();
        Waiters {
            results,
            threads,
            cancelled,
            delivered: None,
        }
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        use std::os::unix::thread::JoinHandleExt;
        self.cancelled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for (slot, thread, done) in self.threads.drain(..) {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                // The thread that delivered the lock we hold is on its way
                // out and holds nothing: it is left to exit on its own (the
                // handle dropped, so detached), not waited for while the
                // lock is held. The sleep below used to land in every
                // contended critical section (bench/analysis.md, "sixth
                // round"). One that took another slot is past flock(2) and
                // about to hand its lock to the channel, which lets it go
                // as the channel closes: joined, so that slot is free again
                // when this returns.
                if self.delivered != Some(slot) {
                    let _ = thread.join();
                }
                continue;
            }
            // Signalled until it is out: a signal that lands just before
            // the thread enters flock(2) would otherwise be missed. The
            // handle is not joined yet, so its pthread_t stays valid.
            while !thread.is_finished() {
                // std's RawPthread is an integer; musl's pthread_t a pointer.
                #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
                let id = thread.as_pthread_t() as libc::pthread_t;
                // SAFETY: pthread_kill on a thread that has not been joined
                // (its id is valid); the handler does nothing.
                unsafe { libc::pthread_kill(id, wake_signal()) };
                std::thread::sleep(Duration::from_micros(200));
            }
            let _ = thread.join();
        }
    }
}

/// The signal that interrupts a waiting thread's flock(2).
fn wake_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// A handler that does nothing, installed without SA_RESTART: its only
/// effect is that a blocked flock(2) returns EINTR.
fn install_wake_handler() {
    extern "C" fn wake(_: libc::c_int) {}
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with an empty mask and a handler that
        // touches nothing is a valid argument to sigaction.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = wake as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(wake_signal(), &raw const action, std::ptr::null_mut());
        }
    });
}

/// On this thread: open the lock file and block in flock(2) until the lock
/// is ours (`Some`), or until a signal or the wake timer cuts the wait short
/// (`None`; what flock took then is let go at once). `None` also when the
/// file was replaced meanwhile: the caller calls again.
fn lock_unless_woken(path: &Path, shared: bool) -> Result<Option<LockedFile>> {
    use std::os::fd::AsRawFd;
    let operation = if shared { libc::LOCK_SH } else { libc::LOCK_EX };
    let (file, writable) = open_lock_file(path)?;
    let fd = file.as_raw_fd();
    let locked = crate::signals::unless_woken(fd, || {
        // SAFETY: flock on a descriptor `file` owns for the whole call.
        if unsafe { libc::flock(fd, operation) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    });
    match locked {
        // Cut short: `file` may name the spare file now; dropped.
        None => Ok(None),
        Some(Ok(())) => still_names_inode(file, path, writable, 1),
        Some(Err(e)) if e.kind() == ErrorKind::Interrupted => Ok(None),
        Some(Err(e)) => Err(io_error("cannot lock", path, &e)),
    }
}

/// Runs on a helper thread: block in flock(2) until the lock is ours, or
/// until cancelled (`None`).
fn block_until_locked(
    path: &Path,
    slot: u32,
    shared: bool,
    cancelled: &std::sync::atomic::AtomicBool,
) -> Option<Result<LockedFile>> {
    let operation = if shared { libc::LOCK_SH } else { libc::LOCK_EX };
    use std::os::fd::AsRawFd;
    let is_cancelled = || cancelled.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        if is_cancelled() {
            return None;
        }
        let (file, writable) = match open_lock_file(path) {
            Ok(opened) => opened,
            Err(e) => return Some(Err(e)),
        };
        loop {
            // SAFETY: flock on a descriptor we own for the whole call.
            if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Some(Err(io_error("cannot lock", path, &e)));
            }
            if is_cancelled() {
                return None;
            }
        }
        match still_names_inode(file, path, writable, slot) {
            Ok(Some(locked)) => return Some(Ok(locked)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The holder record, in one `pwrite`: the JSON line, padded with spaces
/// over whatever an earlier (longer) record left, so no `ftruncate` is
/// needed and a reader never sees an empty file. Readers trim the padding.
/// Only a file longer than one read buffer (not written by lockrun) is
/// truncated as well.
fn write_record(file: &File, record: &HolderInfo, previous_len: usize) -> Result<()> {
    let mut line = serde_json::to_vec(record).map_err(|e| Error::internal(e.to_string()))?;
    line.push(b'\n');
    if line.len() < previous_len {
        line.resize(previous_len, b' ');
    }
    file.write_all_at(&line, 0)
        .and_then(|()| {
            if previous_len >= RECORD_BUF {
                file.set_len(line.len() as u64)
            } else {
                Ok(())
            }
        })
        .map_err(|e| Error::unavailable(format!("cannot write holder record: {e}")))
}

/// How much of a lock file is read as its holder record.
const RECORD_BUF: usize = 4096;

fn read_record(file: &File) -> Option<HolderInfo> {
    read_record_len(file).0
}

/// The record and how many bytes the file had (up to `RECORD_BUF`).
fn read_record_len(file: &File) -> (Option<HolderInfo>, usize) {
    let mut buf = [0u8; RECORD_BUF];
    let Ok(n) = file.read_at(&mut buf, 0) else {
        return (None, 0);
    };
    (serde_json::from_slice(buf[..n].trim_ascii()).ok(), n)
}

/// Who holds a lock, from the lock file's record and the pid the kernel
/// says holds the flock. The record is only trusted when it names that
/// pid; otherwise it is a previous holder's (dead, or replaced by a
/// flock(1) or another program that writes no record), and the holder is
/// described from the kernel's pid instead. A record naming that pid is
/// still a previous holder's if it was written on another host (a lock
/// directory shared over the network) or before the process with that pid
/// started (the pid was reused). Without a kernel answer (no /proc/locks)
/// the record is all there is.
fn trusted_holder(record: Option<HolderInfo>, kernel_pid: Option<u32>) -> Option<HolderInfo> {
    match (record, kernel_pid) {
        (Some(record), Some(pid))
            if record.pid == pid
                && record.host == hostname()
                && !started_after(pid, record.since) =>
        {
            Some(record)
        }
        (Some(record), None) => Some(record),
        (_, Some(pid)) => Some(HolderInfo {
            host: this_host(),
            pid,
            user: String::new(),
            command: crate::os::process_command(pid).unwrap_or_else(|| "(not lockrun)".into()),
            since: 0,
            fence: None,
            token: None,
        }),
        (None, None) => None,
    }
}

/// Make a lock file of ours readable and writable for the group, as the
/// group directory it is in is meant to be shared (umask 022 would make
/// it 0644). Files of other users are left as they are.
fn share_with_group(file: &File) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = file.metadata() else { return };
    let mode = meta.mode() & 0o7777;
    if meta.uid() == nix::unistd::getuid().as_raw() && mode & 0o060 != 0o060 {
        let _ = file.set_permissions(std::fs::Permissions::from_mode(mode | 0o060));
    }
}

/// Did `pid` start after `since` (Unix seconds)? Then a record naming it
/// was written by an earlier process that had the same pid.
fn started_after(pid: u32, since: u64) -> bool {
    let Some(stat) = i32::try_from(pid).ok().and_then(crate::os::proc_stat) else {
        return false;
    };
    let boot = crate::os::boot_time_unix();
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    match u64::try_from(ticks) {
        // One second of slack for the rounding of both.
        Ok(ticks) if ticks > 0 => boot + stat.start / ticks > since + 1,
        _ => false,
    }
}

/// What the kernel knows about flocks on one inode.
struct KernelLock {
    held: bool,
    /// The pid that took the lock, when the kernel says.
    pid: Option<u32>,
    /// Processes blocked in flock(2) on it; `None` without /proc/locks.
    waiters: Option<u32>,
    /// Held shared (LOCK_SH) by this many holders; `None`: exclusive or free.
    shared_by: Option<u32>,
}

/// Who holds a flock on this inode and how many wait for it, asked of the
/// kernel without touching the lock (`/proc/locks`), so `status` never makes
/// a concurrent `--no-wait` fail.
fn kernel_lock_state(path: &Path, meta: &std::fs::Metadata) -> Result<KernelLock> {
    let mut table = String::with_capacity(16 * 1024);
    let read = std::fs::File::open("/proc/locks")
        .and_then(|mut file| std::io::Read::read_to_string(&mut file, &mut table));
    if read.is_ok() {
        let dev = meta.dev();
        let id = format!(
            "{:02x}:{:02x}:{}",
            libc::major(dev),
            libc::minor(dev),
            meta.ino()
        );
        let mut state = KernelLock {
            held: false,
            pid: None,
            waiters: Some(0),
            shared_by: None,
        };
        // On overlayfs or btrfs subvolumes stat's device may differ from the
        // lock table's; an entry with our inode number on another device is
        // then settled by probing the lock itself.
        let ino_suffix = format!(":{}", meta.ino());
        let mut same_ino_elsewhere = false;
        for line in table.lines() {
            // "1: FLOCK ADVISORY WRITE 1234 fe:00:5678 0 EOF" for the holder,
            // "1: -> FLOCK ADVISORY WRITE 1235 fe:00:5678 0 EOF" per waiter;
            // READ instead of WRITE for shared holders, one line each.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let waiting = fields.get(1) == Some(&"->");
            let rest = if waiting { &fields[2..] } else { &fields[1..] };
            if rest.first() != Some(&"FLOCK") {
                continue;
            }
            if rest.get(4) != Some(&id.as_str()) {
                same_ino_elsewhere |= rest.get(4).is_some_and(|f| f.ends_with(&ino_suffix));
                continue;
            }
            if waiting {
                state.waiters = state.waiters.map(|n| n + 1);
            } else {
                state.held = true;
                // Several shared holders: the pid kept is one of them.
                state.pid = rest.get(3).and_then(|pid| pid.parse().ok());
                if rest.get(2) == Some(&"READ") {
                    state.shared_by = Some(state.shared_by.unwrap_or(0) + 1);
                }
            }
        }
        if state.held || !same_ino_elsewhere {
            return Ok(state);
        }
    }
    // No /proc, or no certain answer from it: probe with a shared lock,
    // dropped at once; if that is granted, an exclusive probe tells free
    // from held shared (the count is then unknown: 1 is the least).
    let file = File::open(path).map_err(|e| io_error("cannot open lock file", path, &e))?;
    let probe = |shared: bool| {
        let tried = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        let held = match tried {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(e)) => return Err(io_error("cannot probe lock", path, &e)),
        };
        let _ = file.unlock();
        Ok(held)
    };
    let held_exclusive = probe(true)?;
    let held_shared = !held_exclusive && probe(false)?;
    Ok(KernelLock {
        held: held_exclusive || held_shared,
        pid: None,
        waiters: None,
        shared_by: held_shared.then_some(1),
    })
}

fn this_host() -> String {
    HolderInfo::for_this_process("").host
}

/// This machine's name as holder records carry it (without the user
/// lookup of [`this_host`]).
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// The default directory: created 0700, and refused if it is a symlink or
/// belongs to someone else (on a shared /tmp anyone could have made it).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error("cannot create lock directory", dir, &e)),
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| io_error("cannot inspect lock directory", dir, &e))?;
    if meta.file_type().is_symlink() {
        return Err(Error::no_permission(format!(
            "lock directory {} is a symlink; refusing it (remove it, or choose a directory with --backend file:///DIR)",
            dir.display()
        )));
    }
    if !meta.is_dir() {
        return Err(Error::no_permission(format!(
            "lock directory {} is not a directory; remove it or choose another with --backend file:///DIR",
            dir.display()
        )));
    }
    let uid = crate::os::uid().as_raw();
    if meta.uid() != uid {
        return Err(Error::no_permission(format!(
            "lock directory {} belongs to uid {}, not to you (uid {uid}); remove it or choose another with --backend file:///DIR",
            dir.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// An explicitly named directory may be shared between users: create it if
/// missing, but do not insist on owning it.
fn ensure_shared_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::usage(format!(
            "lock directory {} is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .map_err(|e| io_error("cannot create lock directory", dir, &e)),
        Err(e) => Err(io_error("cannot use lock directory", dir, &e)),
    }
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    let message = format!(
        "{what} {}: {}",
        path.display(),
        crate::ui::plain_io_message(e)
    );
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            Error::no_permission(format!(
                "{message}; check permissions or choose another directory with --backend file:///DIR"
            ))
        }
        _ => Error::unavailable(message),
    }
}
