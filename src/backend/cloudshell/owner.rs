//! The optional owner attribute: who holds a service-alias lock.
//!
//! The API records no creator for a service, so with `owner_attribute=NAME`
//! lockrun stores its own record in that attribute of the service it adds:
//! `host=H;pid=P;since=RFC3339;user=U;id=RANDOM;cmd=COMMAND`. The random id
//! makes the value unique per acquisition, so "is this alias ours?" has an
//! exact answer even for two processes sharing a host, pid namespace and
//! credentials (the Arvados lesson).

use std::time::UNIX_EPOCH;

use crate::lock::{HolderInfo, rfc3339};

/// Attribute values are kept short: data models may limit their length.
const MAX_COMMAND_CHARS: usize = 100;

/// Our record for `holder`, with a fresh random id.
pub(super) fn encode(holder: &HolderInfo) -> String {
    let id = crate::os::random_up_to(u64::MAX);
    let command: String = holder
        .command
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_COMMAND_CHARS)
        .collect();
    let command = command.trim();
    format!(
        "host={};pid={};since={};user={};id={id:016x};cmd={command}",
        field(&holder.host),
        holder.pid,
        rfc3339(holder.since),
        field(&holder.user),
    )
}

/// Keeps the `;`/`=` structure intact; host and user names never need them.
fn field(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ';' || c == '=' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Read a holder record back. A value lockrun did not write (a recipe user
/// putting `host1:1234` there) is still shown, as the host, rather than hidden.
pub(super) fn decode(value: &str) -> Option<HolderInfo> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let mut holder = HolderInfo::default();
    let mut fields = 0;
    let mut rest = value;
    while !rest.is_empty() {
        let (item, tail) = match rest.split_once(';') {
            // Everything after `cmd=` is the command, `;` included.
            _ if rest.starts_with("cmd=") => (rest, ""),
            Some((item, tail)) => (item, tail),
            None => (rest, ""),
        };
        rest = tail;
        let Some((key, val)) = item.split_once('=') else {
            continue;
        };
        match key {
            "host" => val.clone_into(&mut holder.host),
            "pid" => holder.pid = val.parse().unwrap_or(0),
            "user" => val.clone_into(&mut holder.user),
            "cmd" => val.clone_into(&mut holder.command),
            "since" => {
                holder.since = humantime::parse_rfc3339(val)
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
            }
            _ => {}
        }
        if matches!(key, "host" | "pid") {
            fields += 1;
        }
    }
    if fields < 2 {
        return Some(HolderInfo {
            host: value.to_owned(),
            command: "recorded by another client".to_owned(),
            ..HolderInfo::default()
        });
    }
    Some(holder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let holder = HolderInfo {
            host: "build;box".into(),
            pid: 4242,
            user: "ci".into(),
            command: "sh -c 'a; b=c'\n".into(),
            since: 1_700_000_000,
            fence: None,
            token: None,
        };
        let value = encode(&holder);
        assert!(
            value.starts_with("host=build_box;pid=4242;since=2023-11-14T22:13:20Z;user=ci;id=")
        );
        let back = decode(&value).unwrap();
        assert_eq!(back.host, "build_box");
        assert_eq!(back.pid, 4242);
        assert_eq!(back.since, 1_700_000_000);
        assert_eq!(back.user, "ci");
        assert_eq!(back.command, "sh -c 'a; b=c'");
        assert_ne!(encode(&holder), value, "every acquisition gets its own id");
    }

    #[test]
    fn foreign_values_are_shown_not_hidden() {
        let holder = decode("host1:1234").unwrap();
        assert_eq!(holder.host, "host1:1234");
        assert_eq!(holder.pid, 0);
        assert!(decode("  ").is_none());
    }
}
