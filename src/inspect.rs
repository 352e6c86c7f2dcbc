//! `status`, `list` and `release --force`: who holds what, since when.

use serde_json::{Value, json};

use crate::backend::{AnyBackend, BackendConfig};
use crate::cli::{GlobalArgs, ListArgs, ReleaseArgs, StatusArgs};
use crate::error::{Error, Result};
use crate::exit::Exit;
use crate::lock::{Inspect, LockName, SlotState, compact_duration, rfc3339, unix_now};

pub(crate) const STATUS_SCHEMA: &str = "lockrun.status/1";
pub(crate) const LIST_SCHEMA: &str = "lockrun.list/1";

pub(crate) async fn status(args: &StatusArgs, global: &GlobalArgs) -> Result<Exit> {
    let name = LockName::parse(&args.name)?;
    let config = BackendConfig::parse(global.backend.as_deref())?;
    must_exist(&config)?;
    // A lock that `lockrun acquire` kept and lost: said on stderr, so that
    // stdout stays one line per slot.
    for note in crate::keeper::lost_notes(&name, &config, global.backend.as_deref()) {
        eprintln!("{note}");
    }
    let mut backend = AnyBackend::connect(config).await?;
    let slots = backend.status(&name, args.slots).await?;
    let note = backend.note().await;
    let url = backend.display_url();
    let answer = if args.exit_status && slots.iter().any(|s| s.held) {
        Exit::Held
    } else {
        Exit::Success
    };
    if let Some(note) = &note {
        eprintln!("lockrun: {}", crate::ui::error_line(note));
    }
    let printed = if args.json {
        let doc = json!({
            "schema": STATUS_SCHEMA,
            "name": name.as_str(),
            "backend": url,
            "held": slots.iter().any(|s| s.held),
            "slots": slots.iter().map(slot_json).collect::<Vec<_>>(),
        });
        print_lines([doc.to_string()])
    } else {
        print_lines(slots.iter().map(slot_line))
    }?;
    Ok(if printed == Exit::Success {
        answer
    } else {
        printed
    })
}

/// `lockrun --complete-names [URL]`, for the shell completions: every lock
/// name the backend (URL, else `LOCKRUN_BACKEND`, else the default) knows,
/// one a line. Never an error message or a wait at a prompt: a backend that
/// fails or takes more than two seconds yields no names, and exit 0.
pub(crate) fn complete_names(url: Option<&std::ffi::OsString>) -> u8 {
    let url = url
        .and_then(|u| u.to_str().map(str::to_owned))
        .or_else(|| std::env::var("LOCKRUN_BACKEND").ok());
    let Ok(config) = BackendConfig::parse(url.as_deref()) else {
        return 0;
    };
    if must_exist(&config).is_err() {
        return 0;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 0;
    };
    let locks = runtime.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(2), async {
            AnyBackend::connect(config).await?.list().await
        })
        .await
    });
    let Ok(Ok(locks)) = locks else { return 0 };
    let mut names: Vec<&str> = locks
        .iter()
        .map(|s| s.key.split('@').next().unwrap_or(&s.key))
        .collect();
    names.dedup();
    let _ = print_lines(names.into_iter().map(str::to_owned));
    0
}

/// `status` and `list` only read: a mistyped `file:///DIR` must not create
/// DIR (as taking a lock there does), but say that nothing is there.
fn must_exist(config: &BackendConfig) -> Result<()> {
    if let BackendConfig::File(crate::backend::file::FileConfig { dir: Some(dir) }) = config
        && !dir.exists()
    {
        return Err(Error::unavailable(format!(
            "lock directory {} does not exist (lockrun creates it when a lock is first taken there); check the --backend URL",
            dir.display()
        )));
    }
    Ok(())
}

pub(crate) async fn list(args: &ListArgs, global: &GlobalArgs) -> Result<Exit> {
    let config = BackendConfig::parse(global.backend.as_deref())?;
    must_exist(&config)?;
    let mut backend = AnyBackend::connect(config).await?;
    let locks = backend.list().await?;
    let url = backend.display_url();
    if args.json {
        let doc = json!({
            "schema": LIST_SCHEMA,
            "backend": url,
            "locks": locks.iter().map(slot_json).collect::<Vec<_>>(),
        });
        print_lines([doc.to_string()])
    } else if locks.is_empty() {
        eprintln!("lockrun: no locks at {url}");
        Ok(Exit::Success)
    } else {
        print_lines(locks.iter().map(slot_line))
    }
}

pub(crate) async fn release(args: &ReleaseArgs, global: &GlobalArgs) -> Result<Exit> {
    let name = LockName::parse(&args.name)?;
    if !args.force {
        return Err(Error::usage(format!(
            "release breaks a lock whoever holds it; say 'lockrun release {name} --force' if that is what you want"
        )));
    }
    let mut backend = AnyBackend::connect(BackendConfig::parse(global.backend.as_deref())?).await?;
    let removed = backend.force_release(&name, args.slots).await?;
    if removed.is_empty() {
        eprintln!("lockrun: {name} was not held");
    }
    for slot in &removed {
        let whose = slot.holder.as_ref().map_or_else(
            || "an unknown holder".to_owned(),
            crate::lock::HolderInfo::describe,
        );
        let line = format!("lockrun: released {} (was held by {whose})", slot.key);
        eprintln!("{}", crate::ui::sanitize(&line));
    }
    Ok(Exit::Success)
}

/// Write `lines` to stdout. A reader that stops early (`lockrun list |
/// head -1`) is not an error: stop writing and exit 0, as ripgrep does.
fn print_lines(lines: impl IntoIterator<Item = String>) -> Result<Exit> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in lines {
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Exit::Success),
            Err(e) => return Err(Error::internal(format!("cannot write to stdout: {e}"))),
        }
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::internal(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(Exit::Success),
    }
}

/// One human line per slot: "NAME: held by HOST pid N (CMD) for 3m12s; fence 7".
/// Control characters from a holder record are never sent to the terminal.
fn slot_line(slot: &SlotState) -> String {
    let mut text = crate::ui::sanitize(&slot_text(slot));
    // The queue, first in line first, one line each.
    for (i, waiter) in slot.queue.iter().enumerate() {
        let who = waiter.holder.as_ref().map_or_else(
            || format!("{} (no record: etcdctl or another client)", waiter.key),
            crate::lock::HolderInfo::describe,
        );
        let place = crate::ui::ordinal(u32::try_from(i).unwrap_or(u32::MAX).saturating_add(2));
        text.push_str(&format!(
            "\n  {place} in line: {}",
            crate::ui::sanitize(&who)
        ));
    }
    text
}

fn slot_text(slot: &SlotState) -> String {
    if !slot.held {
        return format!("{}: free", slot.key);
    }
    let mut line = match (&slot.holder, slot.shared_by) {
        (Some(holder), None) => format!("{}: held by {}", slot.key, holder.describe()),
        (None, None) => format!("{}: held (holder unknown)", slot.key),
        (Some(holder), Some(1)) => {
            format!("{}: held shared by {}", slot.key, holder.describe())
        }
        (Some(holder), Some(n)) => format!(
            "{}: held shared by {n} holders, among them {}",
            slot.key,
            holder.describe()
        ),
        (None, Some(n)) => format!("{}: held shared by {n} (holders unknown)", slot.key),
    };
    if let Some(holder) = &slot.holder {
        if holder.since > 0 {
            line.push_str(&format!(", since {}", rfc3339(holder.since)));
        }
        if !holder.user.is_empty() {
            line.push_str(&format!(", user {}", holder.user));
        }
        if let Some(fence) = holder.fence {
            line.push_str(&format!(", fence {fence}"));
        }
    }
    if let Some(ms) = slot.expires_in_ms {
        line.push_str(&format!(
            ", lease expires in {}",
            compact_duration(std::time::Duration::from_millis(ms))
        ));
    }
    if let Some(waiters) = slot.waiters.filter(|&n| n > 0) {
        line.push_str(&format!(", {waiters} waiting"));
    }
    if slot.needs_manual_release {
        line.push_str(&format!(
            "; never expires by itself: if that holder is gone, run 'lockrun release {} --force'",
            slot.key.split('@').next().unwrap_or(&slot.key)
        ));
    }
    line
}

/// One slot in the versioned JSON schemas ("lockrun.status/1", "lockrun.list/1").
/// Every key is always present (null when unknown); docs/json-schema.md
/// documents them and tests/integration/json.rs pins them. Adding a key is a
/// compatible change; renaming, removing or retyping one needs a new version.
fn slot_json(slot: &SlotState) -> Value {
    let holder = slot.holder.as_ref();
    let name = slot.key.split('@').next().unwrap_or(&slot.key);
    json!({
        "name": name,
        "key": slot.key,
        "slot": slot.slot,
        "held": slot.held,
        "mode": slot.held.then_some(if slot.shared_by.is_some() { "shared" } else { "exclusive" }),
        "shared_holders": slot.shared_by,
        "holder": holder.map(|h| json!({
            "host": h.host,
            "pid": h.pid,
            "user": h.user,
            "command": h.command,
        })),
        "since": holder.filter(|h| h.since > 0).map(|h| rfc3339(h.since)),
        "expires": slot.expires_in_ms.map(|ms| rfc3339(unix_now() + ms.div_ceil(1000))),
        "expires_in_ms": slot.expires_in_ms,
        "fence": holder.and_then(|h| h.fence),
        "waiters": slot.waiters,
        "needs_manual_release": slot.needs_manual_release,
        "queue": slot.queue.iter().map(|w| json!({
            "key": w.key,
            "revision": w.revision,
            "holder": w.holder.as_ref().map(|h| json!({
                "host": h.host,
                "pid": h.pid,
                "user": h.user,
                "command": h.command,
            })),
            "since": w.holder.as_ref().filter(|h| h.since > 0).map(|h| rfc3339(h.since)),
        })).collect::<Vec<_>>(),
    })
}
