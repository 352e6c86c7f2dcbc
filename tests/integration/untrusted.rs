//! Text lockrun did not write (holder records, server messages) is
//! untrusted: a record is believed only when the kernel agrees, and its
//! control characters never reach the terminal raw.

use std::process::{Command, Stdio};

use crate::util::*;

const EVIL: &str = "evil\x1b]0;pwned\x07";
const EVIL_SHOWN: &str = "evil\\x1b]0;pwned\\x07";

fn assert_no_raw_controls(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.iter().any(|&b| b == 0x1b || b == 0x07),
        "{what} has a raw ESC/BEL: {:?}",
        String::from_utf8_lossy(bytes)
    );
}

#[test]
fn a_holders_escape_sequences_are_shown_escaped() {
    let sandbox = Sandbox::new();
    let ready = sandbox.path("ready");
    let mut holder = sandbox.lockrun(&[
        "evil",
        "--",
        "sh",
        "-c",
        &format!("echo $$ > {}; read line", ready.display()),
        EVIL,
    ]);
    holder.stdin(Stdio::piped()).stderr(Stdio::null());
    let mut holder = Proc::spawn(holder, "holder with ESC in its command");
    wait_for_content(&ready);

    let busy = run_timeout(sandbox.lockrun(&["-n", "evil", "--", "true"]), SOON);
    assert_eq!(code(busy.status), 75, "{}", stderr_of(&busy));
    assert_no_raw_controls("the busy message", &busy.stderr);
    assert!(
        stderr_of(&busy).contains(EVIL_SHOWN),
        "{}",
        stderr_of(&busy)
    );

    for args in [&["status", "evil"][..], &["list"][..]] {
        let out = run_timeout(sandbox.lockrun(args), SOON);
        assert!(out.status.success(), "{args:?}: {}", stderr_of(&out));
        assert_no_raw_controls(&format!("{args:?} stdout"), &out.stdout);
        assert_no_raw_controls(&format!("{args:?} stderr"), &out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(EVIL_SHOWN), "{args:?}: {text}");
    }

    // JSON keeps the raw string (JSON escapes it itself).
    let json = run_timeout(sandbox.lockrun(&["status", "evil", "--json"]), SOON);
    assert_no_raw_controls("status --json", &json.stdout);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let command = doc["slots"][0]["holder"]["command"].as_str().unwrap();
    assert!(command.ends_with(EVIL), "{command:?}");

    drop(holder.child.stdin.take());
    holder.wait_timeout(SOON);
}

/// A record left by an earlier holder, under a flock(1) holder that writes
/// none: neither the busy message nor `status` names the stale holder.
#[test]
fn a_stale_record_under_a_flock_holder_is_not_shown_as_the_holder() {
    require("flock", "util-linux");
    let sandbox = Sandbox::new();
    let file = sandbox.lock_file("stale");
    // A pid that is surely dead: a child we reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let record = serde_json::json!({
        "host": "old-host",
        "pid": dead_pid,
        "user": "old-user",
        "command": "stale-command-from-before",
        "since": 1,
        "fence": 5,
    });
    std::fs::write(&file, format!("{record}\n")).unwrap();

    let ready = sandbox.path("ready");
    let mut flock = Command::new("flock");
    flock
        .arg(&file)
        .args([
            "sh",
            "-c",
            &format!("echo $$ > {}; read line", ready.display()),
        ])
        .stdin(Stdio::piped());
    let mut flock = Proc::spawn(flock, "flock(1) holder");
    wait_for_content(&ready);

    let busy = run_timeout(sandbox.lockrun(&["-n", "stale", "--", "true"]), SOON);
    assert_eq!(code(busy.status), 75, "{}", stderr_of(&busy));
    let status = run_timeout(sandbox.lockrun(&["status", "stale"]), SOON);
    for (what, text) in [
        ("busy message", stderr_of(&busy)),
        (
            "status",
            String::from_utf8_lossy(&status.stdout).into_owned(),
        ),
    ] {
        assert!(
            !text.contains("stale-command-from-before") && !text.contains("old-host"),
            "{what} shows the stale record: {text}"
        );
        assert!(
            text.contains(&format!("pid {}", flock.pid())),
            "{what} does not name flock(1) (pid {}): {text}",
            flock.pid()
        );
    }

    drop(flock.child.stdin.take());
    flock.wait_timeout(SOON);
}
