//! The CloudShell "service-alias" backend: the reservation mutex, done right.
//!
//! A lock is a service with a fixed alias in a reservation.
//! `AddServiceToReservation` succeeds for exactly one caller; the others get
//! error 100 "Service with given alias already exists". This is the
//! published recipe's idea, so drivers using the recipe (model
//! `Mutex Service`, alias `MUTEX`) and lockrun exclude each other. Its flaws
//! are dropped:
//!
//! * Held and failed are different answers. The lock counts as held only
//!   when the server says the alias exists, or the reservation shows it.
//!   Bad credentials (77), an unknown reservation or service model, HTTP
//!   5xx and timeouts beyond a small retry budget (69) are reported as what
//!   they are, never waited out as contention.
//! * A request whose outcome is unknown is reconciled, never blindly
//!   repeated. What "unknown" means decides what is safe (`api::Failure`):
//!   a request the server is done with (HTTP 5xx, an unreadable reply, a
//!   closed connection) is settled by one look at the reservation
//!   (`GetReservationDetails`); a request that got no answer in time may
//!   still be carried out by the server at any later moment, so no look can
//!   settle it, only waiting. lockrun waits for such a request for the
//!   *settle time*, `timeout × (retries + 1)` after it gave up on the answer
//!   (30s by default: as long as it would have waited for every attempt),
//!   and assumes that a request not carried out by then never will be.
//! * An add that got no answer is not overtaken by another add while it may
//!   still land: lockrun watches the reservation until the alias shows up
//!   (the add landed) or the settle time has passed (then sending another is
//!   safe). Otherwise a first add landing after a second one succeeded, the
//!   command ran and the lock was released would re-create the alias, held
//!   by nobody, for ever. With an owner attribute an alias that shows up is
//!   known exactly: ours (the value carries a random per-acquisition id) or
//!   another holder's. Without one it may be either; lockrun then stops with
//!   69 and says so, rather than run the command without being sure, wait
//!   (maybe forever) for itself, or break another's lock. The price: an add
//!   of unknown outcome while someone else takes the lock also ends in 69;
//!   an owner attribute avoids it.
//! * `RemoveServicesFromReservation` removes whatever has the alias, whoever
//!   added it: the server cannot compare-and-delete. So a remove is sent
//!   only while the alias is known to be ours, and after a failure:
//!   - not sent (no connection): sent again;
//!   - done with but unclear: the reservation tells. Gone: released. Still
//!     there and still carrying our owner value: sent again (nothing of the
//!     failed one can land later, and nobody can have taken the lock in
//!     between). Still there without an owner attribute, or someone else's:
//!     not sent again;
//!   - no answer in time: **never sent again**. If a second remove succeeded,
//!     a waiter could take the lock, and the first, landing then, would
//!     delete the waiter's alias and let a third holder in while the waiter
//!     runs. lockrun watches the reservation instead until the alias is gone
//!     (or no longer ours) or the settle time has passed.
//! * A release that finally fails returns an error that says what is left
//!   behind (the alias never expires) and the exact command that clears it,
//!   `lockrun -b URL release --force NAME`; the supervisor turns it into a
//!   non-zero exit status.
//! * Waiting polls with capped exponential backoff and full jitter.
//! * There is no TTL, so a killed holder leaves the alias behind: `status`
//!   says so, and `release NAME --force` removes it. While the command runs,
//!   lockrun checks every `check` interval that the alias is still there
//!   (and still ours, with an owner attribute): if someone broke the lock,
//!   another process may now hold it, and the command is stopped (exit 76)
//!   instead of running on unprotected. A failed check is not a verdict
//!   (the lock cannot expire by itself), so only a confirmed loss stops it.
//!
//! # Why the owner attribute stays opt-in
//!
//! The published Mutex_Package model has no attributes, an attribute the
//! model lacks is refused (with a message whose wording is not documented),
//! and whether some server versions silently drop unknown attributes is
//! unknown; a server that dropped ours would make every holder look as if
//! it had lost its lock. Guessing an attribute name would cost a refused
//! request on every acquisition on such servers and rest on an unverified
//! error text, so lockrun uses one only when told (`?owner_attribute=`). The
//! reconciliation above is built to be safe without one; an attribute makes
//! it exact (an alias that shows up after an unanswered add is then ours or
//! not, and a failed remove of an alias still ours can be sent again).
//!
//! # What the protocol cannot guarantee (the remaining window)
//!
//! The server offers no conditional remove and no request ids, so some
//! faults stay beyond any client:
//!
//! * A request the server carries out more than the settle time after
//!   lockrun gave up on its answer. A late add then re-creates the alias
//!   with nobody holding it (`status` shows it, with the dead holder when
//!   there is an owner attribute; `release --force` clears it). A late remove
//!   can only be one lockrun gave up on (exit status non-zero, lock left
//!   behind); if meanwhile someone broke that lock with `release --force` and
//!   a new holder took it, the late remove deletes the new holder's alias.
//! * A remove of ours still pending while someone else breaks and re-takes
//!   the lock, and the moment between reading the reservation (alias ours)
//!   and sending the remove: only a `release --force` can act in between.
//! * Without an owner attribute lockrun cannot tell its alias from a new
//!   holder's: a waiter that takes the lock the instant a pending remove of
//!   ours lands hides that it landed, so lockrun reports the lock as left
//!   behind although it is in use (a false alarm, never a second holder).
//!
//! In every case where a holder's alias is deleted under it, that holder
//! notices at its next check (every `check`, 10s by default) and stops its
//! command (exit 76); until then a second holder may run. A smaller `check`
//! narrows that window at the price of one `GetReservationDetails` per
//! holder per interval.
//!
//! Slots are aliases `NAME@k`, which no valid NAME can collide with.

mod api;
mod config;
mod owner;
mod xml;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use self::api::{Failure, Session, clean};
use self::xml::Service;
use crate::acquire::poll_acquire;
use crate::error::{Error, Result};
use crate::lock::{
    Attempt, Backend, HolderInfo, Inspect, Interrupts, Lease, LockName, LockRequest, Polling,
    Renewal, SlotState, Wait, WaitDisplay, WaitOutcome,
};

pub(crate) use self::config::CloudShellConfig;

const ADD: &str = "AddServiceToReservation";
const REMOVE: &str = "RemoveServicesFromReservation";
const DETAILS: &str = "GetReservationDetails";

pub(crate) struct CloudShellBackend {
    config: CloudShellConfig,
    session: Session,
    /// Our owner-attribute value, fixed for this process's acquisition.
    owner_value: Option<String>,
    /// Aliases whose `AddServiceToReservation` had an unknown outcome: if
    /// one of them exists later, it may be ours.
    uncertain: HashSet<String>,
}

pub(crate) struct CloudShellLease {
    alias: String,
    slot: u32,
    owner_value: Option<String>,
    /// Set when a check found the alias gone or taken over: then it is not
    /// ours to remove.
    lost: bool,
}

impl Lease for CloudShellLease {
    fn slot(&self) -> u32 {
        self.slot
    }
    fn fence(&self) -> Option<u64> {
        None
    }
    fn expires_at(&self) -> Option<crate::os::BootTime> {
        None
    }
}

/// What is left of aliases being removed.
enum Remaining {
    Gone,
    /// Still there, with our owner value.
    Ours,
    /// Still there, with someone else's owner value: ours was removed and
    /// the lock taken since.
    Taken,
    /// Still there, and whose cannot be told.
    Unknown,
}

/// What the reservation says about an alias.
enum Seen {
    Service(Service),
    Absent,
    /// Not looked at, or the look failed.
    Unknown,
}

impl CloudShellBackend {
    pub(crate) async fn connect(config: CloudShellConfig) -> Result<Self> {
        let mut session = Session::new(&config)?;
        // Logging on first makes bad credentials fail (77) before anything else.
        session.logon().await?;
        Ok(CloudShellBackend {
            config,
            session,
            owner_value: None,
            uncertain: HashSet::new(),
        })
    }

    async fn services(&mut self) -> Result<Vec<Service>> {
        let body = xml::reservation_details(&self.config.reservation);
        let envelope = self.session.call(DETAILS, &body).await?;
        envelope.services().map_err(|e| {
            Error::unavailable(format!("CloudShell at {}: {e}", self.session.server()))
        })
    }

    async fn lookup(&mut self, alias: &str) -> Result<Option<Service>> {
        Ok(self
            .services()
            .await?
            .into_iter()
            .find(|s| s.alias == alias))
    }

    /// One look at the reservation, not retried: the callers poll until
    /// their own deadline.
    async fn services_once(&mut self) -> Result<Vec<Service>, String> {
        let body = xml::reservation_details(&self.config.reservation);
        match self.session.call_once(DETAILS, &body).await {
            Ok(envelope) => envelope.services(),
            Err(Failure::Api { code, message }) => {
                Err(format!("error {code}: {}", clean(&message)))
            }
            Err(Failure::Fatal(e)) => Err(e.to_string()),
            Err(Failure::NotSent(m) | Failure::Unclear(m) | Failure::Pending(m)) => Err(m),
        }
    }

    /// Until when a request that got no answer a moment ago may still be
    /// carried out, by lockrun's assumption (the module docs).
    fn settle_deadline(&self) -> Instant {
        let now = Instant::now();
        // settle() is at most 21 × the 1h bound on every duration option, so this cannot overflow;
        // if it did, waiting a day instead is still a bounded wait.
        now.checked_add(self.config.settle())
            .or_else(|| now.checked_add(Duration::from_secs(86_400)))
            .unwrap_or(now)
    }

    /// A jittered pause between looks while a request settles, never past
    /// `deadline`.
    async fn pause_until(&self, round: u32, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let pause =
            crate::acquire::backoff_delay(round, self.config.first_poll, self.config.max_poll);
        tokio::time::sleep(pause.min(left)).await;
    }

    /// An add got no answer in time: watch the reservation until the alias
    /// shows up or the settle time has passed. Returns the last look: the
    /// alias as it shows up (ours, or with no owner attribute anybody's: the
    /// caller decides), someone else's alias or none at the deadline, or the
    /// error of the last look.
    async fn await_add(&mut self, alias: &str) -> Result<Option<Service>, String> {
        let deadline = self.settle_deadline();
        let mut round = 0u32;
        loop {
            let look = self
                .services_once()
                .await
                .map(|services| services.into_iter().find(|s| s.alias == alias));
            if let Ok(Some(service)) = &look
                && (self.config.owner_attribute.is_none() || self.is_ours(service))
            {
                return look;
            }
            if Instant::now() >= deadline {
                return look;
            }
            self.pause_until(round, deadline).await;
            round = round.saturating_add(1);
        }
    }

    fn owner_attributes(&mut self, req: &LockRequest) -> Vec<(String, String)> {
        let Some(attribute) = self.config.owner_attribute.clone() else {
            return Vec::new();
        };
        let value = self
            .owner_value
            .get_or_insert_with(|| owner::encode(&req.holder))
            .clone();
        vec![(attribute, value)]
    }

    fn is_ours(&self, service: &Service) -> bool {
        match (&self.config.owner_attribute, &self.owner_value) {
            (Some(attribute), Some(ours)) => service.attribute(attribute) == Some(ours.as_str()),
            _ => false,
        }
    }

    fn holder_of(&self, service: &Service) -> Option<HolderInfo> {
        let attribute = self.config.owner_attribute.as_ref()?;
        owner::decode(service.attribute(attribute)?)
    }

    fn lease(&mut self, alias: &str, slot: u32) -> CloudShellLease {
        self.uncertain.remove(alias);
        CloudShellLease {
            alias: alias.to_owned(),
            slot,
            owner_value: self.owner_value.clone(),
            lost: false,
        }
    }

    /// The alias exists (or just did): ours after all, or somebody else's.
    fn existing(
        &mut self,
        req: &LockRequest,
        alias: &str,
        slot: u32,
        seen: Seen,
    ) -> Result<Attempt<CloudShellLease>> {
        match seen {
            Seen::Service(service) if self.is_ours(&service) => {
                tracing::info!(
                    alias,
                    "an earlier attempt whose outcome was unknown did take the lock"
                );
                Ok(Attempt::Acquired(self.lease(alias, slot)))
            }
            Seen::Service(service) => {
                if self.uncertain.contains(alias) && self.config.owner_attribute.is_none() {
                    return Err(self.possibly_ours(req, alias));
                }
                Ok(Attempt::Held(self.holder_of(&service)))
            }
            // Freed in the meantime: the next round tries again.
            Seen::Absent => Ok(Attempt::Held(None)),
            Seen::Unknown if self.uncertain.contains(alias) => Err(self.possibly_ours(req, alias)),
            Seen::Unknown => Ok(Attempt::Held(None)),
        }
    }

    async fn see(&mut self, alias: &str) -> Seen {
        match self.lookup(alias).await {
            Ok(Some(service)) => Seen::Service(service),
            Ok(None) => Seen::Absent,
            Err(e) => {
                tracing::debug!(%e, "could not look at the reservation");
                Seen::Unknown
            }
        }
    }

    fn possibly_ours(&self, req: &LockRequest, alias: &str) -> Error {
        Error::unavailable(format!(
            "adding {alias} to reservation {} at {} had an unknown outcome, and {alias} exists now: it may be ours or another holder's, and without an owner attribute (?owner_attribute=ATTRIBUTE) lockrun cannot tell, so it does not run the command; if nobody else holds {name}, run 'lockrun release {name} --force'",
            self.config.reservation,
            self.session.server(),
            name = req.name,
        ))
    }

    fn add_unchecked(&self, req: &LockRequest, alias: &str, failure: &str, look: &str) -> Error {
        Error::unavailable(format!(
            "adding {alias} to reservation {} at {} had an unknown outcome ({failure}), and the reservation could not be checked ({look}); the lock may be held by us now: 'lockrun status {name}' shows it, 'lockrun release {name} --force' breaks it",
            self.config.reservation,
            self.session.server(),
            name = req.name,
        ))
    }

    fn add_refused(&self, alias: &str, code: &str, message: &str) -> Error {
        let lower = message.to_ascii_lowercase();
        let hint = if lower.contains("attribute") {
            "; check ?owner_attribute=: the service model must define that attribute"
        } else if lower.contains("reservation") {
            "; check the reservation id in the backend URL (and that the reservation is active)"
        } else if lower.contains("model") || lower.contains("service") || lower.contains("family") {
            "; check the service model (?model=, default 'Mutex Service'): it must exist in the data model, e.g. imported from Mutex_Package"
        } else {
            ""
        };
        Error::unavailable(format!(
            "CloudShell at {} refused to add service {:?} as {alias} to reservation {}: error {code}: {}{hint}",
            self.session.server(),
            self.config.model,
            self.config.reservation,
            clean(message),
        ))
    }

    /// What is left of `aliases` in `services`, as far as `ours` (our owner
    /// value, when there is an owner attribute) can tell.
    fn remaining(&self, services: &[Service], aliases: &[&str], ours: Option<&str>) -> Remaining {
        let left: Vec<&Service> = services
            .iter()
            .filter(|s| aliases.contains(&s.alias.as_str()))
            .collect();
        if left.is_empty() {
            return Remaining::Gone;
        }
        let (Some(attribute), Some(ours)) = (&self.config.owner_attribute, ours) else {
            return Remaining::Unknown;
        };
        let mine = left
            .iter()
            .filter(|s| s.attribute(attribute) == Some(ours))
            .count();
        match mine {
            0 => Remaining::Taken,
            n if n == left.len() => Remaining::Ours,
            _ => Remaining::Unknown,
        }
    }

    /// `RemoveServicesFromReservation`, which removes whatever has the alias,
    /// so it is never blindly repeated (the module docs say why each case is
    /// safe). `ours` is our owner value when the aliases are ours to remove.
    async fn remove(&mut self, aliases: &[&str], ours: Option<&str>) -> Result<()> {
        let body = xml::remove_services(&self.config.reservation, aliases);
        let listed = aliases.join(", ");
        let mut last = String::new();
        for attempt in 0..=self.session.retries() {
            if attempt > 0 {
                tokio::time::sleep(api::retry_delay(attempt)).await;
            }
            match self.session.call_once(REMOVE, &body).await {
                Ok(_) => return Ok(()),
                Err(Failure::Api { code, message }) => {
                    return Err(Error::unavailable(format!(
                        "CloudShell at {} refused to remove {listed} from reservation {}: error {code}: {}",
                        self.session.server(),
                        self.config.reservation,
                        clean(&message)
                    )));
                }
                Err(Failure::Fatal(e)) => return Err(e),
                // Safe to retry: the request never reached the server.
                Err(Failure::NotSent(m)) => last = m,
                Err(Failure::Unclear(m)) => {
                    let services = self.services().await?;
                    match self.remaining(&services, aliases, ours) {
                        // Carried out (and maybe the lock taken by a waiter since).
                        Remaining::Gone | Remaining::Taken => return Ok(()),
                        // Safe to retry: the server is done with the failed
                        // remove, so it cannot land later, and the alias still
                        // carries our per-acquisition owner value, so nobody
                        // has taken the lock in between.
                        Remaining::Ours => last = m,
                        Remaining::Unknown => {
                            let why = if self.config.owner_attribute.is_none() {
                                "without an owner attribute (?owner_attribute=ATTRIBUTE) lockrun cannot tell whether it is still ours or a new holder's"
                            } else {
                                "it may be the old lock or a new holder's"
                            };
                            return Err(Error::unavailable(format!(
                                "removing {listed} from reservation {} at {} failed ({m}), and {listed} is still there; {why}, so lockrun does not send another remove",
                                self.config.reservation,
                                self.session.server(),
                            )));
                        }
                    }
                }
                // Not retried, whatever the budget: see await_remove.
                Err(Failure::Pending(m)) => return self.await_remove(aliases, ours, &m).await,
            }
        }
        Err(self.session.gave_up(REMOVE, &last))
    }

    /// A remove got no answer in time, so the server may still carry it out
    /// at any moment. It is never sent again: if a second one succeeded, a
    /// waiter could take the lock, and this one, landing then, would delete
    /// the waiter's alias. Instead the reservation is watched until the
    /// aliases are gone (or, with an owner attribute, no longer ours) or the
    /// settle time has passed.
    async fn await_remove(
        &mut self,
        aliases: &[&str],
        ours: Option<&str>,
        failure: &str,
    ) -> Result<()> {
        tracing::info!(aliases = %aliases.join(", "), failure, "no answer to RemoveServicesFromReservation; waiting for it to be carried out");
        let deadline = self.settle_deadline();
        let mut round = 0u32;
        let seen = loop {
            let look = self.services_once().await;
            if let Ok(services) = &look
                && matches!(
                    self.remaining(services, aliases, ours),
                    Remaining::Gone | Remaining::Taken
                )
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break look;
            }
            self.pause_until(round, deadline).await;
            round = round.saturating_add(1);
        };
        let listed = aliases.join(", ");
        let seen = match seen {
            Ok(_) => format!("{listed} was still in the reservation"),
            Err(e) => format!("the reservation could not be read ({e})"),
        };
        Err(Error::unavailable(format!(
            "removing {listed} from reservation {} at {} got {failure}, and {} later {seen}; the server may still carry the removal out, which frees the lock, so lockrun does not send another one (if this one landed after a second had succeeded, it would delete the next holder's lock)",
            self.config.reservation,
            self.session.server(),
            humantime::format_duration(self.config.settle()),
        )))
    }

    /// A release that finally failed: what is left behind and how to clear it.
    fn left_behind(&self, alias: &str, why: &Error) -> Error {
        let (name, slot) = LockName::split_key(alias).map_or_else(
            || (alias.to_owned(), None),
            |(name, slot)| (name.to_string(), slot),
        );
        let every_slot = if slot.is_some() {
            format!(" (this breaks every slot of {name})")
        } else {
            String::new()
        };
        Error::unavailable(format!(
            "{why}; the lock {name} is left behind: service alias {alias} stays in reservation {} and never expires by itself; clear it with: lockrun -b {} release --force {name}{every_slot}",
            self.config.reservation,
            shell_word(&self.config.display_url()),
        ))
    }

    /// Remove our lease's alias. With an owner attribute, only while it
    /// still carries our value.
    async fn remove_ours(&mut self, lease: &CloudShellLease) -> Result<()> {
        let ours = match (self.config.owner_attribute.clone(), &lease.owner_value) {
            (Some(attribute), Some(ours)) => match self.lookup(&lease.alias).await? {
                None => {
                    tracing::warn!(
                        "{} was already gone from reservation {}: someone removed it while the command ran",
                        lease.alias,
                        self.config.reservation
                    );
                    return Ok(());
                }
                Some(service) if service.attribute(&attribute) != Some(ours.as_str()) => {
                    let who = self
                        .holder_of(&service)
                        .map_or_else(|| "another holder".to_owned(), |h| h.describe());
                    // Nothing of ours is left behind, but the lock was broken
                    // and taken while the command ran: worth saying.
                    tracing::warn!(
                        "not removing {}: it now belongs to {who} (the lock was broken and taken while the command ran)",
                        lease.alias
                    );
                    return Ok(());
                }
                Some(_) => Some(ours.clone()),
            },
            _ => None,
        };
        self.remove(&[&lease.alias], ours.as_deref()).await
    }

    /// The slots of `name` and the services behind them.
    fn slots_of(
        &self,
        services: &[Service],
        name: &LockName,
        slots: Option<u32>,
    ) -> Vec<(SlotState, Option<Service>)> {
        let mut keys: Vec<(Option<u32>, String)> = match slots {
            Some(n) => (1..=n)
                .map(|k| (Some(k).filter(|_| n > 1), name.slot_key(k, n)))
                .collect(),
            None => services
                .iter()
                .filter_map(|s| match LockName::split_key(&s.alias) {
                    Some((n, slot)) if &n == name => Some((slot, s.alias.clone())),
                    _ => None,
                })
                .collect(),
        };
        if keys.is_empty() {
            keys.push((None, name.as_str().to_owned()));
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|(slot, key)| {
                let service = services.iter().find(|s| s.alias == key).cloned();
                (self.slot_state(key, slot, service.as_ref()), service)
            })
            .collect()
    }

    fn slot_state(&self, key: String, slot: Option<u32>, service: Option<&Service>) -> SlotState {
        SlotState {
            key,
            slot,
            held: service.is_some(),
            holder: service.and_then(|s| self.holder_of(s)),
            expires_in_ms: None,
            needs_manual_release: true,
            queue: Vec::new(),
            shared_by: None,
            waiters: None,
        }
    }
}

/// `text` as one shell word: as is when it is plain, else single-quoted.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn alias_exists(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("alias already exists")
}

impl Backend for CloudShellBackend {
    type Lease = CloudShellLease;

    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<CloudShellLease> {
        poll_acquire(self, req, wait).await
    }

    fn renew_interval(&self, _req: &LockRequest) -> Option<Duration> {
        self.config.check_interval
    }

    fn release_timeout(&self) -> Duration {
        // An alias never expires: cutting the release short would leave a
        // stale lock behind, so this only backs up release's own bounds. A
        // look, then every attempt of the remove with a look each (all with
        // re-logons), or the settle time of an unanswered one.
        let attempts = self.config.retries.saturating_add(2);
        self.config
            .timeout
            .saturating_mul(attempts.saturating_mul(attempts).saturating_mul(4))
            .saturating_add(self.config.settle())
    }

    async fn renew(&mut self, lease: &mut CloudShellLease) -> Result<Renewal> {
        let reservation = self.config.reservation.clone();
        let Some(service) = self.lookup(&lease.alias).await? else {
            lease.lost = true;
            return Ok(Renewal::Lost(format!(
                "its service alias {} was removed from reservation {reservation}",
                lease.alias
            )));
        };
        if let (Some(attribute), Some(ours)) = (&self.config.owner_attribute, &lease.owner_value)
            && service.attribute(attribute) != Some(ours.as_str())
        {
            lease.lost = true;
            let who = self
                .holder_of(&service)
                .map_or_else(|| "another holder".to_owned(), |h| h.describe());
            return Ok(Renewal::Lost(format!(
                "its service alias {} in reservation {reservation} now belongs to {who}",
                lease.alias
            )));
        }
        Ok(Renewal::Held)
    }

    async fn release(&mut self, lease: CloudShellLease) -> Result<()> {
        if lease.lost {
            tracing::info!(
                alias = lease.alias,
                "not removing the alias: it is no longer ours"
            );
            return Ok(());
        }
        self.remove_ours(&lease)
            .await
            .map_err(|e| self.left_behind(&lease.alias, &e))
    }
}

impl Polling for CloudShellBackend {
    async fn try_acquire(
        &mut self,
        req: &LockRequest,
        slot: u32,
    ) -> Result<Attempt<CloudShellLease>> {
        let alias = req.name.slot_key(slot, req.slots);
        let attributes = self.owner_attributes(req);
        let body = xml::add_service(
            &self.config.reservation,
            &self.config.model,
            &alias,
            &attributes,
        );
        let mut last = String::new();
        for attempt in 0..=self.session.retries() {
            if attempt > 0 {
                tokio::time::sleep(api::retry_delay(attempt)).await;
            }
            match self.session.call_once(ADD, &body).await {
                Ok(_) => {
                    tracing::debug!(alias, "service added: lock taken");
                    return Ok(Attempt::Acquired(self.lease(&alias, slot)));
                }
                Err(Failure::Api { message, .. }) if alias_exists(&message) => {
                    // Who holds it can only be known from an owner attribute;
                    // only then is it worth one more request.
                    let seen = if self.config.owner_attribute.is_some() {
                        self.see(&alias).await
                    } else {
                        Seen::Unknown
                    };
                    return self.existing(req, &alias, slot, seen);
                }
                Err(Failure::Api { code, message }) => {
                    // Code 100 is generic: an unfamiliar wording of "the alias
                    // exists" is still contention if the reservation shows it.
                    if let Seen::Service(service) = self.see(&alias).await {
                        return self.existing(req, &alias, slot, Seen::Service(service));
                    }
                    return Err(self.add_refused(&alias, &code, &message));
                }
                Err(Failure::Fatal(e)) => return Err(e),
                // Safe to retry: the request never reached the server.
                Err(Failure::NotSent(m)) => last = m,
                Err(Failure::Unclear(m)) => {
                    // The server is done with it: one look tells.
                    tracing::info!(alias, failure = %m, "outcome of AddServiceToReservation unclear; looking at the reservation");
                    self.uncertain.insert(alias.clone());
                    match self.lookup(&alias).await {
                        // Safe to retry: not carried out, and it cannot be later.
                        Ok(None) => {
                            self.uncertain.remove(&alias);
                            last = m;
                        }
                        Ok(Some(service)) => {
                            return self.existing(req, &alias, slot, Seen::Service(service));
                        }
                        Err(e) => return Err(self.add_unchecked(req, &alias, &m, &e.to_string())),
                    }
                }
                Err(Failure::Pending(m)) => {
                    // The server may still carry it out: not overtaken by
                    // another add while it may land (the module docs say why).
                    tracing::info!(alias, failure = %m, "no answer to AddServiceToReservation; waiting for it to settle");
                    self.uncertain.insert(alias.clone());
                    match self.await_add(&alias).await {
                        Ok(Some(service)) => {
                            return self.existing(req, &alias, slot, Seen::Service(service));
                        }
                        // Safe to retry: the unanswered add has had its settle
                        // time and is presumed dropped; and any add can at
                        // worst be refused, as the alias is unique.
                        Ok(None) => {
                            last = format!(
                                "{m}, and not carried out within {} after",
                                humantime::format_duration(self.config.settle())
                            );
                        }
                        Err(e) => return Err(self.add_unchecked(req, &alias, &m, &e)),
                    }
                }
            }
        }
        let mut message = self.session.gave_up_text(ADD, &last);
        if self.uncertain.contains(&alias) {
            // A slow server may still carry out an attempt we gave up on.
            message.push_str(&format!(
                "; an attempt may still be carried out by the server: 'lockrun status {}' shows whether {alias} was left behind",
                req.name
            ));
        }
        Err(Error::unavailable(message))
    }

    async fn wait(
        &mut self,
        _req: &LockRequest,
        round: u32,
    ) -> Result<WaitOutcome<CloudShellLease>> {
        // The API has no notification: poll, spread out by full jitter so
        // that waiters do not stampede the server together.
        let delay =
            crate::acquire::backoff_delay(round, self.config.first_poll, self.config.max_poll);
        tokio::time::sleep(delay).await;
        Ok(WaitOutcome::Retry)
    }
}

impl Inspect for CloudShellBackend {
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>> {
        let services = self.services().await?;
        Ok(self
            .slots_of(&services, name, slots)
            .into_iter()
            .map(|(state, _)| state)
            .collect())
    }

    async fn list(&mut self) -> Result<Vec<SlotState>> {
        let services = self.services().await?;
        // Only services of the lock's model: a reservation's ordinary
        // services (a "Firewall" aliased fw1) are not locks.
        let mut locks: Vec<SlotState> = services
            .iter()
            .filter(|s| s.model == self.config.model)
            .filter_map(|s| {
                let (_, slot) = LockName::split_key(&s.alias)?;
                Some(self.slot_state(s.alias.clone(), slot, Some(s)))
            })
            .collect();
        locks.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(locks)
    }

    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>> {
        let services = self.services().await?;
        let held: Vec<(SlotState, Service)> = self
            .slots_of(&services, name, slots)
            .into_iter()
            .filter_map(|(state, service)| Some((state, service?)))
            .collect();
        if let Some((_, other)) = held.iter().find(|(_, s)| s.model != self.config.model) {
            return Err(Error::usage(format!(
                "{} in reservation {} is a {:?} service, not a {:?} lock; lockrun does not remove other services (if your locks use another service model, say so with ?model=)",
                other.alias, self.config.reservation, other.model, self.config.model
            )));
        }
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let aliases: Vec<&str> = held.iter().map(|(state, _)| state.key.as_str()).collect();
        self.remove(&aliases, None).await?;
        Ok(held.into_iter().map(|(state, _)| state).collect())
    }

    fn display_url(&self) -> String {
        self.config.display_url()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_alias_message_means_held() {
        assert!(alias_exists("Service with given alias already exists"));
        assert!(alias_exists("SERVICE WITH GIVEN ALIAS ALREADY EXISTS."));
        assert!(!alias_exists("Reservation 'x' was not found"));
        assert!(!alias_exists("Service model 'Mutex Servic' does not exist"));
    }
}
