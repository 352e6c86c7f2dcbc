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
//! * An `AddServiceToReservation` whose outcome is unknown (timeout, dropped
//!   connection, 5xx) is resolved by looking at the reservation, never by
//!   guessing. With an owner attribute the answer is exact (the value
//!   carries a random per-acquisition id). Without one, an alias that
//!   exists after such a failure may be ours or another holder's; lockrun
//!   then stops with 69 and says so, rather than run the command without
//!   being sure, wait (maybe forever) for itself, or break another's lock.
//!   The price: a failure of unknown outcome while someone else holds the
//!   lock also ends in 69 instead of waiting on; an owner attribute avoids it.
//! * Waiting polls with capped exponential backoff and full jitter.
//! * There is no TTL, so a killed holder leaves the alias behind: `status`
//!   says so, and `release NAME --force` removes it. While the command runs,
//!   lockrun checks every `check` interval that the alias is still there
//!   (and still ours, with an owner attribute): if someone broke the lock,
//!   another process may now hold it, and the command is stopped (exit 76)
//!   instead of running on unprotected. A failed check is not a verdict
//!   (the lock cannot expire by itself), so only a confirmed loss stops it.
//! * `RemoveServicesFromReservation` removes whatever has the alias, so a
//!   release is only sent while the lock is known to be ours, and a removal
//!   with an unknown outcome is never blindly repeated: a waiter may have
//!   taken the lock in between.
//!
//! Slots are aliases `NAME@k`, which no valid NAME can collide with.

mod api;
mod config;
mod owner;
mod xml;

use std::collections::HashSet;
use std::time::Duration;

use self::api::{Failure, Session, clean};
use self::xml::Service;
use crate::error::{Error, Result};
use crate::lock::{
    Attempt, Backend, HolderInfo, Lease, LockName, LockRequest, Renewal, SlotState, WaitOutcome,
};

pub use self::config::{CloudShellConfig, Credentials};

const ADD: &str = "AddServiceToReservation";
const REMOVE: &str = "RemoveServicesFromReservation";
const DETAILS: &str = "GetReservationDetails";

pub struct CloudShellBackend {
    config: CloudShellConfig,
    session: Session,
    /// Our owner-attribute value, fixed for this process's acquisition.
    owner_value: Option<String>,
    /// Aliases whose `AddServiceToReservation` had an unknown outcome: if
    /// one of them exists later, it may be ours.
    uncertain: HashSet<String>,
}

pub struct CloudShellLease {
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

/// What the reservation says about an alias.
enum Seen {
    Service(Service),
    Absent,
    /// Not looked at, or the look failed.
    Unknown,
}

impl CloudShellBackend {
    pub async fn connect(config: CloudShellConfig) -> Result<Self> {
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

    /// `RemoveServicesFromReservation`, which removes whatever has the alias.
    /// After an unknown outcome it is repeated only if the aliases are still
    /// provably ours (`ours`): a waiter may have taken the lock meanwhile.
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
                Err(Failure::NotSent(m)) => last = m,
                Err(Failure::Unknown(m)) => {
                    let services = self.services().await?;
                    let remaining: Vec<&Service> = services
                        .iter()
                        .filter(|s| aliases.contains(&s.alias.as_str()))
                        .collect();
                    if remaining.is_empty() {
                        return Ok(());
                    }
                    let still_ours = match (&self.config.owner_attribute, ours) {
                        (Some(attribute), Some(ours)) => remaining
                            .iter()
                            .all(|s| s.attribute(attribute) == Some(ours)),
                        _ => false,
                    };
                    if !still_ours {
                        return Err(Error::unavailable(format!(
                            "removing {listed} from reservation {} at {} had an unknown outcome ({m}), and it is in the reservation now; it may be ours or a new holder's, so it is left alone: 'lockrun status' shows it, 'lockrun release --force' breaks it",
                            self.config.reservation,
                            self.session.server(),
                        )));
                    }
                    last = m;
                }
            }
        }
        Err(self.session.gave_up(REMOVE, &last))
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
            waiters: None,
        }
    }
}

fn alias_exists(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("alias already exists")
}

impl Backend for CloudShellBackend {
    type Lease = CloudShellLease;

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
                Err(Failure::NotSent(m)) => last = m,
                Err(Failure::Unknown(m)) => {
                    tracing::info!(alias, failure = %m, "outcome of AddServiceToReservation unknown; looking at the reservation");
                    self.uncertain.insert(alias.clone());
                    match self.lookup(&alias).await {
                        Ok(None) => last = m,
                        Ok(Some(service)) => {
                            return self.existing(req, &alias, slot, Seen::Service(service));
                        }
                        Err(e) => {
                            return Err(Error::unavailable(format!(
                                "adding {alias} to reservation {} at {} had an unknown outcome ({m}), and the reservation could not be checked ({e}); the lock may be held by us now: 'lockrun status {name}' shows it, 'lockrun release {name} --force' breaks it",
                                self.config.reservation,
                                self.session.server(),
                                name = req.name,
                            )));
                        }
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
        let delay = crate::lock::backoff_delay(round, self.config.first_poll, self.config.max_poll);
        tokio::time::sleep(delay).await;
        Ok(WaitOutcome::Retry)
    }

    fn renew_interval(&self, _req: &LockRequest) -> Option<Duration> {
        self.config.check_interval
    }

    fn release_timeout(&self) -> Duration {
        // An alias never expires: cutting the remove's own retries short
        // would leave a stale lock behind. A lookup plus every attempt of
        // the remove, twice over for re-logons.
        self.config.timeout * 2 * (self.config.retries + 2)
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
        let ours = match (self.config.owner_attribute.clone(), &lease.owner_value) {
            (Some(attribute), Some(ours)) => match self.lookup(&lease.alias).await? {
                None => return Ok(()),
                Some(service) if service.attribute(&attribute) != Some(ours.as_str()) => {
                    let who = self
                        .holder_of(&service)
                        .map_or_else(|| "another holder".to_owned(), |h| h.describe());
                    return Err(Error::unavailable(format!(
                        "not removing {}: it now belongs to {who}",
                        lease.alias
                    )));
                }
                Some(_) => Some(ours.as_str()),
            },
            _ => None,
        };
        self.remove(&[&lease.alias], ours).await
    }

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
