//! The signals lockrun forwards to its child, as one stream. Handlers are
//! installed once at start-up, before waiting for the lock, so that a signal
//! during the wait aborts it cleanly instead of killing lockrun mid-request.
//!
//! Job control matters because the child lives in its own process group: a
//! terminal's Ctrl-Z stops only lockrun. While there is no child, SIGTSTP
//! simply stops lockrun here; while a child runs, the supervisor decides
//! (see `supervise::handle_signal`).

use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};

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

pub(crate) struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub(crate) fn install() -> Result<Self> {
        let streams = FORWARDED
            .iter()
            .chain(&JOB_CONTROL)
            .map(|&sig| {
                signal(SignalKind::from_raw(sig as i32))
                    .map(|stream| (sig, stream))
                    .map_err(|e| {
                        Error::internal(format!("cannot install a handler for {sig}: {e}"))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Signals { streams })
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
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let ready: Vec<Signal> = self
            .streams
            .iter_mut()
            .filter_map(|(sig, stream)| match stream.poll_recv(&mut cx) {
                std::task::Poll::Ready(Some(())) => Some(*sig),
                _ => None,
            })
            .collect();
        // Every ready signal is acted on, not only the first.
        ready
            .into_iter()
            .filter(|&sig| !handle_job_control_while_waiting(sig))
            .min_by_key(|&sig| sig as i32)
            .map(|sig| sig as i32)
    }

    /// The next signal of any kind, for the supervisor.
    pub(crate) async fn recv_any(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if let std::task::Poll::Ready(Some(())) = stream.poll_recv(cx) {
                    return std::task::Poll::Ready(*sig);
                }
            }
            std::task::Poll::Pending
        })
        .await
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
