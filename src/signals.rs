//! The signals lockrun forwards to its child, as one stream. Handlers are
//! installed once at start-up, before waiting for the lock, so that a signal
//! during the wait aborts it cleanly instead of killing lockrun mid-request.
//!
//! Job control matters because the child lives in its own process group: a
//! terminal's Ctrl-Z stops only lockrun. While there is no child, SIGTSTP
//! simply stops lockrun here; while a child runs, the supervisor decides
//! (see `supervise::handle_signal`).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

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

/// The write end of the pipe the handler reports to; -1 until installed.
/// Never closed: a handler may run at any moment of the process's life.
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// The handler of every signal in `FORWARDED` and `JOB_CONTROL`: one byte,
/// the signal's number, into the pipe (a self-pipe, as tokio's own signal
/// driver does, without its table of every signal number and its channel
/// per signal, which an uncontended run paid for in page faults).
extern "C" fn report(signal: libc::c_int) {
    // SAFETY: write(2) is async-signal-safe, from a byte on this stack to a
    // descriptor that stays open; errno is put back for the code the
    // signal interrupted. A full pipe drops the byte: the signals already
    // in it will wake the reader, and forwarding needs each kind once.
    unsafe {
        let errno = libc::__errno_location();
        let saved = *errno;
        let byte = signal as u8;
        libc::write(
            REPORT_FD.load(Ordering::Relaxed),
            (&raw const byte).cast(),
            1,
        );
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
        // SAFETY: a fresh descriptor nobody else owns.
        let read = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        if REPORT_FD
            .compare_exchange(-1, fds[1], Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            // SAFETY: the write end we just made and nobody else knows.
            unsafe { libc::close(fds[1]) };
            return Err(Error::internal("the signal handlers were installed twice"));
        }
        // SAFETY: the OwnedFd's descriptor stays open and the same for as
        // long as the AsyncFd owns it.
        let pipe = unsafe { AsyncFd::register_with_interest(read, tokio::io::Interest::READABLE) }
            .map_err(|e| failed("pipe", e.into_parts().1))?;
        for &sig in FORWARDED.iter().chain(&JOB_CONTROL) {
            // SAFETY: a zeroed sigaction with an empty mask and a handler
            // that only makes async-signal-safe calls (see `report`).
            let rc = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = report as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&raw mut action.sa_mask);
                libc::sigaction(sig as libc::c_int, &raw const action, std::ptr::null_mut())
            };
            if rc != 0 {
                return Err(failed(sig.as_str(), std::io::Error::last_os_error()));
            }
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
        let mut ready = Vec::new();
        while let Ok(signal) = read_signal(self.pipe.as_raw_fd()) {
            if !ready.contains(&signal) {
                ready.push(signal);
            }
        }
        // Every ready signal is acted on, not only the first.
        ready
            .into_iter()
            .filter(|&sig| !handle_job_control_while_waiting(sig))
            .min_by_key(|&sig| sig as i32)
            .map(|sig| sig as i32)
    }

    /// The next signal of any kind, for the supervisor. Cancel-safe: a
    /// signal is taken from the pipe only in the poll that returns it.
    pub(crate) async fn recv_any(&mut self) -> Signal {
        loop {
            let Ok(mut ready) = self.pipe.readable().await else {
                return std::future::pending().await;
            };
            if let Ok(Ok(signal)) = ready.try_io(|pipe| read_signal(pipe.as_raw_fd())) {
                return signal;
            }
        }
    }
}

/// One signal from the handler's pipe; `WouldBlock` when it is empty.
fn read_signal(fd: RawFd) -> std::io::Result<Signal> {
    loop {
        let mut byte = 0u8;
        // SAFETY: read of one byte into a byte on our stack.
        let n = unsafe { libc::read(fd, (&raw mut byte).cast(), 1) };
        match n {
            1 => {}
            // The write end is never closed: no EOF to see.
            0 => return Err(std::io::ErrorKind::WouldBlock.into()),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
        }
        if let Ok(signal) = Signal::try_from(libc::c_int::from(byte)) {
            return Ok(signal);
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
            let _signals = Signals::install().unwrap();
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
