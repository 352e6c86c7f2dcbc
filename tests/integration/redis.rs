//! The Redis backend against a real `redis-server` that each test starts on
//! a free loopback port (no persistence) and kills when it ends.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::redis_server::RedisServer;
use crate::util::*;

/// Lease length for most tests: short, so expiry tests are quick, but with
/// room for a loaded two-core machine (renewal every second).
const TTL: &str = "3s";
const TTL_MS: u64 = 3000;

fn lock_key(name: &str) -> String {
    format!("lockrun:{{{name}}}:lock")
}

fn wake_key(name: &str) -> String {
    format!("lockrun:{{{name}}}:wake")
}

/// `lockrun --backend URL ARGS…`.
/// `--ttl` is TTL unless ARGS say otherwise, to fit the URL's `max-ttl`.
fn lockrun(url: &str, args: &[&str]) -> Command {
    let mut cmd = lockrun_cmd();
    cmd.env("LOCKRUN_TTL", TTL);
    cmd.arg("--backend").arg(url).args(args);
    cmd
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A lockrun holding `name` on Redis (`--ttl` TTL) until released.
fn hold(url: &str, dir: &Path, name: &str, extra: &[&str]) -> Holder {
    let ready = dir.join(format!("{name}.{}.ready", now_ns()));
    let mut args: Vec<&str> = vec!["--ttl", TTL];
    args.extend(extra);
    Holder::spawn(lockrun(url, &args), &ready, name)
}

fn read_fence_log(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            line.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad fence line {line:?}"))
        })
        .collect()
}

fn assert_strictly_increasing(fences: &[u64]) {
    for pair in fences.windows(2) {
        assert!(
            pair[0] < pair[1],
            "fences not strictly increasing: {pair:?} in {fences:?}"
        );
    }
}

#[test]
fn contention_torture_keeps_the_count_exact_and_fences_increasing() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    const WORKERS: usize = 8;
    const ROUNDS: usize = 25;
    let url = server.url();
    let started = Instant::now();
    let (count, fences) = contention_torture(
        dir.path(),
        WORKERS,
        ROUNDS,
        &["-q", "--backend", &url, "-w", "120s", "--ttl", TTL],
        &[],
        Duration::from_secs(240),
    );
    assert_eq!(count, WORKERS * ROUNDS);
    assert_eq!(fences.len(), WORKERS * ROUNDS);
    assert_strictly_increasing(&fences);
    eprintln!(
        "{} critical sections in {:?}",
        WORKERS * ROUNDS,
        started.elapsed()
    );
    // Nothing left but the fence counter (the wake list expires by itself).
    assert!(
        server
            .cli(&["LLEN", &wake_key("torture")])
            .parse::<u64>()
            .unwrap()
            <= 1
    );
    assert_eq!(server.lasting_keys("*"), "lockrun:{torture}:fence");
}

#[test]
fn three_slots_hold_three_at_most_and_three_together() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    // Each holder marks its slot (noclobber: two in one slot is a collision),
    // checks how many are inside, then waits at the barrier `go`.
    let script = format!(
        "set -C; : > {d}/in.$LOCKRUN_SLOT 2>/dev/null || touch {d}/collision; \
         n=$(ls {d} | grep -c '^in\\.'); [ \"$n\" -le 3 ] || touch {d}/over; \
         echo $LOCKRUN_SLOT >> {d}/entered; \
         while [ ! -e {d}/go ]; do sleep 0.01; done; rm -f {d}/in.$LOCKRUN_SLOT"
    );
    let inside = || entries_starting_with(dir.path(), "in.");
    let mut procs: Vec<Proc> = (0..6)
        .map(|i| {
            let cmd = lockrun(
                &server.url(),
                &[
                    "--slots", "3", "-w", "60s", "--ttl", TTL, "pool", "-c", &script,
                ],
            );
            Proc::spawn(cmd, &format!("slot user {i}"))
        })
        .collect();
    wait_until("three holders inside together", SOON, || inside() == 3);
    // The other three are waiting, not inside.
    let status = run_timeout(
        lockrun(&server.url(), &["status", "pool", "--slots", "3", "--json"]),
        SOON,
    );
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let held = doc["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["held"] == true)
        .count();
    assert_eq!(held, 3, "{doc}");
    let running = procs
        .iter_mut()
        .filter_map(|p| p.child.try_wait().unwrap())
        .count();
    let running = 6 - running;
    assert_eq!(running, 6);
    assert_eq!(inside(), 3);
    touch(&dir.path().join("go"));
    for proc in &mut procs {
        assert_eq!(code(proc.wait_timeout(SOON)), 0, "{}", proc.name);
    }
    assert!(
        !dir.path().join("over").exists(),
        "more than 3 inside at once"
    );
    assert!(
        !dir.path().join("collision").exists(),
        "two holders in one slot"
    );
    let entered = std::fs::read_to_string(dir.path().join("entered")).unwrap();
    let slots: Vec<&str> = entered.lines().collect();
    assert_eq!(slots.len(), 6);
    assert!(
        slots.iter().all(|s| ["1", "2", "3"].contains(s)),
        "{slots:?}"
    );
}

#[test]
fn sigkilled_holder_keeps_the_lock_until_the_ttl_then_it_is_free() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut holder = hold(&url, dir.path(), "crash", &[]);
    // The key expires no earlier than t0 + its PTTL read after t0.
    let t0 = now_ns();
    let pttl: u64 = server.cli(&["PTTL", &lock_key("crash")]).parse().unwrap();
    assert!(pttl > 0 && pttl <= TTL_MS, "pttl {pttl}");
    holder.proc.signal(Signal::SIGKILL);
    holder.proc.wait_timeout(SOON);
    wait_until("the child to die with lockrun", SOON, || {
        !alive(holder.child_pid)
    });

    let out = run_timeout(lockrun(&url, &["-n", "crash", "--", "true"]), SOON);
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));

    let stamp = dir.path().join("acquired");
    let cmd = lockrun(
        &url,
        &[
            "-w",
            "20s",
            "--ttl",
            TTL,
            "crash",
            "-c",
            &format!("date +%s%N > {}", stamp.display()),
        ],
    );
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let acquired: u128 = std::fs::read_to_string(&stamp)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let expiry = t0 + u128::from(pttl) * 1_000_000;
    assert!(
        acquired >= expiry,
        "acquired {} ms before the lease expired",
        (expiry - acquired) / 1_000_000
    );
    // Noticed promptly (the waiter sleeps until the lease would expire, plus jitter).
    assert!(
        acquired < expiry + 2_000_000_000,
        "acquired {} ms after the lease expired",
        (acquired - expiry) / 1_000_000
    );
}

#[test]
fn deleted_lock_key_stops_the_holder_and_spares_the_new_holder() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut old = hold(&url, dir.path(), "stolen", &[]);
    server.cli(&["DEL", &lock_key("stolen")]);
    let deleted = Instant::now();
    let new = hold(&url, dir.path(), "stolen", &["-w", "10s"]);
    let (code_old, stderr) = old.wait_exit(SOON);
    let took = deleted.elapsed();
    assert_eq!(code_old, 76, "{stderr}");
    assert!(stderr.contains("lost the lock"), "{stderr}");
    // Renewal every ttl/3 = 1s; the margin covers the stop and a busy machine.
    assert!(
        took < Duration::from_millis(TTL_MS / 3 + 1500),
        "stopped only after {took:?}"
    );
    assert!(!alive(old.child_pid));
    // The old holder's release left the new holder's key alone.
    let record = server.cli(&["HGET", &lock_key("stolen"), "holder"]);
    assert!(
        record.contains(&format!("\"pid\":{}", new.proc.pid())),
        "{record}"
    );
    assert!(alive(new.child_pid));
    assert!(new.fence() > old.fence());
    assert_eq!(new.release(), 0);
    assert_eq!(server.cli(&["EXISTS", &lock_key("stolen")]), "0");
}

#[test]
fn overwritten_lock_key_is_lost_and_left_alone() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut holder = hold(&server.url(), dir.path(), "clobbered", &[]);
    server.cli(&["SET", &lock_key("clobbered"), "intruder"]);
    let overwritten = Instant::now();
    let (code, stderr) = holder.wait_exit(SOON);
    assert_eq!(code, 76, "{stderr}");
    assert!(overwritten.elapsed() < Duration::from_millis(TTL_MS / 3 + 1500));
    assert!(stderr.contains("belongs to someone else"), "{stderr}");
    assert_eq!(server.cli(&["GET", &lock_key("clobbered")]), "intruder");

    // Same with a hash that has another token: taken over, not ours to delete.
    let mut holder = hold(&server.url(), dir.path(), "taken", &[]);
    server.cli(&["HSET", &lock_key("taken"), "token", "someone-else"]);
    let (code, stderr) = holder.wait_exit(SOON);
    assert_eq!(code, 76, "{stderr}");
    assert_eq!(
        server.cli(&["HGET", &lock_key("taken"), "token"]),
        "someone-else"
    );
}

/// The fence is the server clock in microseconds unless the counter is
/// ahead of it (a clock set back, a counter copied from a faster server):
/// then one past the counter, exact even past 2^53 where a double is not,
/// through exclusive and shared grants alike, so fences still only increase.
#[test]
fn a_fence_counter_ahead_of_the_clock_is_still_exceeded() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let fence_key = "lockrun:{ahead}:fence";
    // 2^53 + 1: the first integer a double cannot hold.
    let ahead: u64 = 9_007_199_254_740_993;
    server.cli(&["SET", fence_key, &ahead.to_string()]);
    let mut fences = Vec::new();
    for extra in [&[][..], &["-s"][..], &[][..]] {
        let holder = hold(&url, dir.path(), "ahead", extra);
        fences.push(holder.fence());
        assert_eq!(holder.release(), 0);
    }
    assert_eq!(fences, [ahead + 1, ahead + 2, ahead + 3]);
    assert_eq!(server.cli(&["GET", fence_key]), (ahead + 3).to_string());

    // A counter behind the clock gives way to the clock, read and written
    // in one call: no INCR.
    server.cli(&["CONFIG", "RESETSTAT"]);
    server.cli(&["SET", "lockrun:{behind}:fence", "7"]);
    let before_us = u64::try_from(now_ns() / 1000).unwrap();
    let behind = hold(&url, dir.path(), "behind", &[]);
    // The server's clock is this machine's: the same clock, read later.
    assert!(behind.fence() >= before_us, "fence {}", behind.fence());
    assert_eq!(behind.release(), 0);
    assert_eq!(server.calls(&["incr"]), 0);

    // A counter that is not a number is refused and left as it was.
    server.cli(&["SET", "lockrun:{garbled}:fence", "0x10"]);
    let out = run_timeout(lockrun(&url, &["-n", "garbled", "--", "true"]), SOON);
    assert_eq!(code_of(&out), 69, "{}", stderr_of(&out));
    assert_eq!(server.cli(&["GET", "lockrun:{garbled}:fence"]), "0x10");
    assert_eq!(server.cli(&["EXISTS", &lock_key("garbled")]), "0");
}

/// The restart guard asks INFO only when LASTSAVE cannot settle it: on a
/// server up well past max-ttl an exclusive and a shared grant ask LASTSAVE
/// and no INFO; a user refused LASTSAVE still gets the lock, through INFO.
#[test]
fn a_server_up_past_max_ttl_grants_without_info() {
    // Up 3 s or more (settled), without a save since it started: LASTSAVE
    // is its start, and now - LASTSAVE - 2 s is past a max-ttl of 1 s.
    let server = RedisServer::start_for_ttl(3000);
    let url = format!("redis://127.0.0.1:{}/0?max-ttl=1s", server.port);
    let grant = |url: &str, extra: &[&str], password: Option<&str>| {
        let mut args = vec!["--ttl", "1s", "-n"];
        args.extend(extra);
        args.extend(["long-up", "--", "true"]);
        let mut cmd = lockrun(url, &args);
        if let Some(password) = password {
            cmd.env("LOCKRUN_REDIS_PASSWORD", password);
        }
        let out = run_timeout(cmd, SOON);
        assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    };
    server.cli(&["CONFIG", "RESETSTAT"]);
    grant(&url, &[], None);
    grant(&url, &["-s"], None);
    // INFO first: `calls` reads the counts with an INFO of its own.
    assert_eq!(server.calls(&["info"]), 0);
    assert_eq!(server.calls(&["lastsave"]), 2);

    server.cli(&[
        "ACL",
        "SETUSER",
        "no-lastsave",
        "on",
        ">no-lastsave-Pw",
        "~*",
        "&*",
        "+@all",
        "-lastsave",
    ]);
    let limited = format!("redis://no-lastsave@127.0.0.1:{}/0?max-ttl=1s", server.port);
    server.cli(&["CONFIG", "RESETSTAT"]);
    grant(&limited, &[], Some("no-lastsave-Pw"));
    assert_eq!(server.calls(&["info"]), 1);
}

/// Keys of the lock's NAME that someone else wrote with another type are
/// never overwritten: a lock key makes the lock held, a wake list that is
/// not a list is left as it was and costs nobody the lock.
#[test]
fn keys_of_another_type_are_held_or_left_alone() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    server.cli(&["SET", &lock_key("foreign"), "not-a-lock", "PX", "60000"]);
    let out = run_timeout(lockrun(&url, &["-n", "foreign", "--", "true"]), SOON);
    assert_eq!(code_of(&out), 75, "{}", stderr_of(&out));
    assert_eq!(server.cli(&["GET", &lock_key("foreign")]), "not-a-lock");

    let rwake = "lockrun:{odd-wake}:rwake";
    server.cli(&["SET", rwake, "not-a-list"]);
    server.cli(&["SET", &wake_key("odd-wake"), "not-a-list"]);
    let holder = hold(&url, dir.path(), "odd-wake", &[]);
    assert_eq!(holder.release(), 0);
    assert_eq!(server.cli(&["EXISTS", &lock_key("odd-wake")]), "0");
    for key in [rwake, &wake_key("odd-wake")] {
        assert_eq!(server.cli(&["GET", key]), "not-a-list");
        // Not given a life of its own either: it is not ours.
        assert_eq!(server.cli(&["PTTL", key]), "-1");
    }
    // And the lock is free again for the next, which finds it at once.
    let next = hold(&url, dir.path(), "odd-wake", &[]);
    assert_eq!(next.release(), 0);
}

#[test]
fn redis_stopped_under_a_holder_stops_the_child_before_the_ttl() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut holder = hold(&url, dir.path(), "outage", &[]);
    server.kill();
    let killed = Instant::now();
    // The last renewal was before the kill, so the lease could expire on the
    // server ttl after it at the latest: the child must be gone by then.
    wait_until(
        "the child to be stopped",
        Duration::from_millis(TTL_MS),
        || !alive(holder.child_pid),
    );
    let stopped = killed.elapsed();
    let (code, stderr) = holder.wait_exit(SOON);
    assert_eq!(code, 76, "{stderr}");
    assert!(stderr.contains("could not renew"), "{stderr}");
    eprintln!("child stopped {stopped:?} after redis died (ttl {TTL})");

    // Back, empty: the next holder gets a larger fence although the counter was lost.
    server.restart();
    let next = hold(&url, dir.path(), "outage", &["-w", "20s"]);
    assert!(
        next.fence() > holder.fence(),
        "{} <= {}",
        next.fence(),
        holder.fence()
    );
    assert_eq!(next.release(), 0);
}

#[test]
fn quick_redis_restart_never_gives_two_holders() {
    let mut server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut old = hold(&url, dir.path(), "restart", &[]);
    // Restarted empty before the holder even noticed: its key is gone, yet
    // the holder's child may still run until its next renewal.
    server.restart();
    let overlap = dir.path().join("overlap");
    let fence = dir.path().join("fence");
    let script = format!(
        "if kill -0 {pid} 2>/dev/null; then touch {overlap}; fi; echo $LOCKRUN_FENCE > {fence}",
        pid = old.child_pid,
        overlap = overlap.display(),
        fence = fence.display()
    );
    let out = run_timeout(
        lockrun(&url, &["-w", "20s", "--ttl", TTL, "restart", "-c", &script]),
        SOON,
    );
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert!(
        !overlap.exists(),
        "the new holder ran while the old holder's child was alive"
    );
    let (code_old, stderr) = old.wait_exit(SOON);
    assert_eq!(code_old, 76, "{stderr}");
    let new_fence: u64 = wait_for_content(&fence).parse().unwrap();
    assert!(new_fence > old.fence());
}

#[test]
fn client_pause_during_renewal() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();

    // Short pauses: the lease survives. Back to back over 1.5s, so at least
    // one renewal (every 1s) is caught; at ttl 3s supervise self-fences if a
    // renewal is not answered within about 0.67s.
    let holder = hold(&url, dir.path(), "paused", &[]);
    for _ in 0..5 {
        server.cli(&["CLIENT", "PAUSE", "300", "ALL"]);
        server.wait_unpaused();
    }
    assert!(alive(holder.child_pid));
    assert_eq!(holder.release(), 0);

    // A long pause: renewals time out and the child is stopped before the
    // lease could expire, without waiting for the server to answer.
    let mut holder = hold(&url, dir.path(), "paused", &[]);
    server.cli(&["CLIENT", "PAUSE", "6000", "ALL"]);
    let paused = Instant::now();
    wait_until(
        "the child to be stopped",
        Duration::from_millis(TTL_MS),
        || !alive(holder.child_pid),
    );
    let (code, stderr) = holder.wait_exit(Duration::from_secs(5));
    assert_eq!(code, 76, "{stderr}");
    assert!(
        paused.elapsed() < Duration::from_secs(6),
        "lockrun waited for the pause to end"
    );
    server.wait_unpaused();
    let out = run_timeout(
        lockrun(&url, &["-w", "10s", "--ttl", TTL, "paused", "--", "true"]),
        SOON,
    );
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
}

fn code_of(out: &std::process::Output) -> i32 {
    code(out.status)
}

#[test]
fn client_pause_during_acquisition() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();

    // A pause shorter than the acquire timeout (ttl/3) only delays it.
    let ran = dir.path().join("ran");
    server.cli(&["CLIENT", "PAUSE", "600", "ALL"]);
    let started = Instant::now();
    let out = run_timeout(
        lockrun(
            &url,
            &[
                "-n",
                "--ttl",
                TTL,
                "slow",
                "--",
                "touch",
                ran.to_str().unwrap(),
            ],
        ),
        SOON,
    );
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    assert!(ran.exists());
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the pause was not felt"
    );

    // A pause that outlasts the acquire timeout (ttl/3): a waiter's try
    // fails as unavailable, the command does not run, and its request,
    // dropped with its connection, leaves no lock behind after the pause.
    let key = lock_key("slow");
    server.cli(&["HSET", &key, "token", "fake", "holder", "{}", "fence", "1"]);
    server.cli(&["PEXPIRE", &key, "1500"]);
    let ran = dir.path().join("ran2");
    let mut cmd = lockrun(
        &url,
        &[
            "-w",
            "30s",
            "--ttl",
            TTL,
            "slow",
            "--",
            "touch",
            ran.to_str().unwrap(),
        ],
    );
    cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "waiter");
    server.wait_for_blocked(1);
    server.cli(&["CLIENT", "PAUSE", "5000", "ALL"]);
    let paused = Instant::now();
    let (status, stderr) = waiter.finish(SOON);
    assert_eq!(code(status), 69, "{stderr}");
    assert!(
        paused.elapsed() < Duration::from_millis(4500),
        "the waiter waited out the pause"
    );
    assert!(stderr.contains("did not answer"), "{stderr}");
    assert!(!ran.exists());
    server.wait_unpaused();
    let record = server.cli(&["HGET", &key, "holder"]);
    assert!(
        !record.contains(&format!("\"pid\":{}", waiter.pid())),
        "phantom lock: {record}"
    );
    let out = run_timeout(
        lockrun(&url, &["-w", "10s", "--ttl", TTL, "slow", "--", "true"]),
        SOON,
    );
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
}

#[test]
fn credentials_refused_is_77_unreachable_is_69_and_nothing_runs() {
    const SECRET: &str = "s3cret-Pw-xyz";
    let server = RedisServer::start_with(&[], Some(SECRET));
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let touch_ran = ["--", "touch", ran.to_str().unwrap()];
    let port = server.port;
    let try_with = |url: &str, env_password: Option<&str>| {
        let mut args = vec!["-n", "creds"];
        args.extend(touch_ran);
        let mut cmd = lockrun(url, &args);
        if let Some(password) = env_password {
            cmd.env("LOCKRUN_REDIS_PASSWORD", password);
        }
        run_timeout(cmd, SOON)
    };
    let cases = [
        (
            format!("redis://:wrong-Pw-abc@127.0.0.1:{port}"),
            None,
            77,
            "wrong-Pw-abc",
        ),
        (format!("redis://127.0.0.1:{port}"), None, 77, SECRET),
        (
            format!("redis://127.0.0.1:{port}"),
            Some("wrong-Pw-abc"),
            77,
            "wrong-Pw-abc",
        ),
        (
            format!("redis://nobody:{SECRET}@127.0.0.1:{port}"),
            None,
            77,
            SECRET,
        ),
        (
            format!("redis://:{SECRET}@127.0.0.1:{}", free_port()),
            None,
            69,
            SECRET,
        ),
        (
            format!("redis://:{SECRET}@127.0.0.1:{port}:notaport"),
            None,
            64,
            SECRET,
        ),
    ];
    for (url, env_password, expected, secret) in &cases {
        let out = try_with(url, *env_password);
        let stderr = stderr_of(&out);
        assert_eq!(code_of(&out), *expected, "{url}: {stderr}");
        assert!(!stderr.contains(secret), "{url}: password leaked: {stderr}");
        assert!(!ran.exists(), "{url}: the command ran");
    }

    // A user the server knows but who may not run scripts: 77 too.
    server.cli(&[
        "ACL",
        "SETUSER",
        "limited",
        "on",
        ">limited-Pw",
        "~*",
        "-@all",
        "+ping",
    ]);
    let out = try_with(
        &format!("redis://limited:limited-Pw@127.0.0.1:{port}"),
        None,
    );
    assert_eq!(code_of(&out), 77, "{}", stderr_of(&out));
    assert!(!ran.exists());
}

#[test]
fn the_password_never_shows_and_the_child_sees_the_url_without_it() {
    const SECRET: &str = "s3cret-Pw-xyz";
    let server = RedisServer::start_with(&[], Some(SECRET));
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("env");
    let plain = format!("redis://127.0.0.1:{}/0?max-ttl={TTL}", server.port);
    let dump_env = format!("env > {}", env_file.display());

    // From the environment.
    let mut cmd = lockrun(&plain, &["-vv", "--ttl", TTL, "secretive", "-c", &dump_env]);
    cmd.env("LOCKRUN_REDIS_PASSWORD", SECRET);
    let out = run_timeout(cmd, SOON);
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains(SECRET), "password in the child's environment");
    assert!(
        env.contains(&format!(
            "LOCKRUN_BACKEND=redis://127.0.0.1:{}/0?max-ttl={TTL}\n",
            server.port
        )),
        "{env}"
    );
    assert!(!stderr_of(&out).contains(SECRET));

    // From the URL.
    let with_password = format!(
        "redis://:{SECRET}@127.0.0.1:{}/0?prefix=app:&max-ttl={TTL}",
        server.port
    );
    let out = run_timeout(
        lockrun(
            &with_password,
            &["-vv", "--ttl", TTL, "secretive", "-c", &dump_env],
        ),
        SOON,
    );
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(!env.contains(SECRET), "password in the child's environment");
    assert!(
        env.contains(&format!(
            "LOCKRUN_BACKEND=redis://127.0.0.1:{}/0?prefix=app:&max-ttl={TTL}\n",
            server.port
        )),
        "{env}"
    );
    assert!(!stderr_of(&out).contains(SECRET));
    // The prefix is used and the lock's keys share the hash tag.
    assert_eq!(server.lasting_keys("app:*"), "app:{secretive}:fence");

    let holder = hold(&with_password, dir.path(), "secretive", &[]);
    for args in [
        &["status", "secretive"][..],
        &["status", "secretive", "--json"],
        &["list"],
        &["list", "--json"],
    ] {
        let out = run_timeout(lockrun(&with_password, args), SOON);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr_of(&out)
        );
        assert_eq!(code_of(&out), 0, "{args:?}: {all}");
        assert!(!all.contains(SECRET), "{args:?}: {all}");
        assert!(all.contains("secretive"), "{args:?}: {all}");
    }
    assert_eq!(holder.release(), 0);
}

/// The commands lockrun sends (scripts and what they run, the wake list,
/// its connection set-up), not the ones the tests send.
/// (Not INFO: the tests count with it.)
const LOCKRUN_COMMANDS: [&str; 27] = [
    "evalsha",
    "eval",
    "script|load",
    "type",
    "hmget",
    "hget",
    "pttl",
    "incr",
    "hset",
    "pexpire",
    "del",
    "time",
    "set",
    "scan",
    "blpop",
    "lpush",
    "ltrim",
    "client|id",
    "client|unblock",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zremrangebyscore",
    "zrem",
    "zscore",
    "zcount",
    "hdel",
];

/// Wait until the server has seen no new lockrun command for a while; the count.
fn quiet_calls(server: &RedisServer) -> u64 {
    let mut before = server.calls(&LOCKRUN_COMMANDS);
    let settle = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = server.calls(&LOCKRUN_COMMANDS);
        if now == before {
            return now;
        }
        before = now;
        assert!(settle.elapsed() < SOON, "waiters never went quiet");
    }
}

/// A lock held by nobody who will release it: a lease of 60s.
fn fake_holder(server: &RedisServer, key: &str) {
    server.cli(&["HSET", key, "token", "fake", "holder", "{}", "fence", "1"]);
    server.cli(&["PEXPIRE", key, "60000"]);
}

#[test]
fn waiters_sleep_until_the_release_and_leave_nothing_behind() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let key = lock_key("queue");
    // A holder whose lease is long: a waiter has no reason to look before
    // it expires, unless a release wakes it.
    fake_holder(&server, &key);

    let log = dir.path().join("log");
    let section = format!("echo $LOCKRUN_FENCE >> {}", log.display());
    let mut waiters: Vec<Proc> = (0..4)
        .map(|i| {
            Proc::spawn(
                lockrun(
                    &url,
                    &["-q", "-w", "60s", "--ttl", "2s", "queue", "-c", &section],
                ),
                &format!("waiter {i}"),
            )
        })
        .collect();
    // Two more that give up: one at --wait, one on a signal.
    let mut timed_out = Proc::spawn(
        lockrun(&url, &["-q", "-w", "3s", "queue", "--", "true"]),
        "timed out",
    );
    let mut interrupted = Proc::spawn(lockrun(&url, &["-q", "queue", "--", "true"]), "interrupted");
    server.wait_for_blocked(6);
    let before = quiet_calls(&server);
    // Measure over a window longer than the timed-out waiter's --wait.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code(timed_out.wait_timeout(SOON)), 75);
    // While waiting, a waiter sends nothing: the count may only grow by the
    // timed-out waiter's last look (a connection to unblock its BLPOP, and
    // one script, < 10 calls inside).
    let during = server.calls(&LOCKRUN_COMMANDS) - before;
    assert!(
        during <= 12,
        "waiters sent {during} commands in 4s while waiting"
    );
    server.wait_for_blocked(5);

    interrupted.signal(Signal::SIGINT);
    assert_eq!(code(interrupted.wait_timeout(SOON)), 130);
    server.wait_for_blocked(4);
    // Neither quitter left a wake-up behind, nor took one.
    assert_eq!(server.cli(&["EXISTS", &wake_key("queue")]), "0");

    // One release wakes one waiter; its release wakes the next, and so on:
    // all four run, one at a time, well before the lease would expire.
    let released = Instant::now();
    server.cli(&["DEL", &key]);
    server.cli(&["LPUSH", &wake_key("queue"), "1"]);
    for waiter in &mut waiters {
        assert_eq!(code(waiter.wait_timeout(SOON)), 0, "{}", waiter.name);
    }
    assert!(
        released.elapsed() < Duration::from_secs(10),
        "{:?}",
        released.elapsed()
    );
    let fences = read_fence_log(&log);
    assert_eq!(fences.len(), 4);
    assert_strictly_increasing(&fences);
    // Nothing registered in Redis by anyone who waited; the last release's
    // wake-up (nobody left to take it) is one token that expires by itself.
    assert_eq!(server.blocked_clients(), 0);
    assert!(
        server
            .cli(&["LLEN", &wake_key("queue")])
            .parse::<u64>()
            .unwrap()
            <= 1
    );
    let pttl: i64 = server.cli(&["PTTL", &wake_key("queue")]).parse().unwrap();
    assert!(
        pttl == -2 || (0..=2000).contains(&pttl),
        "wake list pttl {pttl}"
    );
    assert_eq!(server.lasting_keys("*"), "lockrun:{queue}:fence");
}

/// A waiter's next try goes out behind its BLPOP and runs on the server as
/// soon as the BLPOP ends, also when lockrun undoes the BLPOP because a
/// signal ended the wait: a lock that try takes is given back before
/// lockrun exits, not left to its ttl.
#[test]
fn a_waiter_ended_by_a_signal_gives_back_what_its_queued_try_took() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let key = lock_key("queued");
    fake_holder(&server, &key);
    let ran = dir.path().join("ran");
    let mut waiter = Proc::spawn(
        lockrun(
            &url,
            &["-q", "queued", "--", "touch", ran.to_str().unwrap()],
        ),
        "waiter",
    );
    server.wait_for_blocked(1);
    // Free, but nobody is woken: the waiter stays blocked.
    server.cli(&["DEL", &key]);
    waiter.signal(Signal::SIGINT);
    assert_eq!(code(waiter.wait_timeout(SOON)), 130);
    assert!(!ran.exists(), "the command ran");
    assert_eq!(
        server.cli(&["EXISTS", &key]),
        "0",
        "the lock was left taken"
    );
    assert_eq!(server.blocked_clients(), 0);
    let out = run_timeout(lockrun(&url, &["-n", "queued", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
}

/// A waiter's lease is dated from its BLPOP's send (its try waits behind
/// the BLPOP), so after a wait of a good part of the ttl it arrives with
/// little left: it is renewed before the command starts, or ahead of its
/// TERM instant, and a command that outlasts the ttl is not stopped for it.
/// (Each wait below is the injected delay, not synchronisation.)
#[test]
fn a_lease_granted_after_a_long_wait_is_renewed_in_time() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    for wait_ms in [900, 1300, 2400] {
        let name = format!("aged{wait_ms}");
        let holder = hold(&url, dir.path(), &name, &[]);
        let mut cmd = lockrun(&url, &[&name, "--", "sleep", "4"]);
        cmd.stderr(Stdio::piped());
        let mut waiter = Proc::spawn(cmd, "waiter");
        server.wait_for_blocked(1);
        std::thread::sleep(Duration::from_millis(wait_ms));
        assert_eq!(holder.release(), 0);
        let (status, stderr) = waiter.finish(SOON);
        assert_eq!(code(status), 0, "after {wait_ms} ms: {stderr}");
        assert!(
            !stderr.contains("lost the lock"),
            "after {wait_ms} ms: {stderr}"
        );
    }
}

#[test]
fn a_release_wakes_one_waiter_not_all() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let key = lock_key("herd");
    fake_holder(&server, &key);
    const WAITERS: u64 = 16;
    let log = dir.path().join("log");
    let section = format!("echo $LOCKRUN_FENCE >> {}", log.display());
    let mut waiters: Vec<Proc> = (0..WAITERS)
        .map(|i| {
            Proc::spawn(
                lockrun(
                    &url,
                    &["-q", "-w", "60s", "--ttl", TTL, "herd", "-c", &section],
                ),
                &format!("waiter {i}"),
            )
        })
        .collect();
    server.wait_for_blocked(WAITERS);
    let _ = quiet_calls(&server);
    let scripts = || server.calls(&["evalsha", "eval"]);
    let (scripts_before, blpops_before) = (scripts(), server.calls(&["blpop"]));

    // The first release breaks the fake lock (one script). Every waiter then
    // runs once and its release hands on to the next.
    let out = run_timeout(lockrun(&url, &["release", "herd", "--force"]), SOON);
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    for waiter in &mut waiters {
        assert_eq!(code(waiter.wait_timeout(SOON)), 0, "{}", waiter.name);
    }
    let fences = read_fence_log(&log);
    assert_eq!(fences.len(), WAITERS as usize);
    assert_strictly_increasing(&fences);
    // Per hand-off: the woken waiter's acquire and, later, its release (and
    // the forced release once: a read and a compare-and-delete). A release
    // that woke every waiter would cost about WAITERS / 2 more failed
    // acquires per hand-off.
    let scripts = scripts() - scripts_before;
    let blpops = server.calls(&["blpop"]) - blpops_before;
    eprintln!("{WAITERS} hand-offs: {scripts} scripts, {blpops} more BLPOPs");
    assert!(
        scripts <= 2 * WAITERS + 5,
        "{scripts} scripts for {WAITERS} hand-offs: the releases woke more than one waiter"
    );
    assert!(
        blpops <= 4,
        "{blpops} BLPOPs after the first wake-up: waiters were woken for nothing"
    );
}

#[test]
fn forced_and_slot_releases_wake_a_waiter() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();

    // release --force of a lock whose holder will never release.
    fake_holder(&server, &lock_key("stuck"));
    let mut waiter = Proc::spawn(
        lockrun(
            &url,
            &["-q", "-w", "60s", "--ttl", TTL, "stuck", "--", "true"],
        ),
        "waiter",
    );
    server.wait_for_blocked(1);
    let out = run_timeout(lockrun(&url, &["release", "stuck", "--force"]), SOON);
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    let forced = Instant::now();
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
    assert!(
        forced.elapsed() < Duration::from_secs(5),
        "woken only after {:?}",
        forced.elapsed()
    );

    // --slots 2, both held: releasing either slot wakes one waiter, who
    // takes that slot. (The holders' leases are short, so the waiters also
    // look now and then by themselves: their log tells a wake-up apart.)
    let a = hold(&url, dir.path(), "pool", &["--slots", "2"]);
    let b = hold(&url, dir.path(), "pool", &["--slots", "2"]);
    let d = dir.path().display().to_string();
    let section = format!("touch {d}/in.$$; while [ ! -e {d}/go ]; do sleep 0.01; done");
    let inside = || entries_starting_with(dir.path(), "in.");
    let mut waiters: Vec<Proc> = (0..2)
        .map(|i| {
            let mut cmd = lockrun(
                &url,
                &[
                    "-vv", "-w", "60s", "--ttl", TTL, "--slots", "2", "pool", "-c", &section,
                ],
            );
            cmd.stderr(Stdio::piped());
            Proc::spawn(cmd, &format!("slot waiter {i}"))
        })
        .collect();
    server.wait_for_blocked(2);
    assert_eq!(b.release(), 0);
    wait_until("a slot waiter inside", SOON, || inside() == 1);
    server.wait_for_blocked(1);
    // While the wake list exists, `list` shows locks only.
    let out = run_timeout(lockrun(&url, &["list", "--json"]), SOON);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = doc["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.iter()
            .all(|k| ["stuck", "pool@1", "pool@2"].contains(k)),
        "{doc}"
    );
    assert_eq!(inside(), 1, "two inside with one slot free");
    // The first one's release wakes the second.
    touch(&dir.path().join("go"));
    for waiter in &mut waiters {
        let (status, stderr) = waiter.finish(SOON);
        assert_eq!(code(status), 0, "{}: {stderr}", waiter.name);
        assert!(stderr.contains("woken by a release"), "{stderr}");
    }
    assert_eq!(inside(), 2);
    assert_eq!(a.release(), 0);
}

#[test]
fn status_list_and_forced_release() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut holder = hold(&url, dir.path(), "inspected", &[]);

    let out = run_timeout(lockrun(&url, &["status", "inspected", "--json"]), SOON);
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let slot = &doc["slots"][0];
    assert_eq!(slot["held"], true, "{doc}");
    assert_eq!(slot["holder"]["pid"], holder.proc.pid(), "{doc}");
    assert_eq!(slot["fence"], holder.fence(), "{doc}");
    let remaining = slot["expires_in_ms"].as_u64().unwrap();
    assert!(remaining > 0 && remaining <= TTL_MS, "{doc}");

    let out = run_timeout(lockrun(&url, &["status", "inspected"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("pid {}", holder.proc.pid())),
        "{text}"
    );
    assert!(
        text.contains(&format!("fence {}", holder.fence())),
        "{text}"
    );
    assert!(text.contains("lease expires in"), "{text}");

    let out = run_timeout(lockrun(&url, &["-n", "inspected", "--", "true"]), SOON);
    assert_eq!(code_of(&out), 75);
    assert!(
        stderr_of(&out).contains(&format!("pid {}", holder.proc.pid())),
        "{}",
        stderr_of(&out)
    );

    let out = run_timeout(lockrun(&url, &["list", "--json"]), SOON);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let locks = doc["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1, "{doc}");
    assert_eq!(locks[0]["key"], "inspected");

    let out = run_timeout(lockrun(&url, &["release", "inspected", "--force"]), SOON);
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("pid {}", holder.proc.pid())),
        "{}",
        stderr_of(&out)
    );
    let (code, stderr) = holder.wait_exit(SOON);
    assert_eq!(code, 76, "{stderr}");

    // Free now; `list` leaves out a name with only its fence counter left.
    let out = run_timeout(lockrun(&url, &["status", "inspected"]), SOON);
    assert!(String::from_utf8_lossy(&out.stdout).contains("inspected: free"));
    let out = run_timeout(lockrun(&url, &["list"]), SOON);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("inspected"));

    // Slots: each its own key, all discovered by status and force-released.
    let a = hold(&url, dir.path(), "pool", &["--slots", "2"]);
    let b = hold(&url, dir.path(), "pool", &["--slots", "2"]);
    assert_eq!(
        server.cli(&["EXISTS", "lockrun:{pool}:slot:1", "lockrun:{pool}:slot:2"]),
        "2"
    );
    let out = run_timeout(lockrun(&url, &["status", "pool"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pool@1: held") && text.contains("pool@2: held"),
        "{text}"
    );
    assert_eq!(a.release(), 0);
    assert_eq!(b.release(), 0);
}

#[test]
fn bad_urls_are_usage_errors() {
    for url in [
        "redis://",
        "redis://h:99999",
        "redis://h/notadb",
        "redis://h?nope=1",
        "rediss://h?cacert=",
    ] {
        let out = run_timeout(lockrun(url, &["-n", "x", "--", "true"]), SOON);
        assert_eq!(code_of(&out), 64, "{url}: {}", stderr_of(&out));
    }
}

#[test]
fn rediss_verifies_the_server_certificate() {
    let Some(server) = RedisServer::start_tls() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let ca = server.tls_ca.clone().unwrap();
    let trusted = format!(
        "rediss://localhost:{}/0?cacert={}&max-ttl={TTL}",
        server.port,
        ca.display()
    );
    let touch_ran = [
        "-n",
        "--ttl",
        TTL,
        "tls",
        "--",
        "touch",
        ran.to_str().unwrap(),
    ];

    // Verified against the system's roots by default: this CA is not among them.
    let out = run_timeout(
        lockrun(&format!("rediss://localhost:{}", server.port), &touch_ran),
        SOON,
    );
    assert_eq!(code_of(&out), 69, "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("certificate"),
        "{}",
        stderr_of(&out)
    );
    assert!(!ran.exists());

    let out = run_timeout(lockrun(&trusted, &touch_ran), SOON);
    assert_eq!(code_of(&out), 0, "{}", stderr_of(&out));
    assert!(ran.exists());

    // Waiting (BLPOP on the wake list) works over TLS too.
    let holder = hold(&trusted, dir.path(), "tls", &[]);
    let mut waiter = Proc::spawn(
        lockrun(&trusted, &["-w", "20s", "--ttl", TTL, "tls", "--", "true"]),
        "waiter",
    );
    server.wait_for_blocked(1);
    assert_eq!(holder.release(), 0);
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
}

/// How many files in `dir` have names starting with `prefix`.
fn entries_starting_with(dir: &Path, prefix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .count()
}

/// `:wwait`, the waiting exclusive holders of NAME (writer preference).
fn wwait_key(name: &str) -> String {
    format!("lockrun:{{{name}}}:wwait")
}

#[test]
fn shared_holders_overlap_and_a_waiting_exclusive_one_keeps_new_ones_out() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    // Both running at once (each holds until released): the overlap.
    let r1 = hold(&url, dir.path(), "rw", &["-s"]);
    let r2 = hold(&url, dir.path(), "rw", &["-s"]);
    assert!(r1.fence() < r2.fence(), "shared holders are fenced too");
    let no_wait = |args: &[&str]| {
        let mut all = vec!["-n", "rw"];
        all.splice(0..0, args.iter().copied());
        all.extend(["--", "true"]);
        code(run_timeout(lockrun(&url, &all), SOON).status)
    };
    assert_eq!(
        no_wait(&[]),
        75,
        "an exclusive holder got in beside readers"
    );
    assert_eq!(no_wait(&["-s"]), 0, "a third reader");
    let out = run_timeout(lockrun(&url, &["status", "rw"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rw: held shared by 2 holders"), "{text}");
    let out = run_timeout(lockrun(&url, &["status", "--json", "rw"]), SOON);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["slots"][0]["mode"], "shared", "{doc}");

    // An exclusive waiter: from now on no new shared holder is admitted.
    let ran = dir.path().join("exclusive-ran");
    let mut cmd = lockrun(
        &url,
        &["-w", "60s", "rw", "--", "touch", ran.to_str().unwrap()],
    );
    cmd.stderr(Stdio::piped());
    let mut writer = Proc::spawn(cmd, "exclusive waiter");
    wait_until("the exclusive waiter registered", SOON, || {
        server.cli(&["ZCARD", &wwait_key("rw")]) == "1"
    });
    assert_eq!(no_wait(&["-s"]), 75, "a reader overtook a waiting writer");
    // A reader that waits gets in after the writer, not before.
    let late_ran = dir.path().join("late-reader-ran");
    let mut late = Proc::spawn(
        lockrun(
            &url,
            &[
                "-s",
                "-w",
                "60s",
                "rw",
                "--",
                "sh",
                "-c",
                &format!("test -e {} && touch {}", ran.display(), late_ran.display()),
            ],
        ),
        "late reader",
    );
    assert!(!ran.exists());
    assert_eq!(r1.release(), 0);
    assert_eq!(r2.release(), 0);
    assert!(writer.wait_timeout(SOON).success());
    assert!(ran.exists());
    assert!(
        late.wait_timeout(SOON).success(),
        "the late reader ran before the writer"
    );
    assert!(late_ran.exists());
    assert_eq!(
        server.cli(&["EXISTS", &wwait_key("rw")]),
        "0",
        "nothing left behind"
    );
}

#[test]
fn a_continuous_stream_of_readers_does_not_starve_a_writer() {
    use crate::history::{History, Run};
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let mut hist = History::new(dir.path());
    // Three readers at all times, each replaced as soon as it ends, so the
    // lock is never free of readers unless readers are held back.
    let reader = |hist: &mut History| {
        Run::spawn(
            hist,
            lockrun(&url, &["-s", "-w", "60s"]),
            "stream",
            "sleep 0.2",
        )
    };
    let mut readers: Vec<Run> = (0..3).map(|_| reader(&mut hist)).collect();
    wait_until("the stream to start", SOON, || hist.started_count() >= 3);
    let mut writer = Run::spawn(&mut hist, lockrun(&url, &["-w", "30s"]), "stream", "true");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut spawned = 3;
    loop {
        // Readers first: the writer can only have finished after readers
        // ended, and each must have been replaced by then, or a writer as
        // quick as the whole check interval would leave the stream untried.
        for run in &mut readers {
            if run.proc.child.try_wait().unwrap().is_some() {
                run.expect(&mut hist, SOON, 0);
                *run = reader(&mut hist);
                spawned += 1;
            }
        }
        if writer.proc.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the writer never got in");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, stderr) = writer.finish(&mut hist, SOON);
    assert_eq!(code, 0, "the writer: {stderr}");
    for run in &mut readers {
        run.expect(&mut hist, Duration::from_secs(60), 0);
    }
    assert!(spawned > 3, "the stream went on while the writer waited");
    hist.assert_clean();
}

#[test]
fn release_force_breaks_every_shared_holder() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let mut r1 = hold(&url, dir.path(), "brk", &["-s"]);
    let mut r2 = hold(&url, dir.path(), "brk", &["-s"]);
    let out = run_timeout(lockrun(&url, &["release", "--force", "brk"]), SOON);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("released brk"),
        "{}",
        stderr_of(&out)
    );
    // Each notices at its next renewal and stops its command.
    assert_eq!(r1.wait_exit(SOON).0, 76);
    assert_eq!(r2.wait_exit(SOON).0, 76);
    let out = run_timeout(lockrun(&url, &["-n", "brk", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
}

#[test]
fn an_exclusive_waiter_that_gives_up_lets_readers_in_at_once() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let reader = hold(&url, dir.path(), "gu", &["-s"]);
    let reader_no_wait =
        || code(run_timeout(lockrun(&url, &["-s", "-n", "gu", "--", "true"]), SOON).status);
    // Gives up at --wait: its entry in :wwait goes with it.
    let out = run_timeout(lockrun(&url, &["-w", "2s", "gu", "--", "true"]), SOON);
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert_eq!(server.cli(&["ZCARD", &wwait_key("gu")]), "0");
    assert_eq!(reader_no_wait(), 0);
    // Ended by a signal while waiting: the same.
    let mut writer = Proc::spawn(lockrun(&url, &["-q", "gu", "--", "true"]), "writer");
    wait_until("the exclusive waiter registered", SOON, || {
        server.cli(&["ZCARD", &wwait_key("gu")]) == "1"
    });
    assert_eq!(reader_no_wait(), 75);
    writer.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(code(writer.wait_timeout(SOON)), 130);
    assert_eq!(server.cli(&["ZCARD", &wwait_key("gu")]), "0");
    assert_eq!(reader_no_wait(), 0);
    assert_eq!(reader.release(), 0);
}
