//! A nested lockrun for a lock that one of its ancestors holds:
//! `lockrun x -- ./script` where the script runs `lockrun x -- step`.
//!
//! Waiting would wait for ever (the holder waits for the script, which
//! waits for the lock), so the inner lockrun either *re-enters* (runs its
//! command at once, without taking or releasing the lock) when it can prove
//! that an ancestor holds that very lock on that backend, or fails at once
//! (exit 78) when its environment says so but the proof fails.
//!
//! The proof: every holder puts a fresh random token in its holder record
//! and passes `NAME:TOKEN:BACKEND-ID` to its command in `LOCKRUN_HELD`
//! (space-separated, innermost last, so `a -- b -- a` is seen too). The
//! inner lockrun reads the lock's current holder from the backend and
//! re-enters only if the record carries one of the tokens of its
//! environment for that name *and* names a process on this host that is
//! one of its ancestors. A forged or stale environment (a daemon that
//! outlived its lock, a copied variable) therefore never re-enters: the
//! current holder's token differs, or the holder is not an ancestor. The
//! token grants nothing but re-entry: it is not the backend's lease token,
//! so it cannot renew or release anything, and `status` never prints it.
//!
//! Backends whose holder record is not written by the holder (PostgreSQL:
//! the server's session list; CloudShell: the owner attribute, which has no
//! room for a token) are proven by the ancestor alone: the server itself
//! says which session or alias holds the lock.

use std::ffi::OsString;

use crate::backend::{AnyBackend, BackendConfig};
use crate::error::{Error, Result};
use crate::exit::Exit;
use crate::lock::{HolderInfo, Inspect, LockName, SlotState};
use crate::signals::Signals;

/// The variable that carries the locks a command runs under.
pub(crate) const HELD_ENV: &str = "LOCKRUN_HELD";

/// A fresh token for one acquisition: 128 random bits, hex.
pub(crate) fn new_token() -> String {
    format!("{:032x}", crate::os::random_u128())
}

/// A short, stable name for a backend URL (FNV-1a of its display form), so
/// that `LOCKRUN_HELD` needs no quoting whatever the URL contains.
pub(crate) fn backend_id(display_url: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in display_url.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `LOCKRUN_HELD` for the command of a holder of `name` with `token`: what
/// lockrun inherited, plus this lock.
pub(crate) fn held_env(name: &LockName, token: &str, display_url: &str) -> (String, String) {
    let mut value = std::env::var(HELD_ENV).unwrap_or_default();
    if !value.is_empty() {
        value.push(' ');
    }
    value.push_str(&format!("{name}:{token}:{}", backend_id(display_url)));
    (HELD_ENV.to_owned(), value)
}

/// The tokens the environment claims for `name` on the backend `id`.
fn claimed_tokens(held: &str, name: &LockName, id: &str) -> Vec<String> {
    held.split_ascii_whitespace()
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            let (n, token, backend) = (parts.next()?, parts.next()?, parts.next()?);
            (n == name.as_str() && backend == id && !token.is_empty()).then(|| token.to_owned())
        })
        .collect()
}

/// Whether the environment mentions `name` at all (before any backend is
/// contacted: the common, un-nested run pays nothing).
fn mentions(name: &LockName) -> bool {
    let held = std::env::var(HELD_ENV).unwrap_or_default();
    let in_held = held
        .split_ascii_whitespace()
        .any(|entry| entry.split(':').next() == Some(name.as_str()));
    in_held || std::env::var("LOCKRUN_NAME").is_ok_and(|n| n == name.as_str())
}

/// Whether `pid` is one of this process's ancestors (not itself).
pub(crate) fn is_ancestor(pid: u32) -> bool {
    let Ok(target) = i32::try_from(pid) else {
        return false;
    };
    let mut current = nix::unistd::getppid().as_raw();
    // A bound against a cycle read from a changing /proc.
    for _ in 0..4096 {
        if current == target {
            return true;
        }
        if current <= 1 {
            return false;
        }
        match crate::os::proc_stat(current) {
            Some(stat) => current = stat.ppid,
            None => return false,
        }
    }
    false
}

fn this_host() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

/// The verdict on one holder record.
fn proves(holder: &HolderInfo, tokens: &[String], token_required: bool) -> bool {
    let token_ok = match &holder.token {
        Some(token) => tokens.iter().any(|t| t == token),
        None => !token_required,
    };
    token_ok && holder.host == this_host() && is_ancestor(holder.pid)
}

/// What a nested lockrun should do.
pub(crate) enum Nested {
    /// Not nested for this lock: take it as usual.
    No,
    /// An ancestor holds it: run the command at once.
    Reenter,
}

/// Decide whether this lockrun is nested inside a holder of `name` on
/// `backend`. `Err` (exit 78) when the environment says so but the proof
/// fails: waiting would be waiting for itself, or for a lock that the
/// environment wrongly claims.
pub(crate) async fn check(
    name: &LockName,
    slots: Option<u32>,
    shared: bool,
    backend: &BackendConfig,
    raw_backend: Option<&str>,
) -> Result<Nested> {
    // `lockrun acquire` in the job: its keeper holds the lock for one of
    // our ancestors, and its state file says with which token.
    let kept = crate::keeper::kept_for_this_job(name, backend, raw_backend);
    if !mentions(name) && kept.is_none() {
        return Ok(Nested::No);
    }
    let mut backend = AnyBackend::connect(backend.clone()).await?;
    let url = backend.display_url();
    let id = backend_id(&url);
    let held = std::env::var(HELD_ENV).unwrap_or_default();
    let tokens = claimed_tokens(&held, name, &id);
    let parent_says = std::env::var("LOCKRUN_NAME").is_ok_and(|n| n == name.as_str())
        && std::env::var("LOCKRUN_BACKEND").is_ok_and(|b| b == url);
    if tokens.is_empty() && !parent_says && kept.is_none() {
        // The name, but on another backend: a different lock.
        return Ok(Nested::No);
    }
    let token_required = !matches!(backend, AnyBackend::Postgres(_) | AnyBackend::CloudShell(_));
    let states = backend.status(name, slots).await?;
    // An ancestor's shared hold does not cover an exclusive request: other
    // readers may hold the lock beside it.
    let covers = |s: &&SlotState| s.held && (shared || s.shared_by.is_none());
    let shared_ancestor = |states: &[SlotState], by: &dyn Fn(&HolderInfo) -> bool| {
        !shared
            && states
                .iter()
                .filter(|s| s.held && s.shared_by.is_some())
                .filter_map(|s| s.holder.as_ref())
                .any(by)
    };
    let by_ancestor = |h: &HolderInfo| proves(h, &tokens, token_required);
    if states
        .iter()
        .filter(covers)
        .filter_map(|s| s.holder.as_ref())
        .any(by_ancestor)
    {
        tracing::info!(%name, "an ancestor holds the lock: re-entering");
        return Ok(Nested::Reenter);
    }
    if shared_ancestor(&states, &by_ancestor) {
        return Err(held_shared(name, &url));
    }
    if let Some((keeper, token)) = &kept {
        let by_keeper = |h: &HolderInfo| {
            h.pid == *keeper && h.token.as_ref() == Some(token) && h.host == this_host()
        };
        if states
            .iter()
            .filter(covers)
            .filter_map(|s| s.holder.as_ref())
            .any(by_keeper)
        {
            tracing::info!(%name, keeper, "this job's keeper holds the lock: re-entering");
            return Ok(Nested::Reenter);
        }
        if shared_ancestor(&states, &by_keeper) {
            return Err(held_shared(name, &url));
        }
        if tokens.is_empty() && !parent_says {
            // Only the state file claimed it, and the backend says
            // otherwise: take the lock as usual.
            return Ok(Nested::No);
        }
    }
    let now = match states.iter().find(|s| s.held) {
        None => "it is not held now".to_owned(),
        Some(s) => match &s.holder {
            Some(h) => format!(
                "it is held by {}, not by an ancestor of this process",
                h.describe()
            ),
            None => "it is held, by a holder lockrun cannot identify".to_owned(),
        },
    };
    Err(Error::NotReentrant(crate::ui::sanitize(&format!(
        "the environment says this runs under the lock {name} at {url} (LOCKRUN_NAME/{HELD_ENV}), but {now}; not waiting for a lock this process may hold itself; to take it afresh, run lockrun with {HELD_ENV} and LOCKRUN_NAME unset"
    ))))
}

/// An exclusive request nested in an ancestor's shared hold: it can
/// neither re-enter (other readers may hold the lock beside the ancestor)
/// nor wait (the ancestor waits for this process).
fn held_shared(name: &LockName, url: &str) -> Error {
    Error::NotReentrant(crate::ui::sanitize(&format!(
        "an ancestor of this process holds the lock {name} at {url} shared (--shared), and an exclusive lock cannot be taken inside it: other readers may hold it too, and waiting would wait for the ancestor; take the outer lock exclusively, or this one with --shared"
    )))
}

/// Re-enter: become the command (exec), which runs under the ancestor's
/// lock and inherits its LOCKRUN_* variables; lockrun takes and releases
/// nothing. Returns only if the command could not be executed.
pub(crate) fn exec(program: &OsString, args: &[OsString], signals: &mut Signals) -> Result<Exit> {
    let prepared = crate::spawn::Prepared::new(program, args, &[])
        .map_err(|e| crate::supervise::spawn_error(program, &e))?;
    match crate::spawn::exec_in_place(&prepared, || signals.pending()) {
        crate::spawn::InPlace::Interrupted(signal) => Err(Error::interrupted(signal)),
        crate::spawn::InPlace::Failed(e) => Err(crate::supervise::spawn_error(program, &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn held_entries_are_matched_by_name_and_backend() {
        let x = LockName::parse(OsStr::new("x")).unwrap();
        let id = backend_id("file:///tmp/l");
        let held = format!(
            "y:aaa:{id} x:bbb:{} x:ccc:{id} junk x::{id}",
            backend_id("redis://h")
        );
        assert_eq!(claimed_tokens(&held, &x, &id), vec!["ccc".to_owned()]);
        assert_ne!(backend_id("file:///a"), backend_id("file:///b"));
    }

    #[test]
    fn tokens_are_128_bits_of_hex_and_fresh_each_time() {
        let (a, b) = (super::new_token(), super::new_token());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn a_holder_proves_only_with_the_token_and_as_an_ancestor() {
        let parent = nix::unistd::getppid().as_raw() as u32;
        let mut holder = HolderInfo {
            host: this_host(),
            pid: parent,
            token: Some("t1".into()),
            ..HolderInfo::default()
        };
        let tokens = vec!["t1".to_owned()];
        assert!(proves(&holder, &tokens, true));
        assert!(!proves(&holder, &["t2".to_owned()], true), "a stale token");
        holder.pid = std::process::id();
        assert!(!proves(&holder, &tokens, true), "itself is no ancestor");
        holder.pid = parent;
        holder.token = None;
        assert!(!proves(&holder, &tokens, true));
        assert!(proves(&holder, &tokens, false), "server-side records");
        holder.host = "elsewhere".into();
        assert!(!proves(&holder, &tokens, false));
    }
}
