//! The signals lockrun forwards to its child, as one stream. Handlers are
//! installed once at start-up, before waiting for the lock, so that a signal
//! during the wait aborts it cleanly instead of killing lockrun mid-request.

use nix::sys::signal::Signal;
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

pub struct Signals {
    streams: Vec<(i32, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub fn install() -> Result<Self> {
        let streams = FORWARDED
            .iter()
            .map(|&sig| {
                let number = sig as i32;
                signal(SignalKind::from_raw(number))
                    .map(|stream| (number, stream))
                    .map_err(|e| {
                        Error::internal(format!("cannot install a handler for {sig}: {e}"))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Signals { streams })
    }

    /// The next signal received (its number).
    pub async fn recv(&mut self) -> i32 {
        let futures = self.streams.iter_mut().map(|(number, stream)| {
            let number = *number;
            Box::pin(async move {
                stream.recv().await;
                number
            })
        });
        futures_select_all(futures).await
    }

    /// A signal that already arrived, without waiting.
    pub fn pending(&mut self) -> Option<i32> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        self.streams
            .iter_mut()
            .find_map(|(number, stream)| match stream.poll_recv(&mut cx) {
                std::task::Poll::Ready(Some(())) => Some(*number),
                _ => None,
            })
    }
}

/// The first of several futures to finish (tiny stand-in for `select_all`).
async fn futures_select_all<F: std::future::Future<Output = i32> + Unpin>(
    futures: impl Iterator<Item = F>,
) -> i32 {
    let mut futures: Vec<F> = futures.collect();
    std::future::poll_fn(move |cx| {
        for future in &mut futures {
            if let std::task::Poll::Ready(number) = std::pin::Pin::new(future).poll(cx) {
                return std::task::Poll::Ready(number);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// `SIGTERM` for 15, for messages.
pub fn name(number: i32) -> &'static str {
    Signal::try_from(number).map_or("a signal", Signal::as_str)
}
