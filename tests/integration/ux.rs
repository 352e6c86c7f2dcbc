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
        start.contains(", held by ") && start.contains(&format!(" pid {holder_pid} (sh -c ")),
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

#[test]
fn max_time_zero_means_no_limit_as_timeout_does() {
    let sb = Sandbox::new();
    let out = run_timeout(
        sb.lockrun(&[
            "--max-time",
            "0",
            "mt0",
            "--",
            "sh",
            "-c",
            "sleep 0.3; exit 3",
        ]),
        SOON,
    );
    assert_eq!(code(out.status), 3, "{}", stderr_of(&out));
    let mut cmd = sb.lockrun(&["mt0", "--", "sh", "-c", "sleep 0.3; exit 4"]);
    cmd.env("LOCKRUN_MAX_TIME", "0");
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 4, "{}", stderr_of(&out));
}

#[test]
fn status_exit_status_is_0_free_and_1_held() {
    let sb = Sandbox::new();
    let status = |extra: &[&str]| {
        let mut args = vec!["status"];
        args.extend(extra);
        args.push("es");
        code(run_timeout(sb.lockrun(&args), SOON).status)
    };
    assert_eq!(status(&["--exit-status"]), 0);
    let holder = hold(&sb, "es");
    assert_eq!(status(&["--exit-status"]), 1);
    assert_eq!(status(&["--exit-status", "--json"]), 1);
    assert_eq!(status(&[]), 0, "without the flag, status exits 0");
    holder.release();
    assert_eq!(status(&["--exit-status"]), 0);
}

#[test]
fn list_and_status_of_a_mistyped_directory_do_not_create_it() {
    let sb = Sandbox::new();
    let missing = sb.path("no-such-dir");
    let url = format!("file://{}", missing.display());
    for args in [vec!["list"], vec!["status", "x"]] {
        let mut cmd = lockrun_cmd();
        cmd.arg("-b").arg(&url).args(&args);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 69, "{args:?}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[test]
fn lock_files_in_a_group_directory_are_group_writable() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let dir = sb.path("group");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2770)).unwrap();
    let script = format!(
        "umask 022; exec {} -b file://{} grp -- true",
        sh_quote(BIN),
        sh_quote(&dir.display().to_string())
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", &script]);
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let mode = std::fs::metadata(dir.join("grp.lock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o664, "mode {mode:o}");
    // In a private directory the umask rules as before.
    let out = run_timeout(
        {
            let mut cmd = std::process::Command::new("sh");
            cmd.args([
                "-c",
                &format!(
                    "umask 022; exec {} -b {} priv -- true",
                    sh_quote(BIN),
                    sh_quote(&sb.backend_url())
                ),
            ]);
            cmd
        },
        SOON,
    );
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let mode = std::fs::metadata(sb.lock_file("priv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "mode {mode:o}");
}

#[test]
fn a_record_older_than_the_holding_process_is_not_shown() {
    require("flock", "util-linux");
    let sb = Sandbox::new();
    let file = sb.lock_file("stale");
    let mut flock = std::process::Command::new("flock");
    flock
        .arg(&file)
        .args(["-c", "read line"])
        .stdin(Stdio::piped());
    let flock = Proc::spawn(flock, "flock holder");
    wait_until("flock holds stale", SOON, || !sb.lock_is_free("stale"));
    // A record naming the holder's pid, written long before that process
    // existed: a previous holder that had the same pid.
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let record = format!(
        "{{\"host\":\"{host}\",\"pid\":{},\"user\":\"old\",\"command\":\"stale-record\",\"since\":1000}}\n",
        flock.pid()
    );
    std::fs::write(&file, record).unwrap();
    let out = run_timeout(sb.lockrun(&["status", "stale"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("stale: held by"), "{text}");
    assert!(!text.contains("stale-record"), "{text}");
    let out = run_timeout(sb.lockrun(&["-n", "stale", "--", "true"]), SOON);
    assert_eq!(code(out.status), 75);
    assert!(
        !stderr_of(&out).contains("stale-record"),
        "{}",
        stderr_of(&out)
    );
    drop(flock);
}

#[test]
fn plain_lock_and_semaphore_of_one_name_warn_both_ways() {
    let sb = Sandbox::new();
    let slots = Holder::spawn(sb.lockrun(&["--slots", "2"]), &sb.path("s.ready"), "mixed");
    let out = run_timeout(sb.lockrun(&["mixed", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0);
    let err = stderr_of(&out);
    assert!(
        err.contains("mixed is also used as a semaphore (--slots) and mixed@1 is held now"),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
    slots.release();
    let plain = hold(&sb, "mixed");
    let out = run_timeout(sb.lockrun(&["--slots", "2", "mixed", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0);
    let err = stderr_of(&out);
    assert!(
        err.contains("mixed is also used as a plain lock and mixed is held now"),
        "{err}"
    );
    plain.release();
    // Quiet when only one kind is in use.
    let out = run_timeout(sb.lockrun(&["mixed", "--", "true"]), SOON);
    assert_eq!(stderr_of(&out), "");
}

mod redis {
    use super::*;
    use crate::redis_server::RedisServer;

    #[test]
    fn a_fresh_server_says_when_it_grants_and_status_agrees() {
        // Settled for one second, asked for an hour's guard.
        let server = RedisServer::start_for_ttl(1000);
        let url = format!("redis://127.0.0.1:{}/0?max-ttl=1h", server.port);
        let mut cmd = lockrun_cmd();
        cmd.args(["-b", &url, "-n", "fresh", "--", "true"]);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 75);
        let err = stderr_of(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("fresh is not granted yet: the Redis server at 127.0.0.1:"),
            "{err}"
        );
        assert!(err.contains("ago; locks are granted from 20"), "{err}");
        assert!(!err.contains("holder unknown"), "{err}");
        // A shared lease is refused alike.
        let mut cmd = lockrun_cmd();
        cmd.args(["-b", &url, "-s", "-n", "fresh", "--", "true"]);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 75);
        let err = stderr_of(&out);
        assert!(err.contains("fresh is not granted yet"), "{err}");
        let mut cmd = lockrun_cmd();
        cmd.args(["-b", &url, "status", "fresh"]);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "fresh: free\n");
        assert!(
            stderr_of(&out).contains("locks are granted from"),
            "{}",
            stderr_of(&out)
        );
    }

    #[test]
    fn plain_lock_and_semaphore_of_one_name_warn_both_ways() {
        let server = RedisServer::start_for_ttl(1000);
        let url = format!("redis://127.0.0.1:{}/0?max-ttl=1s", server.port);
        server.settle();
        let dir = tempfile::tempdir().unwrap();
        let lockrun = |extra: &[&str]| {
            let mut cmd = lockrun_cmd();
            cmd.args(["-b", &url, "--ttl", "1s"]).args(extra);
            cmd
        };
        let slots = Holder::spawn(lockrun(&["--slots", "2"]), &dir.path().join("s"), "mixed");
        let out = run_timeout(lockrun(&["mixed", "--", "true"]), SOON);
        assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("mixed is also used as a semaphore (--slots) and mixed@1 is held now"),
            "{err}"
        );
        slots.release();
        let plain = Holder::spawn(lockrun(&[]), &dir.path().join("p"), "mixed");
        let out = run_timeout(lockrun(&["--slots", "2", "mixed", "--", "true"]), SOON);
        assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains("mixed is also used as a plain lock and mixed is held now"),
            "{err}"
        );
        plain.release();
        let out = run_timeout(lockrun(&["mixed", "--", "true"]), SOON);
        assert_eq!(stderr_of(&out), "");
    }

    #[test]
    fn list_leaves_out_names_with_only_a_fence_counter() {
        let server = RedisServer::start_for_ttl(1000);
        let url = format!("redis://127.0.0.1:{}/0?max-ttl=1s", server.port);
        server.settle();
        let mut cmd = lockrun_cmd();
        cmd.args(["-b", &url, "--ttl", "1s", "used-once", "--", "true"]);
        assert_eq!(code(run_timeout(cmd, SOON).status), 0);
        assert_eq!(server.cli(&["EXISTS", "lockrun:{used-once}:fence"]), "1");
        let mut cmd = lockrun_cmd();
        cmd.args(["-b", &url, "list"]);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 0);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        assert!(
            stderr_of(&out).contains("no locks at"),
            "{}",
            stderr_of(&out)
        );
    }
}

/// The README is for users: no benchmark verdicts or notes about the design
/// contract (those live in bench/README.md and docs/DESIGN.md), and the two
/// set-up commands stay.
#[test]
fn the_readme_reads_as_user_documentation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for internal in [
        "MISSED",
        "Targets from the issue",
        "Beyond the design contract",
        "bench/run: table start",
    ] {
        assert!(
            !readme.contains(internal),
            "README.md contains {internal:?}"
        );
    }
    assert!(readme.contains("[bench/README.md](bench/README.md)"));
    assert!(readme.contains("\ncargo run --release -- hello -- echo "));
    assert!(readme.contains("\nscripts/test\n"));
    let bench = std::fs::read_to_string(root.join("bench/README.md")).unwrap();
    assert!(
        bench.contains("bench/run: table start"),
        "the table moved to bench/README.md"
    );
}
