//! Nested lockrun (issue 14, item 3): the same lock inside its own holder
//! re-enters; an environment that claims a lock the backend does not
//! confirm fails at once (78); another name nested still locks normally.

use std::process::Command;

use crate::redis_server::RedisServer;
use crate::util::*;

/// `sh -c SCRIPT` as the command of `lockrun ARGS NAME`, its output.
fn nested(mut outer: Command, name: &str, script: &str) -> std::process::Output {
    outer.args([name, "--", "sh", "-c", script]);
    run_timeout(outer, SOON)
}

fn bin() -> String {
    sh_quote(BIN)
}

#[test]
fn the_same_lock_nested_reenters_and_stays_held_on_the_file_backend() {
    let sandbox = Sandbox::new();
    // The inner lockrun has -n: had it tried to take the lock, it would be
    // busy (75). Afterwards a lockrun without the claim finds it still held.
    let script = format!(
        "{b} -n x -- sh -c 'echo inner $LOCKRUN_NAME'; echo inner=$?; \
         {b} x -- {b} -n x -- echo twice; \
         env -u LOCKRUN_HELD -u LOCKRUN_NAME {b} -q -n x -- true; echo unclaimed=$?",
        b = bin()
    );
    let out = nested(sandbox.lockrun(&[]), "x", &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert_eq!(
        stdout,
        "inner x\ninner=0\ntwice\nunclaimed=75\n",
        "{}",
        stderr_of(&out)
    );
    assert!(sandbox.lock_is_free("x"));
}

#[test]
fn an_exec_mode_holder_is_reentered_too() {
    let sandbox = Sandbox::new();
    let script = format!("{} -n x -- echo inner", bin());
    let out = nested(sandbox.lockrun(&["--exec"]), "x", &script);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inner\n");
}

#[test]
fn another_name_nested_still_locks_normally() {
    let sandbox = Sandbox::new();
    let holder = Holder::spawn(sandbox.lockrun(&[]), &sandbox.path("y.ready"), "y");
    let script = format!(
        "{b} -q -n y -- echo wrong; echo y=$?; {b} -n z -- sh -c 'echo z $LOCKRUN_NAME'",
        b = bin()
    );
    let out = nested(sandbox.lockrun(&[]), "x", &script);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "y=75\nz z\n",
        "{}",
        stderr_of(&out)
    );
    assert_eq!(holder.release(), 0);
}

#[test]
fn a_forged_or_stale_claim_fails_at_once_with_78() {
    let sandbox = Sandbox::new();
    // A real holder's claim, copied out to a process that is not its
    // descendant: the token is right, the ancestry is not.
    let ready = sandbox.path("held");
    let mut holder_cmd = sandbox.lockrun(&[]);
    holder_cmd
        .args([
            "x",
            "--",
            "sh",
            "-c",
            &format!(
                "echo \"$LOCKRUN_HELD\" > {}.tmp; mv {0}.tmp {0}; read line; exit 0",
                ready.display()
            ),
        ])
        .stdin(std::process::Stdio::piped());
    let mut holder = Proc::spawn(holder_cmd, "holder of x");
    let held = wait_for_content(&ready);
    assert!(held.starts_with("x:"), "{held}");
    let claimed = |held: &str| {
        let mut cmd = sandbox.lockrun(&["x", "--", "echo", "ran"]);
        cmd.env("LOCKRUN_HELD", held)
            .env("LOCKRUN_NAME", "x")
            .env("LOCKRUN_BACKEND", sandbox.backend_url());
        run_timeout(cmd, SOON)
    };
    let copied = claimed(&held);
    let forged = claimed(&format!(
        "x:00000000000000000000000000000000:{}",
        held.rsplit(':').next().unwrap()
    ));
    drop(holder.child.stdin.take());
    assert_eq!(code(holder.wait_timeout(SOON)), 0);
    // Stale: the lock is free now, but the environment still claims it.
    let stale = claimed(&held);
    for (what, out) in [("copied", copied), ("forged", forged), ("stale", stale)] {
        let stderr = stderr_of(&out);
        assert_eq!(code(out.status), 78, "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: the command never runs");
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
        assert!(stderr.contains("LOCKRUN_HELD"), "{what}: {stderr}");
    }
}

/// The outer lockrun's command runs the same lock nested (re-entered at
/// once, though -n), then without the claim (busy: still held). `env`:
/// what the nested lockruns need besides what they inherit (secrets are
/// removed from a command's environment, so a script passes its own).
fn assert_reenters(outer: Command, env: &str) {
    let script = format!(
        "{env} {b} -n x -- sh -c 'echo inner $LOCKRUN_NAME'; echo inner=$?; \
         env -u LOCKRUN_HELD -u LOCKRUN_NAME {env} {b} -q -n x -- true; echo unclaimed=$?",
        b = bin()
    );
    let out = nested(outer, "x", &script);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inner x\ninner=0\nunclaimed=75\n",
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn the_same_lock_nested_reenters_on_redis() {
    let server = RedisServer::start();
    let mut outer = lockrun_cmd();
    // In the environment, so that the nested lockruns get it too.
    outer
        .env("LOCKRUN_TTL", "3s")
        .args(["--backend", &server.url()]);
    assert_reenters(outer, "");
}

#[test]
fn the_same_lock_nested_reenters_on_etcd() {
    let server = crate::etcd_server::EtcdServer::start();
    let mut outer = lockrun_cmd();
    outer
        .env("LOCKRUN_TTL", "3s")
        .args(["--backend", &server.url()]);
    assert_reenters(outer, "");
}

#[test]
fn the_same_lock_nested_reenters_on_postgres() {
    let server = crate::postgres::PgServer::start();
    let mut outer = lockrun_cmd();
    outer
        .env("LOCKRUN_PG_PASSWORD", crate::postgres::PASSWORD)
        .env_remove("PGPASSWORD")
        .env("LOCKRUN_TTL", "3s")
        .args(["--backend", &server.url()]);
    let password = format!("LOCKRUN_PG_PASSWORD={}", crate::postgres::PASSWORD);
    assert_reenters(outer, &password);
}

/// Outer `--shared`, inner exclusive: other readers may hold the lock next
/// to the outer one, so re-entering would run an exclusive command beside
/// them. The inner lockrun must neither run its command nor wait for
/// itself: 78 at once, one line. Inner `--shared` under an outer exclusive
/// holder still re-enters (exclusive covers shared).
fn assert_exclusive_inside_shared_refused(mut outer: Command, env: &str) {
    let script = format!("{env} {b} -n x -- echo WRONG; echo inner=$?", b = bin());
    outer.arg("--shared");
    let out = nested(outer, "x", &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = stderr_of(&out);
    assert_eq!(stdout, "inner=78\n", "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("shared"), "{stderr}");
}

#[test]
fn an_exclusive_lock_nested_in_a_shared_holder_never_reenters() {
    let sandbox = Sandbox::new();
    assert_exclusive_inside_shared_refused(sandbox.lockrun(&[]), "");
    let server = RedisServer::start();
    let mut outer = lockrun_cmd();
    outer
        .env("LOCKRUN_TTL", "3s")
        .args(["--backend", &server.url()]);
    assert_exclusive_inside_shared_refused(outer, "");
    let pg = crate::postgres::PgServer::start();
    let mut outer = lockrun_cmd();
    outer
        .env("LOCKRUN_PG_PASSWORD", crate::postgres::PASSWORD)
        .env_remove("PGPASSWORD")
        .env("LOCKRUN_TTL", "3s")
        .args(["--backend", &pg.url()]);
    let password = format!("LOCKRUN_PG_PASSWORD={}", crate::postgres::PASSWORD);
    assert_exclusive_inside_shared_refused(outer, &password);
}
