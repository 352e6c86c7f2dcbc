//! The acquire loop: take one of a request's slots, waiting per the
//! `--wait`/`--no-wait` policy, interrupted by signals, and the generic
//! adapter that turns a [`Polling`] backend's try and wait into one
//! [`Backend::acquire`].

use std::time::Duration;

use crate::error::Result;
use crate::lock::{
    Attempt, Backend, Interrupts, LockRequest, Polling, Wait, WaitDisplay, WaitOutcome, WaitPolicy,
};

/// [`Backend::acquire`] for a [`Polling`] backend: try every slot; if all
/// are busy and waiting is allowed, wait and try again.
pub(crate) async fn poll_acquire<B: Polling, I: Interrupts, D: WaitDisplay>(
    backend: &mut B,
    req: &LockRequest,
    wait: &mut Wait<'_, I, D>,
) -> Result<B::Lease> {
    let mut round = 0;
    loop {
        for slot in 1..=req.slots {
            match backend.try_acquire(req, slot).await? {
                Attempt::Acquired(lease) => return Ok(lease),
                Attempt::Held(holder) => wait.saw(holder),
            }
            // A signal that arrived between tries still aborts promptly.
            wait.check_signals()?;
        }
        wait.because(backend.busy_reason());
        wait.give_up_if_over()?;
        wait.at_position(backend.queue_position());
        match wait.until(backend.wait(req, round)).await? {
            Some(WaitOutcome::Acquired(lease)) => return Ok(lease),
            // Retry, or the deadline just passed: one last try, for a lock
            // that came free right at the deadline.
            Some(WaitOutcome::Retry) | None => round += 1,
        }
    }
}

/// Take one of the request's slots, waiting per `policy`. A signal while
/// waiting aborts the wait (nothing stays registered in the backend) and is
/// reported as `Error::Interrupted`.
pub(crate) async fn acquire<B: Backend>(
    backend: &mut B,
    req: &LockRequest,
    policy: WaitPolicy,
    signals: &mut impl Interrupts,
    indicator: &mut impl WaitDisplay,
) -> Result<B::Lease> {
    let mut wait = Wait::new(req, policy, signals, indicator);
    let lease = backend.acquire(req, &mut wait).await;
    indicator.clear();
    lease
}

/// Capped exponential backoff with full jitter, for backends that can only
/// poll: the first retry comes well under a second.
pub(crate) fn backoff_delay(round: u32, first: Duration, cap: Duration) -> Duration {
    let exp = first.saturating_mul(1u32 << round.min(16));
    let ceiling = exp.min(cap).max(Duration::from_millis(1));
    let nanos = crate::os::random_up_to(u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX));
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::time::Instant;

    use super::*;
    use crate::error::Error;
    use crate::lock::{HolderInfo, Lease, LockName, Renewal};
    use crate::os::BootTime;

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

        async fn acquire<I: Interrupts, D: WaitDisplay>(
            &mut self,
            req: &LockRequest,
            wait: &mut Wait<'_, I, D>,
        ) -> Result<MemLease> {
            poll_acquire(self, req, wait).await
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
    }

    impl Polling for Mem {
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
            shared: false,
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
    fn backoff_is_capped_and_jittered() {
        let cap = Duration::from_secs(5);
        for round in 0..40 {
            assert!(backoff_delay(round, Duration::from_millis(100), cap) <= cap);
        }
        assert!(backoff_delay(0, Duration::from_millis(100), cap) <= Duration::from_millis(100));
    }
}
