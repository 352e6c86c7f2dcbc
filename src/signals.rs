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
/// what it inherited: the handlers installed here, tokio's SIGCHLD handler
/// (the child wait without a pidfd), Rust's stack-overflow handlers
/// (SIGSEGV, SIGBUS) and SIGPIPE (ignored at start-up). The command's
/// process puts exactly these back before its exec (`spawn`); a handler
/// added anywhere else must be added here (a unit test checks).
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
}

pub(crate) struct Signals {
    /// The read end of the handler's pipe.
    pipe: AsyncFd<OwnedFd>,
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
        Ok(Signals { pipe })
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
        use tokio::signal::unix::{SignalKind, signal};
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
            let _child = signal(SignalKind::child()).unwrap();
            for sig in 1..=libc::SIGRTMAX() {
                // SAFETY: a query only (no new action), into a zeroed struct.
                let handler = unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 {
                        continue;
                    }
                    old.sa_sigaction
                };
                if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
                    assert!(
                        CHANGED.contains(&sig),
                        "signal {sig} is caught but not in CHANGED"
                    );
                }
            }
        });
    }
}
