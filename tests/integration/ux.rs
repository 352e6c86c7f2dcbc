//! What users see outside the happy path: the waiting lines in a CI log,
//! and the edge cases of issue 14 (item 5).

use std::process::Stdio;

use crate::util::*;

/// The test-only knob for the "still waiting" interval (a minute otherwise).
const LOG_INTERVAL_ENV: &str = "LOCKRUN_TEST_WAIT_LOG_INTERVAL";

fn hold(sb: &Sandbox, name: &str) -> Holder {
    Holder::spawn(sb.lockrun(&[]), &sb.path(&format!("{name}.ready")), name)
}

/// A waiter whose stderr is a file, as in a CI log.
fn waiter_logging_to(sb: &Sandbox, log: &std::path::Path, extra: &[&str], name: &str) -> Proc {
    let mut cmd = sb.lockrun(extra);
    cmd.args([name, "--", "true"])
        .env(LOG_INTERVAL_ENV, "200ms")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Proc::spawn(cmd, &format!("waiter for {name}"))
}

fn wait_for_text(path: &std::path::Path, needle: &str) -> String {
    let mut text = String::new();
    wait_until(&format!("{needle:?} in {}", path.display()), SOON, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.contains(needle)
    });
    text
}

#[test]
fn a_wait_in_a_log_says_who_it_waits_for_then_keeps_saying_it() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "ci-log");
    let log = sb.path("waiter.log");
    let mut waiter = waiter_logging_to(&sb, &log, &["-v"], "ci-log");
    let text = wait_for_text(&log, "still waiting for ci-log after");
    let start = text
        .lines()
        .find(|l| l.starts_with("lockrun: waiting for ci-log"))
        .unwrap_or_else(|| panic!("no start line in {text:?}"));
    let holder_pid = holder.proc.pid();
    assert!(
        start.contains(&format!(", held by "))
            && start.contains(&format!(" pid {holder_pid} (sh -c ")),
        "{start}"
    );
    assert_eq!(holder.release(), 0);
    assert!(waiter.wait_timeout(SOON).success());
    let bytes = std::fs::read(&log).unwrap();
    assert!(
        !bytes.contains(&0x1b),
        "escape bytes in {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let text = String::from_utf8(bytes).unwrap();
    for debug in ["Some(", "None", "HolderInfo", "{ "] {
        assert!(!text.contains(debug), "Debug text {debug:?} in {text:?}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("lockrun: waiting for"))
            .count(),
        1,
        "{text}"
    );
    // Nothing about waiting once the lock is acquired.
    let last_wait = text.rfind("waiting for").unwrap();
    let acquired = text.find("acquired").expect("-v logs the acquisition");
    assert!(last_wait < acquired, "{text}");
}

#[test]
fn quiet_waits_silently_in_a_log() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "ci-quiet");
    let log = sb.path("quiet.log");
    let mut waiter = waiter_logging_to(&sb, &log, &["-q", "-w", "1s"], "ci-quiet");
    assert_eq!(code(waiter.wait_timeout(SOON)), 75);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
    drop(holder);
}
