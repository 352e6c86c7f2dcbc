//! Shared (reader) locks, `--shared`, on the file backend: flock(1) `-s`
//! interop both ways, shared holders running together while an exclusive
//! one waits, exec mode, the child's `LOCKRUN_MODE`, and what `--shared`
//! refuses. The Redis, etcd and PostgreSQL tests live with their backends.

use std::io::BufReader;
use std::process::{Command, Stdio};

use crate::util::*;

/// A lockrun holding NAME (with `extra` options, e.g. `-s`) until released.
fn hold(sb: &Sandbox, name: &str, tag: &str, extra: &[&str]) -> Holder {
    Holder::spawn(
        sb.lockrun(extra),
        &sb.path(&format!("{name}.{tag}.ready")),
        name,
    )
}

/// flock(1) with `args` (`-n -s`, `-n -x`) on NAME's lock file: its exit code.
fn flock_code(sb: &Sandbox, args: &[&str], name: &str) -> i32 {
    let mut cmd = Command::new("flock");
    cmd.args(args).arg(sb.lock_file(name)).arg("true");
    code(run_timeout(cmd, SOON).status)
}

/// flock(1) with `args` holding NAME's lock file until its stdin closes.
fn flock_holder(sb: &Sandbox, args: &[&str], name: &str) -> Proc {
    let ready = sb.path(&format!("{name}.flock.ready"));
    // A previous holder's file would pass for this one's before it holds.
    let _ = std::fs::remove_file(&ready);
    let mut cmd = Command::new("flock");
    cmd.args(args)
        .arg(sb.lock_file(name))
        .arg("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}; read line; exit 0", ready.display()));
    cmd.stdin(Stdio::piped());
    let proc = Proc::spawn(cmd, "flock holder");
    wait_for_content(&ready);
    proc
}

fn release(mut proc: Proc) {
    drop(proc.child.stdin.take());
    assert!(proc.wait_timeout(SOON).success(), "{} failed", proc.name);
}

fn lockrun_code(sb: &Sandbox, args: &[&str]) -> i32 {
    code(run_timeout(sb.lockrun(args), SOON).status)
}

fn status_json(sb: &Sandbox, name: &str) -> serde_json::Value {
    let out = run_timeout(sb.lockrun(&["status", "--json", name]), SOON);
    assert!(out.status.success(), "{}", stderr_of(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn shared_holders_run_together_while_an_exclusive_one_waits() {
    require("flock", "util-linux");
    let sb = Sandbox::new();
    // Each holder returns once its command runs and it keeps running until
    // released: three running at once is the overlap, proven by files.
    let readers: Vec<Holder> = (0..3)
        .map(|i| hold(&sb, "db", &format!("r{i}"), &["-s"]))
        .collect();
    assert_eq!(lockrun_code(&sb, &["-s", "-n", "db", "--", "true"]), 0);
    assert_eq!(lockrun_code(&sb, &["-n", "db", "--", "true"]), 75);

    let out = run_timeout(sb.lockrun(&["status", "db"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("db: held shared by 3 holders"), "{text}");
    let doc = status_json(&sb, "db");
    assert_eq!(doc["slots"][0]["mode"], "shared", "{doc}");
    assert_eq!(doc["slots"][0]["shared_holders"], 3, "{doc}");

    // An exclusive lockrun waits in the kernel behind them.
    let ran = sb.path("exclusive-ran");
    let mut cmd = sb.lockrun(&["-v", "db", "--", "touch", ran.to_str().unwrap()]);
    cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "exclusive waiter");
    let mut stderr = BufReader::new(waiter.child.stderr.take().unwrap());
    wait_for_line(&mut stderr, "lock busy, waiting");
    wait_until("the exclusive waiter in the kernel", SOON, || {
        status_json(&sb, "db")["slots"][0]["waiters"] == 1
    });
    let mut readers = readers.into_iter();
    for reader in readers.by_ref().take(2) {
        assert_eq!(reader.release(), 0);
    }
    // One shared holder left: the exclusive one still waits.
    assert!(
        !ran.exists(),
        "the exclusive command ran beside a shared holder"
    );
    assert_eq!(status_json(&sb, "db")["slots"][0]["shared_holders"], 1);
    for reader in readers {
        assert_eq!(reader.release(), 0);
    }
    assert!(waiter.wait_timeout(SOON).success());
    assert!(ran.exists());
    let doc = status_json(&sb, "db");
    assert_eq!(doc["slots"][0]["held"], false, "{doc}");
    assert_eq!(doc["slots"][0]["mode"], serde_json::Value::Null, "{doc}");
}

#[test]
fn flock_s_and_lockrun_s_share_and_both_exclude_flock_x_and_plain_lockrun() {
    require("flock", "util-linux");
    let sb = Sandbox::new();
    // lockrun -s holds: flock -s shares it, flock -x cannot have it.
    let reader = hold(&sb, "lib", "r", &["-s"]);
    assert_eq!(flock_code(&sb, &["-n", "-s"], "lib"), 0);
    assert_eq!(flock_code(&sb, &["-n", "-x"], "lib"), 1);
    // The other way round while flock -s holds too.
    let flock_reader = flock_holder(&sb, &["-s"], "lib");
    assert_eq!(reader.release(), 0);
    assert_eq!(lockrun_code(&sb, &["-s", "-n", "lib", "--", "true"]), 0);
    assert_eq!(lockrun_code(&sb, &["-n", "lib", "--", "true"]), 75);
    let out = run_timeout(sb.lockrun(&["status", "lib"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lib: held shared by ") && text.contains("flock"),
        "status names the flock(1) holder: {text}"
    );
    release(flock_reader);

    // flock -x holds: lockrun -s cannot have it.
    let writer = flock_holder(&sb, &["-x"], "lib");
    let ran = sb.path("ran");
    let out = run_timeout(
        sb.lockrun(&["-s", "-n", "lib", "--", "touch", ran.to_str().unwrap()]),
        SOON,
    );
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert!(!ran.exists(), "a shared command ran beside flock -x");
    release(writer);

    // A plain lockrun holds: neither flock -s nor lockrun -s gets in.
    let writer = hold(&sb, "lib", "w", &[]);
    assert_eq!(flock_code(&sb, &["-n", "-s"], "lib"), 1);
    assert_eq!(lockrun_code(&sb, &["-s", "-n", "lib", "--", "true"]), 75);
    let out = run_timeout(sb.lockrun(&["status", "lib"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lib: held by ") && !text.contains("shared"),
        "{text}"
    );
    assert_eq!(writer.release(), 0);
    assert_eq!(flock_code(&sb, &["-n", "-x"], "lib"), 0);
}

#[test]
fn a_shared_holder_leaves_the_exclusive_holders_record_and_fence_alone() {
    let sb = Sandbox::new();
    let first = hold(&sb, "rec", "w1", &[]);
    let fence = first.fence();
    assert_eq!(first.release(), 0);
    // A shared holder writes no record and is given no fence.
    let reader = hold(&sb, "rec", "r", &["-s"]);
    let ready = std::fs::read_to_string(sb.path("rec.r.ready")).unwrap();
    assert_eq!(ready.split_whitespace().count(), 1, "no fence: {ready:?}");
    let record = std::fs::read_to_string(sb.lock_file("rec")).unwrap();
    assert!(record.contains(&format!("\"fence\":{fence}")), "{record}");
    assert_eq!(reader.release(), 0);
    let next = hold(&sb, "rec", "w2", &[]);
    assert!(next.fence() > fence);
    assert_eq!(next.release(), 0);
}

#[test]
fn the_child_learns_the_mode_and_exec_mode_takes_a_shared_lock() {
    require("flock", "util-linux");
    let sb = Sandbox::new();
    let mode = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["m", "--", "sh", "-c", "echo $LOCKRUN_MODE"]);
        let out = run_timeout(sb.lockrun(&all), SOON);
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(mode(&["-s"]), "shared");
    assert_eq!(mode(&["--shared"]), "shared");
    assert_eq!(mode(&[]), "exclusive");
    assert_eq!(mode(&["--exec", "-s"]), "shared");
    assert_eq!(mode(&["--exec"]), "exclusive");

    // --exec -s: the command itself holds a shared lock.
    let reader = hold(&sb, "m", "exec", &["--exec", "-s"]);
    assert_eq!(flock_code(&sb, &["-n", "-s"], "m"), 0);
    assert_eq!(flock_code(&sb, &["-n", "-x"], "m"), 1);
    assert_eq!(lockrun_code(&sb, &["-s", "-n", "m", "--", "true"]), 0);
    assert_eq!(reader.release(), 0);
    assert_eq!(flock_code(&sb, &["-n", "-x"], "m"), 0);
}

#[test]
fn shared_refuses_slots_and_cloudshell_in_one_line() {
    let sb = Sandbox::new();
    let ran = sb.path("ran");
    let touch = ran.to_str().unwrap();
    for args in [
        vec!["-s", "--slots", "3", "x", "--", "touch", touch],
        vec![
            "-b",
            "cloudshell://127.0.0.1:1/res-1",
            "--shared",
            "x",
            "--",
            "touch",
            touch,
        ],
    ] {
        let mut cmd = lockrun_cmd();
        // Credentials are checked with the URL, before --shared.
        cmd.env("LOCKRUN_CLOUDSHELL_TOKEN", "not-a-real-token");
        if args[0] != "-b" {
            cmd.arg("--backend").arg(sb.backend_url());
        }
        let out = run_timeout(
            {
                cmd.args(&args);
                cmd
            },
            SOON,
        );
        let stderr = stderr_of(&out);
        assert_eq!(code(out.status), 64, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("--shared"), "{stderr}");
        assert!(!ran.exists());
    }
    // --slots 1 is a plain lock: allowed.
    assert_eq!(
        lockrun_code(&sb, &["-s", "--slots", "1", "x", "--", "true"]),
        0
    );
}
