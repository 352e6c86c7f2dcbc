//! The signals lockrun forwards to its child, as one stream. Handlers are
//! installed once at start-up, before waiting for the lock, so that a signal
//! during the wait aborts it cleanly instead of killing lockrun mid-request.
//!
//! Job control matters because the child lives in its own process group: a
//! terminal's Ctrl-Z stops only lockrun. While there is no child, SIGTSTP
//! simply stops lockrun here; while a child runs, the supervisor decides
//! (see `supervise::handle_signal`).

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::Signal;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};

/// Forwarded one-to-one to the child's process group.
pub(crate) const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Job control and terminal signals: never a reason to give up waiting.
const JOB_CONTROL: [Signal; 3] = [Signal::SIGTSTP, Signal::SIGCONT, Signal::SIGWINCH];

/// Every signal whose disposition lockrun's process may have changed from
/// what it inherited: the handlers installed here, SIGCHLD (an inherited
/// ignore is undone at start-up), Rust's stack-overflow handlers (SIGSEGV,
/// SIGBUS) and SIGPIPE (ignored at start-up). The command's
/// process puts exactly these back before its exec (`spawn`); a handler
/// added anywhere else must be added here (a unit test checks). The one
/// exception is the cut signal's (`install_cut_handler`): it acts only on a
/// thread in a blocking wait, which the command's process before its exec
/// and the guardian never are in, and exec resets it.
pub(crate) const CHANGED: [libc::c_int; 13] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGTSTP,
    libc::SIGCONT,
    libc::SIGWINCH,
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGSEGV,
    libc::SIGBUS,
];

/// The write end of the pipe the handler wakes the reader with; -1 until
/// installed. Never closed: a handler may run at any moment of the
/// process's life.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// One flag per signal number: set by the handler, taken by the reader. As
/// with tokio's streams, repeats of a signal before the reader looks are
/// one event, and no signal can be lost, whatever the pipe holds.
static ARRIVED: [AtomicBool; 65] = [const { AtomicBool::new(false) }; 65];

/// Every signal lockrun handles, in the order a reader takes them.
fn handled() -> impl Iterator<Item = Signal> {
    FORWARDED.into_iter().chain(JOB_CONTROL)
}

/// The handler of every signal in `handled()`: its flag, then one byte into
/// the pipe to wake the reader (a self-pipe, as tokio's own signal driver
/// has, without its table of every signal number and a channel per signal,
/// which an uncontended run paid for in page faults). The flag comes first:
/// a reader that has emptied the pipe and then finds no flag will be woken.
extern "C" fn report(signal: libc::c_int) {
    if let Some(flag) = usize::try_from(signal).ok().and_then(|i| ARRIVED.get(i)) {
        flag.store(true, Ordering::SeqCst);
    }
    // SAFETY: write(2) is async-signal-safe, from a byte on this stack to a
    // descriptor that stays open; errno is put back for the code the
    // signal interrupted. A full pipe drops the byte, which is fine: the
    // bytes already in it wake the reader, and the flag says what came.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let byte = 0u8;
        libc::write(WAKE_FD.load(Ordering::SeqCst), (&raw const byte).cast(), 1);
        *errno = saved;
    }
    if cuts_blocked_wait(signal) {
        cut_blocked_wait();
    }
}

/// SIGWINCH and SIGCONT never end a wait nor need it woken (as in the
/// async wait, which also takes them without a redraw); every other handled
/// signal ends it or, for SIGTSTP, stops lockrun while it waits.
fn cuts_blocked_wait(signal: libc::c_int) -> bool {
    signal != libc::SIGWINCH && signal != libc::SIGCONT
}

/// The descriptor a wait that blocks its thread sleeps on (-1: none), and
/// that thread's id. See [`unless_woken`].
static BLOCKED_FD: AtomicI32 = AtomicI32::new(-1);
static BLOCKED_TID: AtomicI32 = AtomicI32::new(0);
/// A file of this process alone (a memfd), put in the blocked descriptor's
/// place to end the wait: -1 until the first blocking wait.
static SPARE_FD: AtomicI32 = AtomicI32::new(-1);
/// The cut signal came (the wait's timer, see [`WakeTimer`]).
static WOKEN: AtomicBool = AtomicBool::new(false);

/// From a signal handler: end the blocking wait, if one is under way. On
/// the blocked thread itself the descriptor it sleeps on is replaced by the
/// spare file, so its system call, restarted after the handler or not yet
/// entered, returns at once on a file nobody else locks; from any other
/// thread the blocked one is sent the cut signal, whose handler does that
/// there, so that the replacement never races the blocked thread's own
/// use of the descriptor.
fn cut_blocked_wait() {
    if BLOCKED_FD.load(Ordering::SeqCst) < 0 {
        return;
    }
    // SAFETY: gettid, getpid, tgkill and dup3 are async-signal-safe raw
    // system calls on integers; errno is put back for the interrupted code.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let blocked = BLOCKED_TID.load(Ordering::SeqCst);
        if libc::syscall(libc::SYS_gettid) as i32 == blocked {
            let fd = BLOCKED_FD.swap(-1, Ordering::SeqCst);
            if fd >= 0 {
                libc::dup3(SPARE_FD.load(Ordering::SeqCst), fd, libc::O_CLOEXEC);
            }
        } else {
            let pid = libc::syscall(libc::SYS_getpid);
            libc::syscall(libc::SYS_tgkill, pid, blocked, cut_signal());
        }
        *errno = saved;
    }
}

/// The signal that ends a blocked wait: sent by the wait's timer and by a
/// handler that ran on another thread. Its handler is installed with
/// SA_RESTART, so that an expiry that lands after the wait (or anywhere
/// but in a blocked wait) makes no system call fail with EINTR.
fn cut_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

/// Install the cut signal's handler and unblock it on this thread (a
/// parent may have left it blocked, and the mask survives exec).
fn install_cut_handler() {
    extern "C" fn cut(_: libc::c_int) {
        WOKEN.store(true, Ordering::SeqCst);
        cut_blocked_wait();
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with an empty mask and a handler that
        // only makes async-signal-safe calls is a valid argument.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = cut as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(cut_signal(), &raw const action, std::ptr::null_mut());
        }
    });
    // SAFETY: a sigset on our stack.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, cut_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw const set, std::ptr::null_mut());
    }
}

/// Run `call`, a system call that blocks this thread on `fd` (flock(2)),
/// so that any signal lockrun handles (but SIGWINCH and SIGCONT), or the
/// wait's timer, ends it: the handler puts the spare file in `fd`'s place
/// (see `cut_blocked_wait`). `None`: ended that way, or such a signal had
/// already come. `fd` may then name the spare file, and whatever `call`
/// took on the old one was let go as its last descriptor closed; the caller
/// drops it. Only after [`WakeTimer::prepare`] succeeded on this thread.
///
/// Race-free without a helper thread: a signal before the descriptor is
/// marked sets a flag that is checked after marking; one after it replaces
/// the descriptor, which a call that has not started yet finds replaced,
/// and a call that has is restarted (SA_RESTART) on the replacement.
pub(crate) fn unless_woken<T>(fd: RawFd, call: impl FnOnce() -> T) -> Option<T> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    BLOCKED_TID.store(tid, Ordering::SeqCst);
    BLOCKED_FD.store(fd, Ordering::SeqCst);
    let already = WOKEN.load(Ordering::SeqCst)
        || handled().any(|sig| {
            cuts_blocked_wait(sig as libc::c_int) && ARRIVED[sig as usize].load(Ordering::SeqCst)
        });
    let result = (!already).then(call);
    // Still marked: no handler replaced it, so what `call` did is real.
    let intact = BLOCKED_FD.swap(-1, Ordering::SeqCst) == fd;
    result.filter(|_| intact)
}

/// The timer that ends a blocked wait at the `--wait` deadline or when the
/// waiting line is due: a POSIX timer (deleted by exec, not inherited by a
/// fork) that sends the cut signal to the thread that made it.
#[derive(Default)]
pub(crate) struct WakeTimer {
    timer: Option<libc::timer_t>,
}

impl WakeTimer {
    /// Make what a blocking wait on this thread needs: the handler, the
    /// spare file and the timer. `false` when any of them cannot be had
    /// (no memfd, RLIMIT_SIGPENDING): the caller then waits another way,
    /// never blind to its deadline.
    pub(crate) fn prepare(&mut self) -> bool {
        if self.timer.is_some() {
            return true;
        }
        install_cut_handler();
        if SPARE_FD.load(Ordering::SeqCst) < 0 {
            // SAFETY: memfd_create with a static name; the descriptor is
            // kept for the life of the process (close-on-exec).
            let spare = unsafe { libc::memfd_create(c"lockrun-wait".as_ptr(), libc::MFD_CLOEXEC) };
            if spare < 0 {
                tracing::debug!(e = %std::io::Error::last_os_error(), "no spare file to end a wait with");
                return false;
            }
            SPARE_FD.store(spare, Ordering::SeqCst);
        }
        // SAFETY: a zeroed sigevent asking for the cut signal on this
        // thread; timer_create writes the id into `timer`.
        unsafe {
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = cut_signal();
            event.sigev_notify_thread_id = libc::syscall(libc::SYS_gettid) as libc::c_int;
            let mut timer: libc::timer_t = std::mem::zeroed();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &raw mut event, &raw mut timer) != 0 {
                tracing::debug!(e = %std::io::Error::last_os_error(), "no timer to end a wait with");
                return false;
            }
            self.timer = Some(timer);
        }
        true
    }

    /// Wake at `at` (`None`: disarm); a wake-up that came earlier is forgotten.
    pub(crate) fn set(&mut self, at: Option<std::time::Instant>) {
        WOKEN.store(false, Ordering::SeqCst);
        let Some(timer) = self.timer else {
            return;
        };
        let after = at.map_or(std::time::Duration::ZERO, |at| {
            // Zero would disarm it: a due instant fires at once.
            at.saturating_duration_since(std::time::Instant::now())
                .max(std::time::Duration::from_nanos(1))
        });
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().try_into().unwrap_or(i32::MAX.into()),
                tv_nsec: after.subsec_nanos().into(),
            },
        };
        // SAFETY: a timer this struct made, and a spec on our stack.
        unsafe { libc::timer_settime(timer, 0, &raw const spec, std::ptr::null_mut()) };
    }
}

impl Drop for WakeTimer {
    fn drop(&mut self) {
        if let Some(timer) = self.timer {
            // SAFETY: a timer this struct made, deleted once.
            unsafe { libc::timer_delete(timer) };
        }
    }
}

pub(crate) struct Signals {
    /// The read end of the handler's pipe.
    pipe: AsyncFd<OwnedFd>,
    /// Ends a wait that blocks the thread on time.
    timer: WakeTimer,
}

impl Signals {
    /// Install the handlers. Once per process: must be called inside the
    /// tokio runtime.
    pub(crate) fn install() -> Result<Self> {
        let failed = |what: &str, e: std::io::Error| {
            Error::internal(format!("cannot install the signal handlers: {what}: {e}"))
        };
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two descriptors into the array we pass.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(failed("pipe", std::io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptors nobody else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the OwnedFd's descriptor stays open and the same for as
        // long as the AsyncFd owns it.
        let pipe = unsafe { AsyncFd::register_with_interest(read, tokio::io::Interest::READABLE) }
            .map_err(|e| failed("pipe", e.into_parts().1))?;
        if WAKE_FD
            .compare_exchange(-1, write.as_raw_fd(), Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Error::internal("the signal handlers were installed twice"));
        }
        // Published: from now on it lives as long as the process.
        let _ = write.into_raw_fd();
        let mut installed: Vec<(Signal, libc::sigaction)> = Vec::new();
        for sig in handled() {
            // SAFETY: a zeroed sigaction with an empty mask and a handler
            // that only makes async-signal-safe calls (see `report`); the
            // previous action goes into a zeroed struct on our stack.
            let (rc, previous) = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = report as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&raw mut action.sa_mask);
                let mut previous: libc::sigaction = std::mem::zeroed();
                let rc = libc::sigaction(sig as libc::c_int, &raw const action, &raw mut previous);
                (rc, previous)
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                // Nothing half done: the handlers already in place go back
                // to what they were, so no signal lands in an unread pipe.
                for (sig, previous) in installed {
                    // SAFETY: restoring the action sigaction gave us.
                    unsafe {
                        libc::sigaction(
                            sig as libc::c_int,
                            &raw const previous,
                            std::ptr::null_mut(),
                        )
                    };
                }
                return Err(failed(sig.as_str(), e));
            }
            installed.push((sig, previous));
        }
        Ok(Signals {
            pipe,
            timer: WakeTimer::default(),
        })
    }

    /// While waiting for the lock: the next signal meant to end things (its
    /// number). SIGTSTP stops lockrun, as it would without a handler.
    pub(crate) async fn recv(&mut self) -> i32 {
        loop {
            let signal = self.recv_any().await;
            if !handle_job_control_while_waiting(signal) {
                return signal as i32;
            }
        }
    }

    /// A signal that already arrived, without waiting.
    pub(crate) fn pending(&mut self) -> Option<i32> {
        drain(self.pipe.as_raw_fd());
        let ready: Vec<Signal> = handled().filter(|&sig| take(sig)).collect();
        // Every ready signal is acted on, not only the first.
        ready
            .into_iter()
            .filter(|&sig| !handle_job_control_while_waiting(sig))
            .min_by_key(|&sig| sig as i32)
            .map(|sig| sig as i32)
    }

    /// The next signal of any kind, for the supervisor. Cancel-safe: a
    /// signal is taken only in the poll that returns it.
    pub(crate) async fn recv_any(&mut self) -> Signal {
        loop {
            // Emptied before the flags are read: a signal after the read
            // leaves a byte that wakes the wait below.
            drain(self.pipe.as_raw_fd());
            if let Some(signal) = handled().find(|&sig| take(sig)) {
                return signal;
            }
            let Ok(mut ready) = self.pipe.readable().await else {
                return std::future::pending().await;
            };
            // Readiness is cleared only once a read finds the pipe empty.
            let _ = ready.try_io(|pipe| {
                drain(pipe.as_raw_fd());
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
        }
    }
}

/// Has `signal` arrived since it was last taken? Takes it.
fn take(signal: Signal) -> bool {
    ARRIVED
        .get(signal as usize)
        .is_some_and(|flag| flag.swap(false, Ordering::SeqCst))
}

/// Empty the handler's pipe (it only carries wake-ups).
fn drain(fd: RawFd) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: read into a buffer on our stack, of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0
            && !(n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
        {
            return;
        }
    }
}

/// True if `signal` was a job-control signal and has been dealt with.
fn handle_job_control_while_waiting(signal: Signal) -> bool {
    if !JOB_CONTROL.contains(&signal) {
        return false;
    }
    if signal == Signal::SIGTSTP {
        // Our handler replaced the default "stop": stop for real.
        let _ = nix::sys::signal::raise(Signal::SIGSTOP);
    }
    true
}

impl crate::lock::Interrupts for Signals {
    async fn recv(&mut self) -> i32 {
        Signals::recv(self).await
    }

    fn pending(&mut self) -> Option<i32> {
        Signals::pending(self)
    }

    fn prepare_blocking_wait(&mut self) -> bool {
        self.timer.prepare()
    }

    fn wake_at(&mut self, at: Option<std::time::Instant>) {
        self.timer.set(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_lists_every_forwarded_and_job_control_signal() {
        for sig in FORWARDED.iter().chain(&JOB_CONTROL) {
            assert!(CHANGED.contains(&(*sig as libc::c_int)), "{sig} missing");
        }
    }

    /// After the handlers are installed, every signal that is caught is
    /// one `CHANGED` names: the command's process resets only those.
    #[test]
    fn every_caught_signal_is_listed_as_changed() {
        // Its signals would cut the wait tests' waits short.
        let _turn = take_turn();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // The one install of this test process (a second one is an error).
            let mut signals = Signals::install().unwrap();
            assert!(Signals::install().is_err(), "installed twice");
            // Repeats before the reader looks are one event, as with tokio's
            // streams; and with the wake-up pipe full, a signal still comes
            // through (its flag, not a byte, says it came).
            // SAFETY: raise(3) of signals whose handler is `report`.
            unsafe {
                for _ in 0..3 {
                    libc::raise(libc::SIGUSR2);
                }
            }
            assert_eq!(signals.recv_any().await, Signal::SIGUSR2);
            assert_eq!(signals.pending(), None, "a repeat came twice");
            let full = WAKE_FD.load(Ordering::SeqCst);
            // SAFETY: write of a stack buffer to our own non-blocking pipe.
            while unsafe { libc::write(full, [0u8; 512].as_ptr().cast(), 512) } > 0 {}
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGTERM) };
            assert_eq!(signals.recv_any().await, Signal::SIGTERM);
            for sig in 1..=libc::SIGRTMAX() {
                // SAFETY: a query only (no new action), into a zeroed struct.
                let handler = unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 {
                        continue;
                    }
                    old.sa_sigaction
                };
                // The cut signal's handler only acts during a blocking
                // wait (see `CHANGED`).
                if handler != libc::SIG_DFL && handler != libc::SIG_IGN && sig != cut_signal() {
                    assert!(
                        CHANGED.contains(&sig),
                        "signal {sig} is caught but not in CHANGED"
                    );
                }
            }
        });
    }

    /// The blocked wait's state is one per process: these tests take turns.
    static ONE_WAIT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn take_turn() -> std::sync::MutexGuard<'static, ()> {
        ONE_WAIT_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A lock file held through another open file description, so that a
    /// flock(2) on a fresh one blocks. Bounded: should a wake-up never come,
    /// the holder lets go after 10 s (or when the guard is dropped), and
    /// the test's assertions fail instead of the test hanging.
    fn held_lock() -> (tempfile::TempDir, HeldForAWhile) {
        let dir = tempfile::tempdir().unwrap();
        let holder = std::fs::File::create(dir.path().join("l")).unwrap();
        holder.lock().unwrap();
        let (done, bound) = std::sync::mpsc::channel::<()>();
        let letting_go = std::thread::spawn(move || {
            let _ = bound.recv_timeout(std::time::Duration::from_secs(10));
            drop(holder);
        });
        (dir, HeldForAWhile(Some((done, letting_go))))
    }

    struct HeldForAWhile(Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>);

    impl Drop for HeldForAWhile {
        fn drop(&mut self) {
            if let Some((done, letting_go)) = self.0.take() {
                let _ = done.send(());
                let _ = letting_go.join();
            }
        }
    }

    fn blocking_flock(file: &std::fs::File) -> impl FnOnce() -> i32 {
        let fd = file.as_raw_fd();
        // SAFETY: flock on a descriptor the caller keeps open.
        move || unsafe { libc::flock(fd, libc::LOCK_EX) }
    }

    #[test]
    fn the_wake_timer_ends_a_blocked_flock_and_gives_back_nothing() {
        let _turn = take_turn();
        let (dir, holder) = held_lock();
        let waiter = std::fs::File::open(dir.path().join("l")).unwrap();
        let mut timer = WakeTimer::default();
        assert!(timer.prepare());
        let started = std::time::Instant::now();
        timer.set(Some(started + std::time::Duration::from_millis(50)));
        let outcome = unless_woken(waiter.as_raw_fd(), blocking_flock(&waiter));
        timer.set(None);
        drop(holder);
        assert_eq!(outcome, None, "the wait was not cut short");
        assert!(started.elapsed() >= std::time::Duration::from_millis(50));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // The descriptor now names the spare file: the lock file is still
        // held by the holder only.
        use std::os::unix::fs::MetadataExt as _;
        let meta = waiter.metadata().unwrap();
        let lock_meta = std::fs::metadata(dir.path().join("l")).unwrap();
        assert_ne!((meta.dev(), meta.ino()), (lock_meta.dev(), lock_meta.ino()));
    }

    #[test]
    fn a_wake_that_came_before_the_wait_is_not_lost() {
        let _turn = take_turn();
        use std::os::unix::fs::MetadataExt as _;
        let (dir, _holder) = held_lock();
        let waiter = std::fs::File::open(dir.path().join("l")).unwrap();
        assert!(WakeTimer::default().prepare());
        WOKEN.store(false, Ordering::SeqCst);
        // SAFETY: the cut signal has a handler (installed by prepare).
        unsafe { libc::raise(cut_signal()) };
        let outcome = unless_woken(waiter.as_raw_fd(), blocking_flock(&waiter));
        assert_eq!(outcome, None, "the call ran although the wake-up had come");
        // Nothing was replaced: the descriptor still names the lock file.
        let lock_meta = std::fs::metadata(dir.path().join("l")).unwrap();
        assert_eq!(waiter.metadata().unwrap().ino(), lock_meta.ino());
    }

    #[test]
    fn an_uninterrupted_wait_returns_what_the_call_did() {
        let _turn = take_turn();
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("free")).unwrap();
        assert!(WakeTimer::default().prepare());
        WOKEN.store(false, Ordering::SeqCst);
        let outcome = unless_woken(file.as_raw_fd(), blocking_flock(&file));
        assert_eq!(outcome, Some(0));
    }
}
