//! `lockrun acquire` / `lockrun release` (issue 14, item 4): a detached
//! keeper holds the lock across processes until the watched process exits,
//! `release` ends it, and a killed keeper frees the lock.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis_server::RedisServer;
use crate::util::*;

/// A keeper found through `acquire --json`; SIGKILLed when dropped, so a
/// failing test leaves no keeper behind (it is not our child: init reaps it).
struct Keeper {
    pid: i32,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// A process to keep the lock for: `sleep`, killed and reaped on drop.
fn job() -> Proc {
    let mut cmd = Command::new("sleep");
    cmd.arg("300");
    Proc::spawn(cmd, "job")
}

/// `acquire --json --for-pid PID NAME` with `backend` args; the keeper.
fn acquire(mut base: Command, name: &str, for_pid: i32) -> Keeper {
    base.args(["acquire", "--json", "--for-pid", &for_pid.to_string(), name]);
    let out = run_timeout(base, SOON);
    assert_eq!(code(out.status), 0, "acquire: {}", stderr_of(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(doc["schema"], "lockrun.acquire/1");
    assert_eq!(doc["name"], name);
    assert_eq!(doc["for_pid"], for_pid);
    Keeper {
        pid: i32::try_from(doc["keeper_pid"].as_i64().unwrap()).unwrap(),
    }
}

fn exit_of(cmd: Command) -> (i32, String) {
    let out = run_timeout(cmd, SOON);
    (code(out.status), stderr_of(&out))
}

#[test]
fn acquire_holds_across_processes_until_release() {
    let sandbox = Sandbox::new();
    let job = job();
    let keeper = acquire(sandbox.lockrun(&[]), "k", job.pid());
    assert!(alive(keeper.pid));
    assert!(!sandbox.lock_is_free("k"));
    let (busy, stderr) = exit_of(sandbox.lockrun(&["-n", "k", "--", "true"]));
    assert_eq!(busy, 75, "{stderr}");
    assert!(stderr.contains("keeper for pid"), "{stderr}");
    let (released, stderr) =
        exit_of(sandbox.lockrun(&["release", "--for-pid", &job.pid().to_string(), "k"]));
    assert_eq!(released, 0, "{stderr}");
    assert!(!alive(keeper.pid), "release waits for the keeper to end");
    assert!(sandbox.lock_is_free("k"));
    let (again, stderr) =
        exit_of(sandbox.lockrun(&["release", "--for-pid", &job.pid().to_string(), "k"]));
    assert_eq!(again, 1, "nothing left to release: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The keeper state directories of lock `name` (any backend) under both
/// places the default lock directory can be.
fn keeper_dirs_of(name: &str) -> Vec<std::path::PathBuf> {
    let uid = nix::unistd::getuid();
    ["/run/lock", "/tmp"]
        .iter()
        .filter_map(|base| std::fs::read_dir(format!("{base}/lockrun-{uid}/keepers")).ok())
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let file = path.file_name()?.to_str()?;
            file.starts_with(&format!("{name}.")).then_some(path)
        })
        .collect()
}

#[test]
fn the_keeper_directory_goes_with_the_last_keeper() {
    // Every run stats `keepers/NAME.BACKEND`: it must not outlive the keeper,
    // or runs of NAME would read it for ever after.
    let sandbox = Sandbox::new();
    let name = format!("kdir{}", std::process::id());
    let job = job();
    let keeper = acquire(sandbox.lockrun(&[]), &name, job.pid());
    let dirs = keeper_dirs_of(&name);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let files: Vec<_> = std::fs::read_dir(&dirs[0]).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "one state file: {files:?}");
    assert!(files[0].file_name().to_string_lossy().ends_with(".keeper"));
    let (released, stderr) =
        exit_of(sandbox.lockrun(&["release", "--for-pid", &job.pid().to_string(), &name]));
    assert_eq!(released, 0, "{stderr}");
    assert!(!alive(keeper.pid));
    assert_eq!(keeper_dirs_of(&name), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_keeper_frees_the_lock_when_the_job_exits() {
    let sandbox = Sandbox::new();
    let mut job = job();
    let keeper = acquire(sandbox.lockrun(&[]), "k", job.pid());
    assert!(!sandbox.lock_is_free("k"));
    job.signal(nix::sys::signal::Signal::SIGKILL);
    job.wait_timeout(SOON);
    wait_until("the keeper to free k", SOON, || sandbox.lock_is_free("k"));
    wait_until("the keeper to exit", SOON, || !alive(keeper.pid));
}

#[test]
fn by_default_the_lock_is_kept_for_the_calling_shell() {
    let sandbox = Sandbox::new();
    let url = sandbox.backend_url();
    let b = sh_quote(BIN);
    let (ready, go) = (sandbox.path("ready"), sandbox.path("go"));
    // One shell, as a CI job's script: acquire; a later step of the job
    // runs under the job's lock at once (re-entry, though -n) while a
    // process outside the job (the test) finds it busy; release frees it;
    // a second acquire is then left to the shell's exit.
    let script = format!(
        "{b} -b {url} acquire k || exit 9; \
         {b} -b {url} -n k -- echo step; \
         touch {r}; while [ ! -e {g} ]; do sleep 0.01; done; \
         {b} -b {url} release k; echo released=$?; \
         {b} -b {url} -n k -- echo free; \
         {b} -b {url} acquire k; echo again=$?",
        r = ready.display(),
        g = go.display()
    );
    let mut sh = Command::new("sh");
    sh.args(["-c", &script]).stdout(Stdio::piped());
    let mut shell = Proc::spawn(sh, "job shell");
    wait_for_file(&ready);
    let (busy, stderr) = exit_of(sandbox.lockrun(&["-n", "k", "--", "true"]));
    assert_eq!(busy, 75, "outside the job: {stderr}");
    touch(&go);
    assert_eq!(code(shell.wait_timeout(SOON)), 0);
    let mut stdout = String::new();
    shell
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "step\nreleased=0\nfree\nagain=0\n");
    // The shell has exited: its keeper lets go.
    wait_until("the keeper to free k after the shell", SOON, || {
        sandbox.lock_is_free("k")
    });
}

#[test]
fn the_keeper_keeps_no_descriptor_of_the_caller_open() {
    let sandbox = Sandbox::new();
    let job = job();
    // Through a shell that also leaves copies of both pipes on fds 7 and 8
    // (not close-on-exec), as a CI runner's step may.
    let script = format!(
        "exec 7>&1 8>&2; exec {} -b {} acquire --for-pid {} k",
        sh_quote(BIN),
        sandbox.backend_url(),
        job.pid()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut proc = Proc::spawn(cmd, "acquire");
    let mut stdout = proc.child.stdout.take().unwrap();
    let mut stderr = proc.child.stderr.take().unwrap();
    let (send, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        let _ = stderr.read_to_end(&mut all);
        let _ = send.send(all);
    });
    assert_eq!(code(proc.wait_timeout(SOON)), 0);
    let output = done
        .recv_timeout(SOON)
        .expect("stdout and stderr close once acquire has returned");
    assert!(output.is_empty(), "{}", String::from_utf8_lossy(&output));
    assert!(!sandbox.lock_is_free("k"), "the keeper still holds k");
    let (released, stderr) =
        exit_of(sandbox.lockrun(&["release", "--for-pid", &job.pid().to_string(), "k"]));
    assert_eq!(released, 0, "{stderr}");
}

#[test]
fn kill_9_of_the_keeper_frees_a_file_lock_at_once() {
    let sandbox = Sandbox::new();
    let job = job();
    let keeper = acquire(sandbox.lockrun(&[]), "k", job.pid());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("k to be free after kill -9", SOON, || {
        sandbox.lock_is_free("k")
    });
    let (code, stderr) =
        exit_of(sandbox.lockrun(&["release", "--for-pid", &job.pid().to_string(), "k"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("gone"), "{stderr}");
}

#[test]
fn release_never_frees_a_lock_it_does_not_keep() {
    let sandbox = Sandbox::new();
    let holder = Holder::spawn(sandbox.lockrun(&[]), &sandbox.path("k.ready"), "k");
    let (code, stderr) = exit_of(sandbox.lockrun(&["release", "k"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing was released"), "{stderr}");
    // Another job's keeper is not this job's either.
    let other = job();
    let keeper = acquire(sandbox.lockrun(&[]), "m", other.pid());
    let (code, stderr) = exit_of(sandbox.lockrun(&["release", "m"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("--for-pid"),
        "names the other keeper: {stderr}"
    );
    assert!(alive(keeper.pid));
    let (busy, _) = exit_of(sandbox.lockrun(&["-n", "k", "--", "true"]));
    assert_eq!(busy, 75, "the run-mode holder still has k");
    assert!(!sandbox.lock_is_free("m"));
    assert_eq!(holder.release(), 0);
}

#[test]
fn acquire_honours_no_wait_and_the_conflict_code() {
    let sandbox = Sandbox::new();
    let holder = Holder::spawn(sandbox.lockrun(&[]), &sandbox.path("k.ready"), "k");
    let job = job();
    let pid = job.pid().to_string();
    let (busy, stderr) = exit_of(sandbox.lockrun(&["acquire", "-n", "--for-pid", &pid, "k"]));
    assert_eq!(busy, 75, "{stderr}");
    assert!(stderr.contains("k is held by"), "{stderr}");
    let (custom, _) =
        exit_of(sandbox.lockrun(&["acquire", "-n", "-E", "3", "--for-pid", &pid, "k"]));
    assert_eq!(custom, 3);
    let started = Instant::now();
    let (waited, _) = exit_of(sandbox.lockrun(&["acquire", "-w", "300ms", "--for-pid", &pid, "k"]));
    assert_eq!(waited, 75);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(holder.release(), 0);
}

#[test]
fn a_redis_keeper_renews_and_a_killed_one_expires_after_the_ttl() {
    let server = RedisServer::start();
    let redis = |args: &[&str]| {
        let mut cmd = lockrun_cmd();
        cmd.env("LOCKRUN_TTL", "3s")
            .args(["--backend", &server.url()])
            .args(args);
        cmd
    };
    let job = job();
    let pid = job.pid().to_string();
    let keeper = acquire(redis(&[]), "k", job.pid());
    // Held past several ttls: the keeper renews.
    let held_until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < held_until {
        let (busy, stderr) = exit_of(redis(&["-q", "-n", "k", "--", "true"]));
        assert_eq!(busy, 75, "{stderr}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let (released, stderr) = exit_of(redis(&["release", "--for-pid", &pid, "k"]));
    assert_eq!(released, 0, "{stderr}");
    let (free, stderr) = exit_of(redis(&["-n", "k", "--", "true"]));
    assert_eq!(free, 0, "released at once: {stderr}");
    drop(keeper);
    // kill -9: the lease runs out by itself within the ttl.
    let keeper = acquire(redis(&[]), "k", job.pid());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let (after, stderr) = exit_of(redis(&["-w", "15s", "k", "--", "true"]));
    assert_eq!(after, 0, "{stderr}");
    assert!(killed.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_lost_keeper_lock_is_reported_by_release() {
    let server = RedisServer::start();
    let redis = |args: &[&str]| {
        let mut cmd = lockrun_cmd();
        cmd.env("LOCKRUN_TTL", "3s")
            .args(["--backend", &server.url()])
            .args(args);
        cmd
    };
    let job = job();
    let keeper = acquire(redis(&[]), "k", job.pid());
    server.cli(&["DEL", "lockrun:{k}:lock"]);
    wait_until("the keeper to notice the loss", SOON, || !alive(keeper.pid));
    let (status, stderr) = exit_of(redis(&["status", "k"]));
    assert_eq!(status, 0, "{stderr}");
    assert!(stderr.contains("lost the lock"), "status says so: {stderr}");
    let (code, stderr) = exit_of(redis(&[
        "release",
        "--for-pid",
        &job.pid().to_string(),
        "k",
    ]));
    assert_eq!(code, 76, "{stderr}");
    assert!(stderr.contains("lost"), "{stderr}");
}

/// acquire, busy for others, release frees it: on any backend `base` names.
fn assert_acquire_busy_release(base: impl Fn(&[&str]) -> Command) {
    let job = job();
    let pid = job.pid().to_string();
    let keeper = acquire(base(&[]), "k", job.pid());
    let (busy, stderr) = exit_of(base(&["-n", "k", "--", "true"]));
    assert_eq!(busy, 75, "{stderr}");
    let (released, stderr) = exit_of(base(&["release", "--for-pid", &pid, "k"]));
    assert_eq!(released, 0, "{stderr}");
    assert!(!alive(keeper.pid));
    let (free, stderr) = exit_of(base(&["-n", "k", "--", "true"]));
    assert_eq!(free, 0, "{stderr}");
}

#[test]
fn acquire_and_release_on_etcd() {
    let server = crate::etcd_server::EtcdServer::start();
    assert_acquire_busy_release(|args| {
        let mut cmd = lockrun_cmd();
        cmd.env("LOCKRUN_TTL", "3s")
            .args(["--backend", &server.url()])
            .args(args);
        cmd
    });
}

#[test]
fn acquire_and_release_on_postgres() {
    let server = crate::postgres::PgServer::start();
    assert_acquire_busy_release(|args| {
        let mut cmd = lockrun_cmd();
        cmd.env("LOCKRUN_PG_PASSWORD", crate::postgres::PASSWORD)
            .env_remove("PGPASSWORD")
            .env("LOCKRUN_TTL", "3s")
            .args(["--backend", &server.url()])
            .args(args);
        cmd
    });
}

/// The keepers (processes of this binary running `acquire`) for `url`.
fn keepers_of(url: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains(url) && cmdline.contains("acquire") && alive(*pid)
        })
        .collect()
}

#[test]
fn a_waiting_acquire_that_is_stopped_leaves_no_keeper() {
    let sandbox = Sandbox::new();
    let url = sandbox.backend_url();
    let holder = Holder::spawn(sandbox.lockrun(&[]), &sandbox.path("k.ready"), "k");
    let job = job();
    let pid = job.pid().to_string();
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        let mut cmd = sandbox.lockrun(&["acquire", "--for-pid", &pid, "k"]);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut front = Proc::spawn(cmd, "acquire");
        // Both processes are there: the front and its waiting keeper.
        wait_until("a keeper waiting for k", SOON, || {
            keepers_of(&url).len() == 2
        });
        front.signal(signal);
        let status = front.wait_timeout(SOON);
        if signal == nix::sys::signal::Signal::SIGTERM {
            assert_eq!(code(status), 143);
        }
        wait_until("the keeper to give up its wait", SOON, || {
            keepers_of(&url).is_empty()
        });
    }
    assert_eq!(holder.release(), 0);
    assert!(
        sandbox.lock_is_free("k"),
        "no keeper took k after its job gave up"
    );
}
