//! `lockrun doctor` names the setups that silently break exclusion, one
//! finding per line, and exits 1 for a problem, 0 when all is well.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::redis_server::RedisServer;
use crate::util::{SOON, code, lockrun_cmd, run_timeout, stderr_of};

/// `lockrun --backend URL doctor`: exit code and stdout.
fn doctor(url: &str) -> (i32, String) {
    doctor_with(url, &[])
}

fn doctor_with(url: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = lockrun_cmd();
    cmd.args(["--backend", url, "doctor"])
        .envs(env.iter().copied());
    let out = run_timeout(cmd, SOON);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in stdout.lines() {
        assert!(
            ["ok: ", "note: ", "problem: ", "lockrun doctor: "]
                .iter()
                .any(|tag| line.starts_with(tag)),
            "not a finding line: {line:?}\n{}",
            stderr_of(&out)
        );
    }
    (code(out.status), stdout)
}

/// A scratch directory on a disk (the build directory), not on a tmpfs.
fn on_disk() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

#[test]
fn a_private_lock_directory_on_a_disk_is_healthy() {
    let scratch = on_disk();
    let dir = scratch.path().join("locks");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (status, stdout) = doctor(&file_url(&dir));
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("is on a local file system"), "{stdout}");
    assert!(
        stdout.ends_with("lockrun doctor: no problems found\n"),
        "{stdout}"
    );
}

/// A writable tmpfs outside /run, from /proc/mounts.
fn tmpfs() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, fs) = (fields.next()?, fields.next()?, fields.next()?);
            (fs == "tmpfs" && !point.starts_with("/run")).then(|| PathBuf::from(point))
        })
        .find(|point| tempfile::tempdir_in(point).is_ok())
}

#[test]
fn a_lock_directory_on_tmpfs_is_a_problem() {
    let Some(mount) = tmpfs() else {
        eprintln!("skipped: no writable tmpfs outside /run");
        return;
    };
    let scratch = tempfile::tempdir_in(&mount).unwrap();
    let (status, stdout) = doctor(&file_url(scratch.path()));
    assert_eq!(status, 1, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("problem: ") && l.contains("tmpfs")),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("lockrun doctor: 1 problem found\n"),
        "{stdout}"
    );
}

#[test]
fn a_group_directory_without_setgid_and_its_unwritable_lock_files_are_problems() {
    let scratch = on_disk();
    let dir = scratch.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let lock = dir.join("deploy.lock");
    std::fs::write(&lock, "").unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (status, stdout) = doctor(&file_url(&dir));
    assert_eq!(status, 1, "{stdout}");
    assert!(stdout.contains("not setgid"), "{stdout}");
    assert!(stdout.contains("1 lock file in"), "{stdout}");
    assert!(stdout.contains("(deploy.lock)"), "{stdout}");
    // Fixed as the message says: nothing left to report.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o2770)).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o664)).unwrap();
    let (status, stdout) = doctor(&file_url(&dir));
    assert_eq!(status, 0, "{stdout}");
    assert!(stdout.contains("is setgid"), "{stdout}");
}

#[test]
fn a_redis_replica_is_a_problem_and_its_primary_is_not() {
    let primary = RedisServer::start();
    let port = primary.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port], None);
    let (status, stdout) = doctor(&replica.url());
    assert_eq!(status, 1, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("problem: ")
            && l.contains(&format!("is a replica of 127.0.0.1:{port}"))),
        "{stdout}"
    );
    let (status, stdout) = doctor(&primary.url());
    assert_eq!(status, 0, "{stdout}");
    // The test servers run without persistence: a note, not a problem.
    assert!(
        stdout.contains("note: ") && stdout.contains("no persistence"),
        "{stdout}"
    );
    assert!(stdout.contains("clock is within"), "{stdout}");
}

#[test]
fn doctor_on_an_unreachable_backend_exits_69() {
    let port = crate::util::free_port();
    let mut cmd = lockrun_cmd();
    cmd.args(["--backend", &format!("redis://127.0.0.1:{port}"), "doctor"]);
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 69, "{}", stderr_of(&out));
    // etcd too: no member answering is unreachable (69, one line), not a
    // finding (1), as on every other backend.
    let port = crate::util::free_port();
    let mut cmd = lockrun_cmd();
    cmd.args(["--backend", &format!("etcd://127.0.0.1:{port}"), "doctor"]);
    let out = run_timeout(cmd, SOON);
    let stderr = stderr_of(&out);
    assert_eq!(code(out.status), 69, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn etcd_endpoints_that_do_not_answer_are_named_and_a_healthy_one_is_not() {
    let server = crate::etcd_server::EtcdServer::start();
    let (status, stdout) = doctor(&server.url());
    assert_eq!(status, 0, "{stdout}");
    assert!(
        stdout.contains("1 of 1 etcd endpoint(s) answer and agree on leader"),
        "{stdout}"
    );
    let dead = format!("127.0.0.1:{}", crate::util::free_port());
    let (status, stdout) = doctor(&format!("{},{dead}", server.url()));
    assert_eq!(status, 1, "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("problem: ")
            && l.contains(&format!("etcd endpoint {dead} does not answer"))),
        "{stdout}"
    );
}

#[test]
fn postgres_without_a_pooler_and_with_a_true_clock_is_healthy() {
    let server = crate::postgres::PgServer::start();
    let (status, stdout) = doctor_with(
        &server.url(),
        &[("LOCKRUN_PG_PASSWORD", crate::postgres::PASSWORD)],
    );
    assert_eq!(status, 0, "{stdout}");
    assert!(
        stdout.contains("no transaction pooler in the way"),
        "{stdout}"
    );
    assert!(stdout.contains("clock is within"), "{stdout}");
}
