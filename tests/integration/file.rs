//! The core on the file backend: mutual exclusion, flock(1) interop, release
//! on every path, exit codes, holder records, fencing, slots, lock loss.

use std::io::{BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::*;

/// A lockrun holding NAME (with `extra` options) until released.
fn hold(sb: &Sandbox, name: &str, extra: &[&str]) -> Holder {
    Holder::spawn(sb.lockrun(extra), &sb.path(&format!("{name}.ready")), name)
}

/// Start a lockrun that will wait for a busy lock; returns once it has
/// reported (with -v) that it is waiting.
fn start_waiter(
    sb: &Sandbox,
    name: &str,
    args: &[&str],
) -> (Proc, BufReader<std::process::ChildStderr>) {
    let mut all = vec!["-v", name];
    all.extend(args);
    let mut cmd = sb.lockrun(&all);
    cmd.stdin(Stdio::piped()).stderr(Stdio::piped());
    let mut proc = Proc::spawn(cmd, &format!("waiter for {name}"));
    let mut stderr = BufReader::new(proc.child.stderr.take().unwrap());
    wait_for_line(&mut stderr, "lock busy, waiting");
    (proc, stderr)
}

fn no_wait_code(sb: &Sandbox, name: &str) -> i32 {
    code(run_timeout(sb.lockrun(&["-n", name, "--", "true"]), SOON).status)
}

#[test]
fn concurrent_critical_sections_never_overlap() {
    const WORKERS: usize = 8;
    const SECTIONS: usize = 25;
    let sb = Sandbox::new();
    let url = sb.backend_url();
    let (count, fences) = contention_torture(
        sb.dir.path(),
        WORKERS,
        SECTIONS,
        &["--backend", &url],
        &[],
        Duration::from_secs(120),
    );
    assert_eq!(
        count,
        WORKERS * SECTIONS,
        "lost increments: mutual exclusion broken"
    );
    assert_eq!(fences.len(), WORKERS * SECTIONS);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not increasing"
    );
}

#[test]
fn slots_bound_concurrency_and_fill_up() {
    let sb = Sandbox::new();
    let inside = sb.path("inside");
    std::fs::create_dir(&inside).unwrap();
    let log = sb.path("log");
    // Each holder marks its slot (noclobber: a shared slot would fail),
    // waits (bounded) until three are inside, records what it saw, leaves.
    let script = format!(
        r#"set -C; echo $$ > {inside}/slot-$LOCKRUN_SLOT || {{ echo collision >> {log}; exit 1; }}
i=0; while [ "$(ls {inside} | wc -l)" -lt 3 ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
echo "$(ls {inside} | wc -l) $LOCKRUN_SLOT" >> {log}
rm -f {inside}/slot-$LOCKRUN_SLOT"#,
        inside = inside.display(),
        log = log.display()
    );
    let procs: Vec<Proc> = (0..6)
        .map(|i| {
            let cmd = sb.lockrun(&["--slots", "3", "pool", "--", "sh", "-c", &script]);
            Proc::spawn(cmd, &format!("slot user {i}"))
        })
        .collect();
    for mut p in procs {
        assert_eq!(code(p.wait_timeout(Duration::from_secs(60))), 0);
    }
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.contains("collision"),
        "two holders got the same slot:\n{log}"
    );
    let seen: Vec<(usize, u32)> = log
        .lines()
        .map(|l| {
            let (n, slot) = l.split_once(' ').unwrap();
            (n.parse().unwrap(), slot.parse().unwrap())
        })
        .collect();
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter().all(|&(n, _)| n <= 3),
        "more than 3 inside: {seen:?}"
    );
    assert!(
        seen.iter().any(|&(n, _)| n == 3),
        "never 3 inside together: {seen:?}"
    );
    assert!(
        seen.iter().all(|&(_, s)| (1..=3).contains(&s)),
        "bad LOCKRUN_SLOT: {seen:?}"
    );
}

#[test]
fn flock_and_lockrun_exclude_each_other_both_ways() {
    let sb = Sandbox::new();
    // lockrun holds -> flock(1) cannot have it.
    let holder = hold(&sb, "shared", &[]);
    let flock = run_timeout(
        {
            let mut c = Command::new("flock");
            c.arg("-n").arg(sb.lock_file("shared")).arg("true");
            c
        },
        SOON,
    );
    assert_eq!(code(flock.status), 1, "flock(1) got a lock lockrun holds");
    assert_eq!(holder.release(), 0);

    // flock(1) holds -> lockrun cannot have it.
    let ready = sb.path("flock-ready");
    let mut cmd = Command::new("flock");
    cmd.arg(sb.lock_file("shared"))
        .arg("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}; read line", ready.display()));
    cmd.stdin(Stdio::piped());
    let mut flock_holder = Proc::spawn(cmd, "flock holder");
    wait_for_content(&ready);
    let out = run_timeout(
        sb.lockrun(&[
            "-n",
            "shared",
            "--",
            "touch",
            sb.path("ran").to_str().unwrap(),
        ]),
        SOON,
    );
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert!(!sb.path("ran").exists(), "command ran without the lock");
    drop(flock_holder.child.stdin.take());
    flock_holder.wait_timeout(SOON);
    assert_eq!(no_wait_code(&sb, "shared"), 0);
}

#[test]
fn lock_is_released_whatever_the_child_does() {
    let sb = Sandbox::new();
    for (script, expected) in [
        ("exit 0", 0),
        ("exit 3", 3),
        ("kill -KILL $$", 137),
        ("kill -USR1 $$", 138),
    ] {
        let out = run_timeout(sb.lockrun(&["job", "--", "sh", "-c", script]), SOON);
        assert_eq!(code(out.status), expected, "{script}: {}", stderr_of(&out));
        assert!(sb.lock_is_free("job"), "lock still held after: {script}");
        assert_eq!(no_wait_code(&sb, "job"), 0);
    }
}

#[test]
fn signals_to_a_holding_lockrun_reach_the_child_once_and_release() {
    let sb = Sandbox::new();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let got = sb.path(&format!("got-{signal}"));
        let ready = sb.path(&format!("ready-{signal}"));
        let script = format!(
            "trap 'echo {signal} >> {got}; exit 5' {short}; echo $$ > {ready}; while :; do sleep 0.05; done",
            got = got.display(),
            ready = ready.display(),
            short = &signal.as_str()[3..],
        );
        let mut proc = Proc::spawn(sb.lockrun(&["sig", "--", "sh", "-c", &script]), "holder");
        wait_for_content(&ready);
        proc.signal(signal);
        assert_eq!(
            code(proc.wait_timeout(SOON)),
            5,
            "{signal}: lockrun must exit with the child's code"
        );
        let lines = std::fs::read_to_string(&got).unwrap();
        assert_eq!(
            lines.lines().collect::<Vec<_>>(),
            vec![signal.as_str()],
            "child must get {signal} exactly once"
        );
        assert_eq!(
            no_wait_code(&sb, "sig"),
            0,
            "lock not released after {signal}"
        );
    }
}

#[test]
fn a_signal_while_waiting_aborts_cleanly() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "busy", &[]);
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let ran = sb.path("ran");
        let (mut waiter, _stderr) =
            start_waiter(&sb, "busy", &["--", "touch", ran.to_str().unwrap()]);
        waiter.signal(signal);
        assert_eq!(code(waiter.wait_timeout(SOON)), 128 + signal as i32);
        assert!(
            !ran.exists(),
            "command ran after the wait was aborted by {signal}"
        );
    }
    assert!(
        !sb.lock_is_free("busy"),
        "the holder must still hold the lock"
    );
    assert_eq!(holder.release(), 0);
    assert_eq!(no_wait_code(&sb, "busy"), 0);
}

/// The wait blocks in flock(2) on lockrun's own thread, and a signal ends
/// it by putting another file in the lock's descriptor. A storm of signals
/// that do not end a wait (SIGWINCH, SIGCONT) must neither end it nor leave it deaf:
/// the waiter still runs once the holder lets go, and a SIGTERM in the
/// middle of another storm still ends the next wait at once.
#[test]
fn a_waiter_survives_a_signal_storm_and_still_hears_the_one_that_ends_it() {
    let sb = Sandbox::new();
    let ran = sb.path("ran");
    let holder = hold(&sb, "storm", &[]);
    let (mut waiter, _stderr) = start_waiter(&sb, "storm", &["--", "touch", ran.to_str().unwrap()]);
    for _ in 0..300 {
        waiter.signal(Signal::SIGWINCH);
        waiter.signal(Signal::SIGCONT);
    }
    // `status` takes a process's start-up: the signals have long landed
    // by its end.
    let status = run_timeout(sb.lockrun(&["status", "--exit-status", "storm"]), SOON);
    assert_eq!(code(status.status), 1, "the holder lost the lock");
    assert!(
        waiter.child.try_wait().unwrap().is_none(),
        "the storm ended the wait"
    );
    assert!(!ran.exists(), "the command ran while the lock was held");
    assert_eq!(holder.release(), 0);
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
    assert!(ran.exists(), "the waiter did not run after the release");

    let holder = hold(&sb, "storm", &[]);
    let ran_again = sb.path("ran-again");
    let (mut waiter, _stderr) =
        start_waiter(&sb, "storm", &["--", "touch", ran_again.to_str().unwrap()]);
    for _ in 0..150 {
        waiter.signal(Signal::SIGWINCH);
    }
    waiter.signal(Signal::SIGTERM);
    for _ in 0..150 {
        waiter.signal(Signal::SIGWINCH);
    }
    assert_eq!(
        code(waiter.wait_timeout(SOON)),
        128 + Signal::SIGTERM as i32
    );
    assert!(!ran_again.exists(), "the command ran after SIGTERM");
    assert!(!sb.lock_is_free("storm"), "the holder lost the lock");
    assert_eq!(holder.release(), 0);
}

#[test]
fn sigkilled_lockrun_frees_the_lock_and_takes_the_child_along() {
    sigkilled_lockrun_takes_the_child_along(&[]);
}

/// The same with the guardian started with clone(CLONE_VM)
/// (`LOCKRUN_GUARDIAN=clone`) instead of forked.
#[test]
fn sigkilled_lockrun_with_a_cloned_guardian_takes_the_child_along() {
    sigkilled_lockrun_takes_the_child_along(&[("LOCKRUN_GUARDIAN", "clone")]);
}

fn sigkilled_lockrun_takes_the_child_along(env: &[(&str, &str)]) {
    let sb = Sandbox::new();
    let bg = sb.path("bg.pid");
    let ready = sb.path("victim.ready");
    let script = format!(
        "sleep 60 & echo $! > {}; echo $$ > {}; read line",
        bg.display(),
        ready.display()
    );
    let mut cmd = sb.lockrun(&["victim", "--", "sh", "-c", &script]);
    cmd.stdin(Stdio::piped()).envs(env.iter().copied());
    let holder = Proc::spawn(cmd, "holder");
    let child_pid: i32 = wait_for_content(&ready).parse().unwrap();
    let grandchild: i32 = wait_for_content(&bg).parse().unwrap();
    holder.signal(Signal::SIGKILL);
    wait_until("the lock to be free after SIGKILL", SOON, || {
        sb.lock_is_free("victim")
    });
    wait_until("the child to die with lockrun (PDEATHSIG)", SOON, || {
        !alive(child_pid)
    });
    wait_until(
        "the grandchild to die with lockrun (guardian)",
        SOON,
        || !alive(grandchild),
    );
    assert_eq!(no_wait_code(&sb, "victim"), 0);
    drop(holder);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_kill_after() {
    let sb = Sandbox::new();
    let ready = sb.path("ready");
    let script = format!(
        "trap '' TERM; echo $$ > {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let started = Instant::now();
    let out = run_timeout(
        sb.lockrun(&[
            "--max-time",
            "300ms",
            "--kill-after",
            "500ms",
            "stubborn",
            "--",
            "sh",
            "-c",
            &script,
        ]),
        SOON,
    );
    assert_eq!(code(out.status), 124, "{}", stderr_of(&out));
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "SIGKILL came before --kill-after"
    );
    let pid: i32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(pid), "stubborn child survived");
    assert_eq!(no_wait_code(&sb, "stubborn"), 0);
}

#[test]
fn exit_codes_for_busy_locks() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "held", &[]);
    let ran = sb.path("ran");
    let touch = ["--", "touch", ran.to_str().unwrap()];
    for (args, expected) in [
        (vec!["-n", "held"], 75),
        (vec!["--wait", "300ms", "held"], 75),
        (vec!["-w", "0", "held"], 75),
        (vec!["-n", "-E", "42", "held"], 42),
    ] {
        let mut all = args.clone();
        all.extend(touch);
        let out = run_timeout(sb.lockrun(&all), SOON);
        assert_eq!(code(out.status), expected, "{args:?}");
        let err = stderr_of(&out);
        assert!(!ran.exists(), "{args:?} ran the command without the lock");
        // Busy is informative: who holds it, and for how long, in one line
        // (after the CI-log line of a wait, stderr not being a terminal).
        let holder_pid = holder.proc.pid();
        let busy: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("lockrun: waiting for held, held by"))
            .collect();
        assert!(
            err.contains(&format!("pid {holder_pid}")) && err.contains("for ") && busy.len() == 1,
            "{args:?}: {err}"
        );
    }
    assert_eq!(holder.release(), 0);
}

#[test]
fn exit_codes_for_commands_that_cannot_run() {
    let sb = Sandbox::new();
    let not_exec = sb.path("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\ntrue\n").unwrap();
    std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (command, expected) in [
        (not_exec.to_str().unwrap().to_owned(), 126),
        ("/nonexistent/command".to_owned(), 127),
        ("no-such-command-lockrun-test".to_owned(), 127),
    ] {
        let out = run_timeout(sb.lockrun(&["x", "--", &command]), SOON);
        assert_eq!(code(out.status), expected, "{command}: {}", stderr_of(&out));
        assert_eq!(stderr_of(&out).lines().count(), 1);
        assert!(
            sb.lock_is_free("x"),
            "lock kept after failing to start {command}"
        );
    }
}

#[test]
fn removed_or_replaced_lock_file_is_a_lost_lock() {
    let sb = Sandbox::new();
    for replace in [false, true] {
        let ready = sb.path("ready");
        let _ = std::fs::remove_file(&ready);
        let script = format!(
            "echo $$ > {}; while :; do sleep 0.05; done",
            ready.display()
        );
        let mut cmd = sb.lockrun(&["--kill-after", "2s", "lost", "--", "sh", "-c", &script]);
        cmd.stderr(Stdio::piped());
        let mut proc = Proc::spawn(cmd, "holder");
        let child: i32 = wait_for_content(&ready).parse().unwrap();
        let path = sb.lock_file("lost");
        if replace {
            let tmp = sb.lock_dir().join("replacement");
            std::fs::write(&tmp, "").unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        let noticed = Instant::now();
        let (status, stderr) = proc.finish(SOON);
        assert_eq!(code(status), 76, "{stderr}");
        assert!(
            noticed.elapsed() < Duration::from_secs(5),
            "took {:?} to notice",
            noticed.elapsed()
        );
        assert!(stderr.contains("lost the lock"), "{stderr}");
        assert!(!alive(child));
    }
}

#[test]
fn waiter_rechecks_the_inode_after_the_file_is_replaced() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "swap", &[]);
    let ready = sb.path("waiter-ready");
    let script = format!("echo $$ > {}; read line || true", ready.display());
    let (mut waiter, _err) = start_waiter(&sb, "swap", &["--", "sh", "-c", &script]);
    // The waiter is blocked on the old inode; replace the path.
    let tmp = sb.lock_dir().join("new");
    std::fs::write(&tmp, "").unwrap();
    std::fs::rename(&tmp, sb.lock_file("swap")).unwrap();
    // The holder notices on its own and is stopped (its `read` never returns).
    let mut holder = holder;
    assert_eq!(
        code(holder.proc.wait_timeout(SOON)),
        76,
        "the holder lost its file"
    );
    // The waiter must end up holding the inode the path names now.
    wait_for_content(&ready);
    let flock = run_timeout(
        {
            let mut c = Command::new("flock");
            c.arg("-n").arg(sb.lock_file("swap")).arg("true");
            c
        },
        SOON,
    );
    assert_eq!(
        code(flock.status),
        1,
        "waiter holds a dead inode: the path's lock is free"
    );
    drop(waiter.child.stdin.take());
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
}

#[test]
fn fence_increases_with_every_acquisition() {
    let sb = Sandbox::new();
    let mut fences = Vec::new();
    for slots in ["1", "1", "2", "2", "1"] {
        let out = run_timeout(
            sb.lockrun(&[
                "--slots",
                slots,
                "fenced",
                "--",
                "sh",
                "-c",
                "echo $LOCKRUN_FENCE",
            ]),
            SOON,
        );
        assert_eq!(code(out.status), 0);
        fences.push(
            String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse::<u64>()
                .unwrap(),
        );
    }
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not increasing: {fences:?}"
    );
}

#[test]
fn child_environment() {
    let sb = Sandbox::new();
    let mut cmd = sb.lockrun(&["--slots", "2", "envy", "--", "env"]);
    cmd.env("LOCKRUN_REDIS_PASSWORD", "hunter2")
        .env("LOCKRUN_CLOUDSHELL_TOKEN", "tok3n");
    let out = run_timeout(cmd, SOON);
    let env = String::from_utf8(out.stdout).unwrap();
    assert!(env.contains("LOCKRUN_NAME=envy\n"), "{env}");
    assert!(env.contains("LOCKRUN_SLOT=1\n"), "{env}");
    assert!(env.contains("LOCKRUN_FENCE="), "{env}");
    assert!(
        env.contains(&format!("LOCKRUN_BACKEND={}\n", sb.backend_url())),
        "{env}"
    );
    assert!(
        !env.contains("hunter2") && !env.contains("tok3n"),
        "secret leaked to the child"
    );
}

#[test]
fn status_reports_the_holder_from_the_lock_itself() {
    let sb = Sandbox::new();
    let status = |sb: &Sandbox| {
        let out = run_timeout(sb.lockrun(&["status", "st"]), SOON);
        assert_eq!(code(out.status), 0);
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(status(&sb).contains("st: free"));
    let holder = hold(&sb, "st", &[]);
    let text = status(&sb);
    assert!(
        text.contains(&format!("pid {}", holder.proc.pid())) && text.contains("read line"),
        "{text}"
    );
    // A SIGKILLed holder leaves its record behind: status must say free anyway.
    holder.proc.signal(Signal::SIGKILL);
    wait_until("lock free", SOON, || sb.lock_is_free("st"));
    assert!(
        status(&sb).contains("st: free"),
        "status trusted a dead holder's record"
    );
    // A lock literally called "status" is reachable through `run`.
    let out = run_timeout(
        sb.lockrun(&["run", "status", "--", "sh", "-c", "echo $LOCKRUN_NAME"]),
        SOON,
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "status\n");
    drop(holder);
}

#[test]
fn a_daemon_started_by_the_child_does_not_keep_the_lock() {
    let sb = Sandbox::new();
    let pidfile = sb.path("daemon.pid");
    // setsid: the daemon leaves the child's process group, as daemons do.
    // The child waits (bounded) until the daemon has detached, as a
    // daemonizing parent does before it exits.
    let script = format!(
        "setsid sh -c 'echo $$ > {p}; exec sleep 60' < /dev/null > /dev/null 2>&1 & \
         i=0; while [ ! -s {p} ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done",
        p = pidfile.display()
    );
    let out = run_timeout(sb.lockrun(&["daemonic", "--", "sh", "-c", &script]), SOON);
    assert_eq!(code(out.status), 0);
    let pid: i32 = wait_for_content(&pidfile).parse().unwrap();
    assert!(alive(pid));
    let free = sb.lock_is_free("daemonic");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    assert!(free, "a daemon inherited the lock");
}

#[test]
fn leftovers_in_the_childs_group_are_stopped() {
    let sb = Sandbox::new();
    let pidfile = sb.path("bg.pid");
    let script = format!("sleep 60 & echo $! > {}", pidfile.display());
    let out = run_timeout(sb.lockrun(&["leftover", "--", "sh", "-c", &script]), SOON);
    assert_eq!(code(out.status), 0);
    let pid: i32 = wait_for_content(&pidfile).parse().unwrap();
    assert!(!alive(pid), "background job outlived the lock");
}

#[test]
fn symlinked_lock_file_is_refused() {
    let sb = Sandbox::new();
    let target = sb.path("elsewhere");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, sb.lock_file("sym")).unwrap();
    let ran = sb.path("ran");
    let out = run_timeout(
        sb.lockrun(&["sym", "--", "touch", ran.to_str().unwrap()]),
        SOON,
    );
    assert_eq!(code(out.status), 77, "{}", stderr_of(&out));
    assert!(stderr_of(&out).starts_with("lockrun: ") && stderr_of(&out).contains("symlink"));
    assert!(!ran.exists());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
}

/// Run lockrun as an unprivileged user (tests run as root in CI), so that
/// permission checks mean something.
fn as_nobody(args: &[&str]) -> Option<Command> {
    as_user(65534, args)
}

/// lockrun run as `uid` (and gid `uid`), or `None` when the tests are not root.
fn as_user(uid: u32, args: &[&str]) -> Option<Command> {
    if !nix::unistd::getuid().is_root() {
        return None;
    }
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .args(["--clear-groups", BIN])
        .args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOCKRUN_") {
            cmd.env_remove(key);
        }
    }
    Some(cmd)
}

#[test]
fn unwritable_lock_dir_is_a_permission_error() {
    let sb = Sandbox::new();
    let dir = sb.path("readonly");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let url = format!("file://{}", dir.display());
    let ran = sb.path("ran");
    let args = [
        "--backend",
        url.as_str(),
        "ro",
        "--",
        "touch",
        ran.to_str().unwrap(),
    ];
    let cmd = as_nobody(&args).unwrap_or_else(|| {
        let mut c = lockrun_cmd();
        c.args(args);
        c
    });
    let out = run_timeout(cmd, SOON);
    let err = stderr_of(&out);
    assert_eq!(code(out.status), 77, "{err}");
    assert!(
        err.starts_with("lockrun: ") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!ran.exists());
}

#[test]
fn foreign_owned_or_symlinked_default_dir_is_refused() {
    // The default dir for uid 65534; only root can set up the trap.
    let Some(_) = as_nobody(&[]) else {
        eprintln!("skipped: needs root to create a directory owned by someone else");
        return;
    };
    let base = if std::path::Path::new("/run/lock").is_dir() {
        "/run/lock"
    } else {
        "/tmp"
    };
    let default = std::path::PathBuf::from(format!("{base}/lockrun-65534"));
    let sb = Sandbox::new();
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let ran = sb.path("ran");
    for make in ["foreign", "symlink"] {
        let _ = std::fs::remove_dir_all(&default);
        let _ = std::fs::remove_file(&default);
        match make {
            "foreign" => std::fs::create_dir(&default).unwrap(),
            _ => std::os::unix::fs::symlink(sb.dir.path(), &default).unwrap(),
        }
        let out = run_timeout(
            as_nobody(&["trap", "--", "touch", ran.to_str().unwrap()]).unwrap(),
            SOON,
        );
        let err = stderr_of(&out);
        let _ = std::fs::remove_dir(&default);
        let _ = std::fs::remove_file(&default);
        assert_eq!(code(out.status), 77, "{make}: {err}");
        assert!(
            err.starts_with("lockrun: ") && err.lines().count() == 1,
            "{err}"
        );
        assert!(!ran.exists(), "{make}: command ran");
    }
}

#[test]
fn default_dir_is_private_and_shared_by_every_session() {
    let sb = Sandbox::new();
    // Two environments as different as cron and a login shell.
    let run = |env: &[(&str, &str)]| {
        let mut cmd = lockrun_cmd();
        cmd.env_clear().env("PATH", "/usr/bin:/bin");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(["status", "--json", "lockrun-test-default-dir"]);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["backend"].as_str().unwrap().to_owned()
    };
    let cron_like = run(&[]);
    let shell_like = run(&[
        ("HOME", sb.dir.path().to_str().unwrap()),
        ("XDG_RUNTIME_DIR", sb.dir.path().to_str().unwrap()),
        ("TMPDIR", sb.dir.path().to_str().unwrap()),
    ]);
    assert_eq!(cron_like, shell_like);
    let dir = cron_like.strip_prefix("file://").unwrap();
    let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "default lock dir must be private");
}

#[test]
fn stdin_and_stdout_belong_to_the_child() {
    let sb = Sandbox::new();
    let mut cmd = sb.lockrun(&["-v", "io", "--", "cat"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn(cmd, "cat");
    proc.child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through\n")
        .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut proc.child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(code(proc.wait_timeout(SOON)), 0);
    assert_eq!(out, "through\n", "lockrun wrote to stdout or lost stdin");
}

#[test]
fn ctrl_c_at_a_terminal_reaches_the_child_once() {
    let sb = Sandbox::new();
    let got = sb.path("got");
    let ready = sb.path("ready");
    let script = format!(
        "trap 'echo INT >> {got}; exit 9' INT; echo $$ > {ready}; while :; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    // The shell around lockrun ignores SIGINT, as an interactive shell
    // running a foreground job does, and records lockrun's exit status.
    let status = sb.path("status");
    let lockrun = format!(
        "{BIN} --backend {} tty -- sh -c {}",
        sh_quote(&sb.backend_url()),
        sh_quote(&script)
    );
    let wrapped = format!("trap '' INT; {lockrun}; echo $? > {}", status.display());
    let tmux = Tmux::start(
        sb.dir.path(),
        200,
        50,
        &format!("sh -c {}", sh_quote(&wrapped)),
    );
    wait_for_content(&ready);
    tmux.send_keys(&["C-c"]);
    assert_eq!(
        wait_for_content(&status),
        "9",
        "lockrun must exit with the child's code"
    );
    let lines = std::fs::read_to_string(&got).unwrap();
    assert_eq!(lines, "INT\n", "the child must see Ctrl-C exactly once");
    assert_eq!(no_wait_code(&sb, "tty"), 0);
}

#[test]
fn ctrl_z_stops_the_child_with_lockrun_and_fg_resumes_both() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "jobctl", &[]);
    let (lockrun, child) = (holder.proc.pid(), holder.child_pid);
    holder.proc.signal(Signal::SIGTSTP);
    wait_until("the child to stop", SOON, || {
        process_state(child) == Some('T')
    });
    wait_until("lockrun to stop", SOON, || {
        process_state(lockrun) == Some('T')
    });
    holder.proc.signal(Signal::SIGCONT);
    wait_until("the child to resume", SOON, || {
        process_state(child) != Some('T')
    });
    wait_until("lockrun to resume", SOON, || {
        process_state(lockrun) != Some('T')
    });
    assert_eq!(holder.release(), 0);
}

#[test]
fn leftovers_that_ignore_sigterm_are_killed_after_kill_after() {
    let sb = Sandbox::new();
    let pidfile = sb.path("stubborn.pid");
    let script = format!(
        "(trap '' TERM; exec sleep 60) & echo $! > {}",
        pidfile.display()
    );
    let out = run_timeout(
        sb.lockrun(&["--kill-after", "300ms", "left", "--", "sh", "-c", &script]),
        SOON,
    );
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let pid: i32 = wait_for_content(&pidfile).parse().unwrap();
    assert!(!alive(pid), "a TERM-ignoring leftover outlived lockrun");
}

#[test]
fn ctrl_z_stops_even_a_child_that_ignores_sigtstp() {
    let sb = Sandbox::new();
    let ready = sb.path("ready");
    let script = format!(
        "trap '' TSTP; echo $$ > {}; read line || true",
        ready.display()
    );
    let mut cmd = sb.lockrun(&["tstp", "--", "sh", "-c", &script]);
    cmd.stdin(Stdio::piped());
    let mut proc = Proc::spawn(cmd, "holder");
    let child: i32 = wait_for_content(&ready).parse().unwrap();
    proc.signal(Signal::SIGTSTP);
    wait_until("the child to stop", SOON, || {
        process_state(child) == Some('T')
    });
    proc.signal(Signal::SIGCONT);
    wait_until("the child to resume", SOON, || {
        process_state(child) != Some('T')
    });
    drop(proc.child.stdin.take());
    assert_eq!(code(proc.wait_timeout(SOON)), 0);
}

#[test]
fn a_command_can_read_the_terminal_and_ctrl_z_suspends_the_job() {
    let sb = Sandbox::new();
    let out = sb.path("answer");
    let script = format!("printf 'name? '; read x; echo \"$x\" > {}", out.display());
    let lockrun = format!(
        "{BIN} --backend {} ask -- sh -c {}",
        sh_quote(&sb.backend_url()),
        sh_quote(&script)
    );
    // An interactive shell with job control, as at a real terminal.
    let tmux = Tmux::start(sb.dir.path(), 120, 20, "bash --norc --noprofile -i");
    tmux.wait_for_screen("the prompt", |s| {
        s.iter().any(|l| l.contains('$') || l.contains('#'))
    });
    tmux.send_keys(&[&lockrun, "Enter"]);
    // The question itself, not the typed command line that contains it:
    // a Ctrl-Z before the command runs goes to the shell's line editor.
    tmux.wait_for_screen("the question", |s| {
        s.iter()
            .any(|l| l.contains("name?") && !l.contains("printf"))
    });
    // Ctrl-Z: the shell must get its prompt back with the job stopped.
    tmux.send_keys(&["C-z"]);
    tmux.wait_for_screen("the job to stop", |s| {
        s.iter().any(|l| l.contains("Stopped"))
    });
    assert!(
        !sb.lock_is_free("ask"),
        "a stopped job still holds its lock"
    );
    tmux.send_keys(&["fg", "Enter"]);
    tmux.send_keys(&["bob", "Enter"]);
    assert_eq!(wait_for_content(&out), "bob");
    wait_until("the lock to be released", SOON, || sb.lock_is_free("ask"));
}

#[test]
fn status_counts_the_waiters() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "queue", &[]);
    let (_w1, _e1) = start_waiter(&sb, "queue", &["--", "true"]);
    let (_w2, _e2) = start_waiter(&sb, "queue", &["--", "true"]);
    let waiters = || {
        let out = run_timeout(sb.lockrun(&["status", "--json", "queue"]), SOON);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["slots"][0]["waiters"].as_u64()
    };
    // The waiters report "waiting" just before they block in the kernel.
    wait_until("two waiters in the kernel", SOON, || waiters() == Some(2));
    let out = run_timeout(sb.lockrun(&["status", "queue"]), SOON);
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 2 waiting"));
    assert_eq!(holder.release(), 0);
}

#[test]
fn sigkill_to_lockruns_whole_group_still_takes_the_command_along() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let bg = sb.path("bg.pid");
    let ready = sb.path("ready");
    let script = format!(
        "sleep 60 & echo $! > {}; echo $$ > {}; sleep 60",
        bg.display(),
        ready.display()
    );
    // As `kill -9 %1` or `timeout -s KILL` do: the signal hits lockrun's
    // whole process group at once, so the guardian must not be in it.
    let mut cmd = sb.lockrun(&["grouped", "--", "sh", "-c", &script]);
    cmd.process_group(0);
    let holder = Proc::spawn(cmd, "holder");
    let child: i32 = wait_for_content(&ready).parse().unwrap();
    let grandchild: i32 = wait_for_content(&bg).parse().unwrap();
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(holder.pid()), Signal::SIGKILL).unwrap();
    wait_until("the child to die", SOON, || !alive(child));
    wait_until("the grandchild to die", SOON, || !alive(grandchild));
    wait_until("the lock to be free", SOON, || sb.lock_is_free("grouped"));
}

#[test]
fn no_wait_wins_over_a_wait_from_the_environment() {
    let sb = Sandbox::new();
    let holder = hold(&sb, "envwait", &[]);
    let mut cmd = sb.lockrun(&["-n", "envwait", "--", "true"]);
    cmd.env("LOCKRUN_WAIT", "1h");
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert_eq!(holder.release(), 0);
}

/// A waiter blocked on every slot that gets one of them lets go of the
/// others at once: it never takes (or queues for) a slot it no longer wants.
#[test]
fn a_slot_waiter_that_got_a_slot_stops_waiting_for_the_others() {
    let sb = Sandbox::new();
    let first = hold(&sb, "pool", &["--slots", "2"]);
    let second = hold(&sb, "pool", &["--slots", "2"]);
    let ready = sb.path("waiter.ready");
    let script = format!(
        "echo $LOCKRUN_SLOT > {}; read line; exit 0",
        ready.display()
    );
    let mut cmd = sb.lockrun(&["--slots", "2", "pool", "--", "sh", "-c", &script]);
    cmd.stdin(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "slot waiter");
    let waiting_on = |slot: usize| {
        let out = run_timeout(
            sb.lockrun(&["status", "--json", "--slots", "2", "pool"]),
            SOON,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["slots"][slot]["waiters"].as_u64()
    };
    wait_until("the waiter to block on both slots", SOON, || {
        waiting_on(0) == Some(1) && waiting_on(1) == Some(1)
    });
    assert_eq!(first.release(), 0);
    let got: u32 = wait_for_content(&ready).parse().unwrap();
    // The JSON lists slot 1 first: the index of the slot it did not get.
    let other = usize::from(got == 1);
    wait_until(
        "the waiter to stop waiting for the other slot",
        SOON,
        || waiting_on(other) == Some(0),
    );
    drop(waiter.child.stdin.take());
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
    assert_eq!(second.release(), 0);
}

/// The guardian closes every descriptor it inherited even without
/// close_range(2) (kernels before 5.9, seccomp): forced here onto the
/// /proc/self/fd scan. It must hold nothing of lockrun's, or a SIGKILLed
/// lockrun would leave the lock held and the command running.
#[test]
fn the_guardian_holds_nothing_of_lockruns_without_close_range() {
    let sb = Sandbox::new();
    let bg = sb.path("bg.pid");
    let ready = sb.path("ready");
    let script = format!(
        "sleep 60 & echo $! > {}; echo $$ > {}; read line",
        bg.display(),
        ready.display()
    );
    let mut cmd = sb.lockrun(&["scanned", "--", "sh", "-c", &script]);
    cmd.env("LOCKRUN_GUARDIAN_CLOSE", "scan")
        .stdin(Stdio::piped());
    let holder = Proc::spawn(cmd, "holder");
    let child: i32 = wait_for_content(&ready).parse().unwrap();
    let grandchild: i32 = wait_for_content(&bg).parse().unwrap();
    // lockrun's children: the command and the guardian.
    let guardian = guardian_of(holder.pid(), child);
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{guardian}/fd"))
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            Some(format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).ok()?.display()
            ))
        })
        .collect();
    // stdin/out/err on /dev/null, its socket, its timer, and the one
    // descriptor lockrun hands it on purpose (a copy of the lock's, so that
    // a SIGKILLed lockrun's lock lasts until the command is dead): nothing
    // it inherited.
    let lock_file = sb.lock_file("scanned").display().to_string();
    let unexpected: Vec<&String> = fds
        .iter()
        .filter(|fd| {
            !(fd.ends_with("/dev/null")
                || fd.contains("socket:")
                || fd.contains("timerfd")
                || fd.ends_with(&lock_file))
        })
        .collect();
    assert!(
        unexpected.is_empty() && fds.len() <= 6,
        "the guardian holds lockrun's descriptors: {fds:?}"
    );
    holder.signal(Signal::SIGKILL);
    wait_until("the lock to be free after SIGKILL", SOON, || {
        sb.lock_is_free("scanned")
    });
    wait_until("the grandchild to die with lockrun", SOON, || {
        !alive(grandchild)
    });
    drop(holder);
}

/// A lock file another user created read-only can keep neither the holder
/// record nor LOCKRUN_FENCE: refused with one line (77), never run without
/// a fence.
#[test]
fn a_read_only_lock_file_is_refused_not_used_without_a_fence() {
    let sb = Sandbox::new();
    let dir = sb.path("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let file = dir.join("ro.lock");
    std::fs::write(&file, "").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let url = format!("file://{}", dir.display());
    let ran = sb.path("ran");
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let args = [
        "--backend",
        url.as_str(),
        "ro",
        "--",
        "touch",
        ran.to_str().unwrap(),
    ];
    let Some(cmd) = as_nobody(&args) else {
        // Not root: the file is read-only for us as it is.
        let mut cmd = lockrun_cmd();
        cmd.args(args);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 77, "{}", stderr_of(&out));
        assert!(!ran.exists());
        return;
    };
    let out = run_timeout(cmd, SOON);
    let err = stderr_of(&out);
    assert_eq!(code(out.status), 77, "{err}");
    assert!(
        err.contains("read-only") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!ran.exists());
}

/// Processes that leave the command's process group (setsid) are out of
/// reach of the group's signals: named in a warning by default, stopped
/// with --kill-escaped.
#[test]
fn processes_that_left_the_group_are_named_or_stopped() {
    let sb = Sandbox::new();
    let escaped = sb.path("escaped.pid");
    let script = format!(
        "setsid sh -c 'echo $$ > {}; exec sleep 60' >/dev/null 2>&1 </dev/null & while [ ! -s {} ]; do sleep 0.01; done",
        escaped.display(),
        escaped.display()
    );
    let out = run_timeout(sb.lockrun(&["esc", "--", "sh", "-c", &script]), SOON);
    let err = stderr_of(&out);
    assert_eq!(code(out.status), 0, "{err}");
    let pid: i32 = wait_for_content(&escaped).parse().unwrap();
    assert!(
        err.contains("left the command's process group") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    assert!(alive(pid), "the default only warns");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);

    std::fs::remove_file(&escaped).unwrap();
    let out = run_timeout(
        sb.lockrun(&["--kill-escaped", "esc", "--", "sh", "-c", &script]),
        SOON,
    );
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let pid: i32 = wait_for_content(&escaped).parse().unwrap();
    wait_until("the escaped process to be stopped", SOON, || !alive(pid));
}

/// A reader that stops reading (`lockrun list | head -1`) ends lockrun
/// quietly, not with a panic.
#[test]
fn a_closed_stdout_is_a_quiet_exit() {
    let sb = Sandbox::new();
    assert_eq!(no_wait_code(&sb, "one"), 0);
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let mut cmd = sb.lockrun(&["list"]);
    cmd.stdout(Stdio::from(write));
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert!(!stderr_of(&out).contains("panicked"), "{}", stderr_of(&out));
}

/// `--exec`: the command itself holds the lock (no lockrun process stays),
/// for as long as it lives; flock(1) sees it held; the holder pid is the
/// command's own; the fence and name are set.
#[test]
fn exec_mode_holds_the_lock_for_the_commands_lifetime() {
    let sb = Sandbox::new();
    let ready = sb.path("exec-ready");
    let script = format!(
        "echo \"$$ $LOCKRUN_NAME $LOCKRUN_FENCE ${{LOCKRUN_REDIS_PASSWORD-unset}}\" > {}; read line",
        ready.display()
    );
    let mut cmd = sb.lockrun(&["--exec", "xjob", "--", "sh", "-c", &script]);
    cmd.env("LOCKRUN_REDIS_PASSWORD", "hunter2")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut holder = Proc::spawn(cmd, "exec-mode holder");
    let line = wait_for_content(&ready);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 4, "{line}");
    // The shell is lockrun's own process, exec'd: the same pid.
    assert_eq!(words[0].parse::<i32>().unwrap(), holder.pid(), "{line}");
    assert_eq!(words[1], "xjob");
    assert!(words[2].parse::<u64>().unwrap() > 0, "fence: {line}");
    assert_eq!(words[3], "unset", "a secret reached the command");

    // Held: by lockrun's rules and by flock(1)'s.
    assert_eq!(no_wait_code(&sb, "xjob"), 75);
    let flock = run_timeout(
        {
            let mut c = Command::new("flock");
            c.arg("-n").arg(sb.lock_file("xjob")).arg("true");
            c
        },
        SOON,
    );
    assert_eq!(code(flock.status), 1, "flock(1) got a lock exec mode holds");
    // status names the command's pid, the one the kernel says holds it.
    let status = run_timeout(sb.lockrun(&["status", "--json", "xjob"]), SOON);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["held"], true, "{doc}");
    assert_eq!(
        doc["slots"][0]["holder"]["pid"].as_i64(),
        Some(i64::from(holder.pid())),
        "{doc}"
    );

    holder.child.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert_eq!(code(holder.wait_timeout(SOON)), 0);
    assert!(sb.lock_is_free("xjob"));
    assert_eq!(no_wait_code(&sb, "xjob"), 0);
}

#[test]
fn exec_mode_waits_and_reports_exec_failures() {
    let sb = Sandbox::new();
    // Busy with --no-wait: 75, nothing run.
    let holder = hold(&sb, "xbusy", &[]);
    let out = run_timeout(
        sb.lockrun(&[
            "--exec",
            "-n",
            "xbusy",
            "--",
            "touch",
            sb.path("ran").to_str().unwrap(),
        ]),
        SOON,
    );
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert!(!sb.path("ran").exists());
    assert_eq!(holder.release(), 0);
    // Not found: 127; not executable: 126; the lock is free afterwards.
    let out = run_timeout(
        sb.lockrun(&["--exec", "xbusy", "--", "no-such-command-xyz"]),
        SOON,
    );
    assert_eq!(code(out.status), 127, "{}", stderr_of(&out));
    let file = sb.path("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let out = run_timeout(
        sb.lockrun(&["--exec", "xbusy", "--", file.to_str().unwrap()]),
        SOON,
    );
    assert_eq!(code(out.status), 126, "{}", stderr_of(&out));
    assert_eq!(no_wait_code(&sb, "xbusy"), 0);
    // The exit status is the command's.
    let out = run_timeout(
        sb.lockrun(&["--exec", "xbusy", "--", "sh", "-c", "exit 7"]),
        SOON,
    );
    assert_eq!(code(out.status), 7);
}

#[test]
fn exec_mode_refuses_what_needs_a_supervisor() {
    let sb = Sandbox::new();
    for extra in [
        &["--max-time", "1m"][..],
        &["--slots", "2"][..],
        &["--kill-escaped"][..],
        &["--backend", "redis://127.0.0.1:1"][..],
        &["--backend", "cloudshell://127.0.0.1:1/r1"][..],
    ] {
        let url = sb.backend_url();
        let ran = sb.path("ran");
        let mut args = vec!["--exec"];
        if !extra.contains(&"--backend") {
            args.extend(["--backend", &url]);
        }
        args.extend(extra);
        args.extend(["xref", "--", "touch", ran.to_str().unwrap()]);
        let mut cmd = lockrun_cmd();
        // Credentials, so that only exec mode is what gets refused.
        cmd.env("LOCKRUN_CLOUDSHELL_TOKEN", "t").args(&args);
        let out = run_timeout(cmd, SOON);
        let err = stderr_of(&out);
        assert_eq!(code(out.status), 64, "{extra:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains("--exec"), "{extra:?}: {err}");
        assert!(!sb.path("ran").exists(), "{extra:?} ran the command");
    }
}

/// Processes lockrun's pid already had before lockrun ran (a shell's
/// background job, then `exec lockrun`) did not come from the command: they
/// are neither named as escaped nor stopped by --kill-escaped.
#[test]
fn children_from_before_an_exec_are_not_taken_for_escaped_ones() {
    let sb = Sandbox::new();
    let bg = sb.path("bg.pid");
    for extra in [&[][..], &["--kill-escaped"][..]] {
        let mut words = vec![BIN.to_owned(), "--backend".into(), sb.backend_url()];
        words.extend(extra.iter().map(|w| (*w).to_owned()));
        words.extend(["inherited", "--", "true"].map(str::to_owned));
        let exec = words.iter().map(|w| sh_quote(w)).collect::<Vec<_>>();
        let script = format!(
            "sleep 60 </dev/null >/dev/null 2>&1 & echo $! > {}; exec {}",
            bg.display(),
            exec.join(" ")
        );
        let mut sh = Command::new("sh");
        sh.args(["-c", &script]);
        let out = run_timeout(sh, SOON);
        let pid: i32 = wait_for_content(&bg).parse().unwrap();
        let survived = alive(pid);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        let err = stderr_of(&out);
        assert_eq!(code(out.status), 0, "{extra:?}: {err}");
        assert!(
            !err.contains("left the command's process group"),
            "{extra:?}: {err}"
        );
        assert!(
            survived,
            "{extra:?}: lockrun stopped a process it inherited"
        );
        std::fs::remove_file(&bg).unwrap();
    }
}

/// A guardian that died before the command could start (SIGKILLed, the OOM
/// killer) leaves nobody to enforce anything: the command is not started,
/// and the exit status says so instead of passing for a command that died
/// of SIGPIPE (141).
#[test]
fn a_command_is_never_started_without_its_guardian() {
    let sb = Sandbox::new();
    let ready = sb.path("ready");
    let ran = sb.path("ran");
    let holder = Holder::spawn(sb.lockrun(&[]), &ready, "noguard");
    let mut cmd = sb.lockrun(&[
        "noguard",
        "--",
        "sh",
        "-c",
        &format!("touch {}", ran.display()),
    ]);
    cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "waiter");
    let guardian = guardian_of(waiter.pid(), 0);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(guardian), Signal::SIGKILL);
    wait_until("the guardian to be gone", SOON, || !alive(guardian));
    assert_eq!(holder.release(), 0);
    let (status, err) = waiter.finish(SOON);
    assert_eq!(code(status), 70, "{err}");
    assert!(err.contains("guardian"), "{err}");
    assert!(!ran.exists(), "the command ran without its guardian");
}

/// A guardian that dies while the command runs: nothing would enforce the
/// deadline or stop the command's group if lockrun were stopped or killed
/// now, so lockrun stops the command itself and says the lock is lost (76).
#[test]
fn a_command_whose_guardian_died_is_stopped() {
    let sb = Sandbox::new();
    let ready = sb.path("ready");
    let script = format!("echo $$ > {}; sleep 60 & wait", ready.display());
    let mut cmd = sb.lockrun(&["--kill-after", "1s", "orphaned", "--", "sh", "-c", &script]);
    cmd.stderr(Stdio::piped());
    let mut run = Proc::spawn(cmd, "holder");
    let command: i32 = wait_for_content(&ready).parse().unwrap();
    let guardian = guardian_of(run.pid(), command);
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(guardian), Signal::SIGKILL);
    let (status, err) = run.finish(Duration::from_secs(10));
    assert_eq!(code(status), 76, "{err}");
    assert!(err.contains("guardian"), "{err}");
    assert!(!alive(command));
}

/// The lock file removed while its lockrun is stopped (SIGSTOP): the
/// guardian, which holds a copy of the lock's descriptor, sees the file
/// lose its name and kills the command's group without waiting for
/// lockrun to run again; lockrun, resumed, reports the loss (76).
#[test]
fn a_lock_file_removed_while_lockrun_is_stopped_still_stops_the_command() {
    let sb = Sandbox::new();
    let ready = sb.path("ready");
    let bg = sb.path("bg");
    let script = format!(
        "sleep 60 & echo $! > {}; echo $$ > {}; wait",
        bg.display(),
        ready.display()
    );
    let mut cmd = sb.lockrun(&["stopped", "--", "sh", "-c", &script]);
    cmd.stderr(Stdio::piped());
    let mut holder = Proc::spawn(cmd, "holder");
    let child: i32 = wait_for_content(&ready).parse().unwrap();
    let grandchild: i32 = wait_for_content(&bg).parse().unwrap();
    holder.signal(Signal::SIGSTOP);
    wait_until("lockrun to be stopped", SOON, || {
        process_state(holder.pid()) == Some('T')
    });
    std::fs::remove_file(sb.lock_file("stopped")).unwrap();
    wait_until("the command to be stopped while lockrun is", SOON, || {
        !alive(child) && !alive(grandchild)
    });
    holder.signal(Signal::SIGCONT);
    let (status, stderr) = holder.finish(SOON);
    assert_eq!(code(status), 76, "{stderr}");
    assert!(stderr.contains("removed"), "{stderr}");
}

/// The command's signal state: nothing blocked, SIGPIPE at its default
/// (lockrun ignores it), a signal lockrun forwards (SIGUSR1) at its default
/// even where the caller ignored it (lockrun's handler replaced that), and a
/// signal the caller ignored that lockrun never touches (SIGALRM) still
/// ignored. The command's process resets only the signals lockrun changed.
#[test]
fn the_command_gets_the_callers_signal_dispositions() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let mut cmd = sb.lockrun(&["sigs", "--", "cat", "/proc/self/status"]);
    // SAFETY: signal(2) only, between fork and exec of the test's child.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGALRM, libc::SIG_IGN);
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status_mask(&status, "SigBlk:"), 0, "signals left blocked");
    let ignored = status_mask(&status, "SigIgn:");
    assert_ne!(
        ignored & signal_bit(libc::SIGALRM),
        0,
        "SIGALRM no longer ignored"
    );
    assert_eq!(
        ignored & signal_bit(libc::SIGPIPE),
        0,
        "SIGPIPE left ignored"
    );
    assert_eq!(
        ignored & signal_bit(libc::SIGUSR1),
        0,
        "SIGUSR1 left ignored"
    );
}

/// A user with no entry in /etc/passwd (a container's arbitrary uid, or a
/// directory user that NSS resolves through a module) still gets its lock:
/// the user-name look-up goes through NSS modules, which a statically
/// linked glibc cannot load (it crashed with SIGSEGV here; see
/// bench/analysis.md, "static-pie"), so this pins the binary to a build
/// that can.
#[test]
fn a_user_without_a_passwd_entry_gets_the_lock() {
    let sb = Sandbox::new();
    let dir = sb.lock_dir();
    std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let url = sb.backend_url();
    let args = [
        "--backend",
        url.as_str(),
        "nouser",
        "--",
        "sh",
        "-c",
        "exit 7",
    ];
    let Some(cmd) = as_user(54321, &args) else {
        eprintln!("skipped: needs root to switch to a uid without a passwd entry");
        return;
    };
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 7, "{}", stderr_of(&out));
    assert!(sb.lock_is_free("nouser"));
}

/// Without pidfd_open (a kernel before 5.3, or a seccomp filter that
/// refuses it), lockrun learns of the command's exit from a thread blocked
/// in waitid: the exit code comes through, the lock is free afterwards, and
/// a signal still reaches lockrun (not that thread) and the command.
#[test]
fn without_pidfd_open_the_command_is_still_waited_for_and_signalled() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let mut cmd = sb.lockrun(&["nopidfd", "--", "sh", "-c", "exit 7"]);
    // SAFETY: prctl(2) only, between fork and exec of the test's child.
    unsafe { cmd.pre_exec(refuse_pidfd_open) };
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 7, "{}", stderr_of(&out));
    assert!(sb.lock_is_free("nopidfd"));

    let ready = sb.path("ready");
    let script = format!(
        "touch {}; exec sleep 60",
        sh_quote(&ready.to_string_lossy())
    );
    let mut cmd = sb.lockrun(&["nopidfd", "--", "sh", "-c", &script]);
    cmd.stderr(Stdio::piped());
    // SAFETY: as above.
    unsafe { cmd.pre_exec(refuse_pidfd_open) };
    let mut running = Proc::spawn(cmd, "lockrun without pidfd_open");
    wait_for_file(&ready);
    // The fallback's thread, with every signal lockrun handles blocked: a
    // signal is for lockrun's own thread.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", running.pid())).unwrap();
    let watcher = tasks
        .filter_map(Result::ok)
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "lockrun-wait")
        })
        .expect("no lockrun-wait thread");
    let status = std::fs::read_to_string(watcher.path().join("status")).unwrap();
    let blocked = status_mask(&status, "SigBlk:");
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
        assert_ne!(
            blocked & signal_bit(sig),
            0,
            "signal {sig} not blocked in the thread"
        );
    }
    running.signal(Signal::SIGTERM);
    let (status, stderr) = running.finish(SOON);
    assert_eq!(code(status), 143, "{stderr}");
    assert!(sb.lock_is_free("nopidfd"));
}

/// A seccomp filter under which pidfd_open fails with ENOSYS, as on a
/// kernel that does not have it; every other call runs.
fn refuse_pidfd_open() -> std::io::Result<()> {
    let op = |code: u32| u16::try_from(code).unwrap();
    let filter = [
        // The system call's number (offset 0 of struct seccomp_data).
        libc::sock_filter {
            code: op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS),
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K),
            jt: 0,
            jf: 1,
            k: u32::try_from(libc::SYS_pidfd_open).unwrap(),
        },
        libc::sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | u32::try_from(libc::ENOSYS).unwrap(),
        },
        libc::sock_filter {
            code: op(libc::BPF_RET | libc::BPF_K),
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog {
        len: u16::try_from(filter.len()).unwrap(),
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a filter program that outlives the call.
    let refused = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ) != 0
    };
    if refused {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A caller that ignores SIGCHLD (the kernel then reaps children by
/// itself): lockrun still reads the command's exit status, and the
/// command inherits the ignore, as it would from its caller directly.
#[test]
fn an_ignored_sigchld_keeps_the_exit_code_and_reaches_the_command() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let ignoring = |args: &[&str]| {
        let mut cmd = sb.lockrun(args);
        // SAFETY: signal(2) only, between fork and exec of the test's child.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGCHLD, libc::SIG_IGN);
                Ok(())
            });
        }
        cmd
    };
    let out = run_timeout(ignoring(&["chld", "--", "sh", "-c", "exit 7"]), SOON);
    assert_eq!(code(out.status), 7, "{}", stderr_of(&out));
    assert!(sb.lock_is_free("chld"));
    let out = run_timeout(ignoring(&["chld", "--", "cat", "/proc/self/status"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let status = String::from_utf8_lossy(&out.stdout);
    let ignored = status_mask(&status, "SigIgn:");
    assert_ne!(
        ignored & signal_bit(libc::SIGCHLD),
        0,
        "SIGCHLD not ignored in the command"
    );
}
