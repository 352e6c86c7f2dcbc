//! The signals lockrun forwards to its child, as one stream. Handlers are
//! installed once at start-up, before waiting for the lock, so that a signal
//! during the wait aborts it cleanly instead of killing lockrun mid-request.
//!
//! Job control is handled here too: the child lives in its own process group,
//! so a terminal's Ctrl-Z stops only lockrun. Were lockrun stopped alone, the
//! child would run on while nobody renews its lease; so SIGTSTP stops the
//! child's group first, and SIGCONT resumes it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::error::{Error, Result};

/// Forwarded one-to-one to the child's process group.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Handled inside [`Signals::recv`], never returned.
const JOB_CONTROL: [Signal; 3] = [Signal::SIGTSTP, Signal::SIGCONT, Signal::SIGWINCH];

pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
    /// The child's process group, once there is a child.
    child_group: Option<Pid>,
}

impl Signals {
    pub fn install() -> Result<Self> {
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
        Ok(Signals {
            streams,
            child_group: None,
        })
    }

    pub fn set_child_group(&mut self, group: Option<Pid>) {
        self.child_group = group;
    }

    /// The next signal received that is meant to end things (its number).
    pub async fn recv(&mut self) -> i32 {
        loop {
            let signal = self.next_any().await;
            if !self.handle_job_control(signal) {
                return signal as i32;
            }
        }
    }

    /// A signal that already arrived, without waiting.
    pub fn pending(&mut self) -> Option<i32> {
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
        ready
            .into_iter()
            .find(|&sig| !self.handle_job_control(sig))
            .map(|sig| sig as i32)
    }

    async fn next_any(&mut self) -> Signal {
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

    /// True if `signal` was a job-control signal and has been dealt with.
    fn handle_job_control(&self, signal: Signal) -> bool {
        if !JOB_CONTROL.contains(&signal) {
            return false;
        }
        let to_child = |sig| {
            if let Some(group) = self.child_group {
                let _ = killpg(group, sig);
            }
        };
        match signal {
            Signal::SIGTSTP => {
                to_child(Signal::SIGTSTP);
                // Our handler replaced the default "stop": stop for real.
                let _ = nix::sys::signal::raise(Signal::SIGSTOP);
            }
            Signal::SIGCONT => to_child(Signal::SIGCONT),
            _ => to_child(signal),
        }
        true
    }
}

/// `SIGTERM` for 15, for messages.
pub fn name(number: i32) -> &'static str {
    Signal::try_from(number).map_or("a signal", Signal::as_str)
}
