//! The PostgreSQL backend against a real server: each test makes a private
//! cluster with `initdb` in a temp dir (as the `postgres` user when the tests
//! run as root, since postgres refuses root), starts it on a free loopback
//! port, and stops and reaps it on drop.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::history::History;
use crate::util::*;

pub const PASSWORD: &str = "lockrun-test-pw";
/// Short, so that loss and pause tests are quick: checks every second.
const TTL: &str = "3s";

/// The server binaries: `pg_config --bindir`, else the newest Debian one.
fn bindir() -> PathBuf {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_initdb(&dir) {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|d| has_initdb(d))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb): run scripts/test, or `apt-get install postgresql`"
        )
    })
}

/// A PostgreSQL cluster of a test's own; stopped and reaped on drop.
pub struct PgServer {
    proc: Option<Proc>,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The unprivileged user to run as, when we are root.
    run_as: Option<(u32, u32)>,
    /// `ssl=on` with the certificates of [`make_test_certificates`] here.
    pub tls: Option<PathBuf>,
}

impl PgServer {
    pub fn start() -> PgServer {
        PgServer::start_with(false).expect("a plain server")
    }

    /// A server with `ssl=on` and a certificate for 127.0.0.1 from a CA of
    /// the test's own (`tls/ca.pem`); `None` (skipped) without openssl.
    pub fn start_tls() -> Option<PgServer> {
        PgServer::start_with(true)
    }

    fn start_with(tls: bool) -> Option<PgServer> {
        require("psql", "postgresql-client");
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let run_as = nix::unistd::geteuid().is_root().then(|| {
            let user = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("a postgres system user (the postgresql package makes one)");
            (user.uid.as_raw(), user.gid.as_raw())
        });
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let tls = if tls {
            let certs = dir.path().join("tls");
            std::fs::create_dir(&certs).unwrap();
            if !make_test_certificates(&certs) {
                return None;
            }
            // postgres wants its key 0600 and its own.
            std::fs::set_permissions(
                certs.join("server.key"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
            if let Some((uid, gid)) = run_as {
                for file in ["server.key", "server.pem"] {
                    std::os::unix::fs::chown(certs.join(file), Some(uid), Some(gid)).unwrap();
                }
            }
            Some(certs)
        } else {
            None
        };
        let mut server = PgServer {
            proc: None,
            port: free_port(),
            dir,
            bin,
            run_as,
            tls,
        };
        let data = server.data();
        let mut initdb = server.as_server_user(&server.bin.join("initdb"));
        initdb
            .args([
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
            ])
            .arg("--no-sync")
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = run_timeout(initdb, Duration::from_secs(120));
        assert!(out.status.success(), "initdb failed: {}", stderr_of(&out));
        // The free port may be taken by another test's server between
        // free_port() and the bind: then a fresh one.
        for _ in 0..5 {
            match server.try_launch() {
                Ok(()) => return Some(server),
                Err(log)
                    if log.contains("could not bind")
                        || log.contains("could not create any TCP/IP sockets") =>
                {
                    server.port = free_port();
                }
                Err(log) => panic!("postgres exited: {log}"),
            }
        }
        panic!("postgres found no free port in 5 tries");
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_server_user(&self, program: &Path) -> Command {
        match self.run_as {
            Some((uid, gid)) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn launch(&mut self) {
        if let Err(log) = self.try_launch() {
            panic!("postgres exited: {log}");
        }
    }

    /// Start the server and wait until it accepts connections; its log if
    /// it exited instead.
    fn try_launch(&mut self) -> Result<(), String> {
        let mut cmd = self.as_server_user(&self.bin.join("postgres"));
        cmd.args(["-D", &self.data(), "-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "max_connections=100"]);
        if let Some(certs) = &self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    certs.join("server.pem").display()
                ))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    certs.join("server.key").display()
                ));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("log"))
                .unwrap(),
        );
        // setpriv execs: the pid is the postmaster's.
        self.proc = Some(Proc::spawn(cmd, "postgres"));
        let port = self.port.to_string();
        // Asked over this server's own socket directory: on 127.0.0.1:PORT
        // another test's server, which took the port first, would answer.
        let socket_dir = self.dir.path().display().to_string();
        let mut exited = None;
        wait_until(
            "postgres to accept connections",
            Duration::from_secs(60),
            || {
                if let Some(proc) = &mut self.proc
                    && let Ok(Some(status)) = proc.child.try_wait()
                {
                    let log =
                        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
                    exited = Some(format!("({status}) {log}"));
                    return true;
                }
                Command::new("pg_isready")
                    .args(["-q", "-h", &socket_dir, "-p", &port, "-t", "1"])
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
        match exited {
            Some(log) => {
                self.proc = None;
                Err(log)
            }
            None => Ok(()),
        }
    }

    /// Fast shutdown (SIGINT: sessions are ended), reaped.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal(Signal::SIGINT);
            proc.wait_timeout(SOON);
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn psql_command(&self) -> Command {
        let mut cmd = Command::new("psql");
        cmd.args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", "postgres"])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// Run SQL in a fresh psql session; its output, trimmed.
    pub fn psql(&self, sql: &str) -> String {
        let mut cmd = self.psql_command();
        cmd.args(["-c", sql]);
        let out = run_timeout(cmd, SOON);
        assert!(out.status.success(), "psql {sql:?}: {}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A psql session that runs `sql` and stays connected until dropped:
    /// returns once `sql` has run.
    pub fn psql_session(&self, sql: &str) -> PsqlSession {
        let mut cmd = self.psql_command();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut proc = Proc::spawn(cmd, "psql session");
        let mut stdin = proc.child.stdin.take().unwrap();
        writeln!(stdin, "{sql};\n\\echo ready").unwrap();
        stdin.flush().unwrap();
        let mut stdout = BufReader::new(proc.child.stdout.take().unwrap());
        wait_for_line(&mut stdout, "ready");
        PsqlSession {
            proc,
            stdin: Some(stdin),
            stdout,
        }
    }

    /// Backend pids of the lockrun sessions for NAME.
    pub fn lockrun_pids(&self, name: &str) -> Vec<i32> {
        self.psql(&format!(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'lockrun {name} %'"
        ))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(proc) = &self.proc {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(proc.pid()), Signal::SIGQUIT);
        }
        // Proc's drop kills and reaps what is left.
        self.proc = None;
    }
}

pub struct PsqlSession {
    proc: Proc,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl PsqlSession {
    /// Run more SQL in this session; returns once it has run (a failing
    /// statement ends psql, and so the wait, with ON_ERROR_STOP).
    pub fn run(&mut self, sql: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{sql};\n\\echo done").unwrap();
        stdin.flush().unwrap();
        wait_for_line(&mut self.stdout, "done");
    }

    pub fn close(mut self) {
        drop(self.stdin.take());
        self.proc.wait_timeout(SOON);
    }
}

/// `lockrun --backend URL` with the password in the environment.
fn lockrun(server: &PgServer, args: &[&str]) -> Command {
    lockrun_at(&server.url(), args)
}

/// [`lockrun`] at any URL (a pooler, other TLS settings).
fn lockrun_at(url: &str, args: &[&str]) -> Command {
    let mut cmd = lockrun_cmd();
    cmd.env("LOCKRUN_PG_PASSWORD", PASSWORD)
        .env_remove("PGPASSWORD")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .args(["--backend", url, "--ttl", TTL])
        .args(args);
    cmd
}

/// A PgBouncer of a test's own in front of `server`, on a free loopback
/// port, as the server's user when we are root (it refuses root too).
pub struct PgBouncer {
    proc: Option<Proc>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    pub fn start(server: &PgServer, pool_mode: &str) -> PgBouncer {
        require("pgbouncer", "pgbouncer");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("users.txt"),
            format!("\"postgres\" \"{PASSWORD}\"\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\npostgres = host=127.0.0.1 port={} dbname=postgres\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {d}/users.txt\npool_mode = {pool_mode}\n\
                 default_pool_size = 4\nmax_client_conn = 50\nlogfile = {d}/log\n",
                server.port
            ),
        )
        .unwrap();
        if let Some((uid, gid)) = server.run_as {
            for path in [
                dir.path().to_owned(),
                dir.path().join("users.txt"),
                dir.path().join("pgbouncer.ini"),
            ] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        let program = Command::new("sh")
            .args(["-c", "command -v pgbouncer"])
            .output()
            .unwrap();
        let program = PathBuf::from(String::from_utf8_lossy(&program.stdout).trim());
        let mut cmd = server.as_server_user(&program);
        cmd.arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut bouncer = PgBouncer {
            proc: Some(Proc::spawn(cmd, "pgbouncer")),
            port,
            dir,
        };
        let port = port.to_string();
        wait_until("pgbouncer to accept connections", SOON, || {
            if let Some(proc) = &mut bouncer.proc
                && let Ok(Some(status)) = proc.child.try_wait()
            {
                let log =
                    std::fs::read_to_string(bouncer.dir.path().join("log")).unwrap_or_default();
                panic!("pgbouncer exited ({status}): {log}");
            }
            Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-t", "1"])
                .status()
                .is_ok_and(|s| s.success())
        });
        bouncer
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            // SIGINT: pgbouncer's "safe shutdown"; Proc's drop reaps.
            proc.signal(Signal::SIGTERM);
            proc.wait_timeout(SOON);
        }
    }
}

fn key_sql(name: &str) -> String {
    format!("('x' || substr(md5('lockrun:{name}'), 1, 16))::bit(64)::bigint")
}

#[test]
fn contention_torture_keeps_an_exact_count_and_increasing_fences() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let (count, fences) = contention_torture(
        dir.path(),
        4,
        10,
        &["--backend", &url, "-w", "60s"],
        &[("LOCKRUN_PG_PASSWORD", PASSWORD)],
        Duration::from_secs(180),
    );
    assert_eq!(count, 40);
    assert_eq!(fences.len(), 40, "every section has a fence");
    assert!(fences.windows(2).all(|w| w[0] < w[1]), "{fences:?}");
}

#[test]
fn a_numeric_name_is_the_advisory_key_both_ways() {
    let server = PgServer::start();
    // psql holds it: lockrun cannot have it, and says who has it.
    let psql = server.psql_session("SELECT pg_advisory_lock(424242)");
    let out = run_timeout(lockrun(&server, &["-n", "424242", "--", "true"]), SOON);
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("psql"), "{}", stderr_of(&out));
    // status shows the psql holder.
    let out = run_timeout(lockrun(&server, &["status", "424242"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &stderr_of(&out);
    assert!(text.contains("held by") && text.contains("psql"), "{text}");
    psql.close();
    let out = run_timeout(lockrun(&server, &["-n", "424242", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));

    // lockrun holds it: psql cannot have it until lockrun is done.
    let ready = tempfile::tempdir().unwrap();
    let holder = Holder::spawn(lockrun(&server, &[]), &ready.path().join("r"), "424242");
    assert_eq!(server.psql("SELECT pg_try_advisory_lock(424242)"), "f");
    assert_eq!(holder.release(), 0);
    assert_eq!(server.psql("SELECT pg_try_advisory_lock(424242)"), "t");
}

#[test]
fn other_names_use_the_documented_key_derivation() {
    let server = PgServer::start();
    let psql = server.psql_session(&format!("SELECT pg_advisory_lock({})", key_sql("deploy")));
    let out = run_timeout(lockrun(&server, &["-n", "deploy", "--", "true"]), SOON);
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    psql.close();
    // Slot K of NAME is the key of NAME@K.
    let psql = server.psql_session(&format!(
        "SELECT pg_advisory_lock({}), pg_advisory_lock({})",
        key_sql("pool@1"),
        key_sql("pool@2")
    ));
    let out = run_timeout(
        lockrun(
            &server,
            &[
                "-n",
                "--slots",
                "3",
                "pool",
                "--",
                "sh",
                "-c",
                "echo $LOCKRUN_SLOT",
            ],
        ),
        SOON,
    );
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    psql.close();
}

#[test]
fn a_queued_waiter_does_not_hold_up_create_index_concurrently() {
    let server = PgServer::start();
    // The deadlock detector would free the index build after 1 s by
    // aborting the waiter; with it out of the way, only lockrun's
    // lock_timeout does.
    server.psql("ALTER SYSTEM SET deadlock_timeout = '60s'");
    server.psql("SELECT pg_reload_conf()");
    // A migration tool's way: hold the lock, build an index concurrently.
    let mut psql = server.psql_session("CREATE TABLE cic (x int); SELECT pg_advisory_lock(424243)");
    let mut waiter = Proc::spawn(
        lockrun(&server, &["-w", "60s", "424243", "--", "true"]),
        "queued waiter",
    );
    wait_until("the waiter queued in the server", SOON, || {
        server.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424243 AND NOT granted",
        ) == "1"
    });
    let started = std::time::Instant::now();
    // The build waits for every older transaction, the queued waiter's
    // too, which leaves the queue within its lock_timeout; without one,
    // this would run into the statement timeout and end psql.
    psql.run("SET statement_timeout = '20s'; CREATE INDEX CONCURRENTLY cic_x ON cic (x)");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the index build took {took:?}"
    );
    assert_eq!(
        server.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'cic_x'::regclass"),
        "t"
    );
    psql.run("SELECT pg_advisory_unlock(424243)");
    assert_eq!(code(waiter.wait_timeout(SOON)), 0, "the waiter got it");
    psql.close();
}

#[test]
fn a_queued_waiter_gives_up_at_its_deadline_or_a_signal_and_leaves_nothing_queued() {
    let server = PgServer::start();
    let psql = server.psql_session("SELECT pg_advisory_lock(424244)");
    let queued = || {
        server.psql(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424244 AND NOT granted",
        )
    };
    // --wait: the server's lock_timeout ends the wait; busy, 75.
    let started = std::time::Instant::now();
    let out = run_timeout(
        lockrun(&server, &["-w", "700ms", "424244", "--", "true"]),
        SOON,
    );
    let took = started.elapsed();
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(queued(), "0", "nothing left in the lock queue");
    // A signal while queued: lockrun exits at once, and the statement it
    // left in the server leaves the queue within its lock_timeout.
    let mut waiter = Proc::spawn(
        lockrun(&server, &["-w", "60s", "424244", "--", "true"]),
        "queued waiter",
    );
    wait_until("the waiter queued in the server", SOON, || queued() == "1");
    waiter.signal(Signal::SIGTERM);
    assert_eq!(code(waiter.wait_timeout(SOON)), 128 + 15);
    wait_until("the abandoned wait left the queue", SOON, || {
        queued() == "0"
    });
    psql.close();
    let out = run_timeout(lockrun(&server, &["-n", "424244", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "free again: {}", stderr_of(&out));
}

#[test]
fn a_terminated_session_stops_the_command_with_76() {
    let server = PgServer::start();
    let ready = tempfile::tempdir().unwrap();
    let mut holder = Holder::spawn(lockrun(&server, &[]), &ready.path().join("r"), "term");
    let pids = server.lockrun_pids("term");
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_eq!(
        server.psql(&format!("SELECT pg_terminate_backend({})", pids[0])),
        "t"
    );
    let (code, stderr) = holder.wait_exit(SOON);
    assert_eq!(code, 76, "{stderr}");
    assert!(!alive(holder.child_pid), "the command was stopped");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn release_force_ends_the_holders_session_and_says_whose() {
    let server = PgServer::start();
    let out = run_timeout(lockrun(&server, &["release", "gone"]), SOON);
    // Without --force, release ends only this job's keeper (lockrun
    // acquire): there is none, so nothing is released (1), and it says
    // how to break the lock.
    assert_eq!(
        code(out.status),
        1,
        "--force is required: {}",
        stderr_of(&out)
    );
    assert!(stderr_of(&out).contains("--force"), "{}", stderr_of(&out));
    let psql = server.psql_session(&format!("SELECT pg_advisory_lock({})", key_sql("gone")));
    let out = run_timeout(lockrun(&server, &["release", "--force", "gone"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("psql"), "{}", stderr_of(&out));
    psql.close();
    let out = run_timeout(lockrun(&server, &["-n", "gone", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
}

#[test]
fn a_server_restart_under_a_holder_is_76_and_no_overlap() {
    let mut server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hist = History::new(dir.path());
    let (cmd, first) = hist.invocation(lockrun(&server, &[]), "restart", "sleep 1000 & wait");
    let mut holder = Proc::spawn(cmd, "holder");
    hist.wait_started(&first, SOON);
    let (cmd, second) = hist.invocation(lockrun(&server, &["-w", "60s"]), "restart", "true");
    let mut waiter = Proc::spawn(cmd, "waiter");
    server.restart();
    hist.exited(&first, code(holder.wait_timeout(SOON)));
    let waited = code(waiter.wait_timeout(Duration::from_secs(60)));
    hist.exited(&second, waited);
    hist.assert_clean();
    let outcomes = [first, second].map(|id| hist.ran(&id));
    assert_eq!(outcomes, [true, waited == 0]);
    let out = run_timeout(lockrun(&server, &["-n", "restart", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
}

#[test]
fn a_stopped_holder_is_stopped_by_its_deadline_with_no_overlap() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hist = History::new(dir.path());
    let (cmd, first) = hist.invocation(lockrun(&server, &[]), "paused", "sleep 1000 & wait");
    let mut holder = Proc::spawn(cmd, "holder");
    hist.wait_started(&first, SOON);
    let (cmd, second) = hist.invocation(lockrun(&server, &["-w", "60s"]), "paused", "true");
    let mut waiter = Proc::spawn(cmd, "waiter");
    holder.signal(Signal::SIGSTOP);
    // The guardian, not the stopped lockrun, ends the command by the deadline.
    hist.wait_gone(&first, Duration::from_secs(20));
    holder.signal(Signal::SIGCONT);
    let held = code(holder.wait_timeout(SOON));
    assert_eq!(held, 76);
    hist.exited(&first, held);
    let waited = code(waiter.wait_timeout(Duration::from_secs(60)));
    assert_eq!(waited, 0);
    hist.exited(&second, waited);
    hist.assert_clean();
}

#[test]
fn a_wrong_password_is_77_in_one_line_without_the_password() {
    let server = PgServer::start();
    let mut cmd = lockrun(&server, &["-n", "x", "--", "true"]);
    cmd.env("LOCKRUN_PG_PASSWORD", "not-the-password");
    let out = run_timeout(cmd, SOON);
    let stderr = stderr_of(&out);
    assert_eq!(code(out.status), 77, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    // PGPASSWORD works as libpq users expect.
    let mut cmd = lockrun(
        &server,
        &["-n", "x", "--", "sh", "-c", "echo ${PGPASSWORD:-none}"],
    );
    cmd.env_remove("LOCKRUN_PG_PASSWORD")
        .env("PGPASSWORD", PASSWORD);
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "none",
        "not in the child's env"
    );
}

#[test]
fn an_unreachable_server_is_69_in_one_line() {
    let port = free_port();
    let mut cmd = lockrun_cmd();
    cmd.args([
        "--backend",
        &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        "-n",
        "x",
        "--",
        "true",
    ]);
    let out = run_timeout(cmd, SOON);
    let stderr = stderr_of(&out);
    assert_eq!(code(out.status), 69, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn status_and_pg_stat_activity_show_the_lockrun_holder() {
    let server = PgServer::start();
    let ready = tempfile::tempdir().unwrap();
    let holder = Holder::spawn(lockrun(&server, &[]), &ready.path().join("r"), "seen");
    let apps = server.psql("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'lockrun seen %'");
    let pid = holder.proc.pid();
    assert!(apps.starts_with(&format!("lockrun seen {pid}@")), "{apps}");
    let out = run_timeout(lockrun(&server, &["status", "seen"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains(&format!("pid {pid}")),
        "{text}{}",
        stderr_of(&out)
    );
    assert!(holder.fence() > 0, "a fence from lockrun_fence");
    assert_eq!(holder.release(), 0);
}

#[test]
fn shared_holders_overlap_and_interoperate_with_psql_both_ways() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key = key_sql("reports");
    // Two shared lockruns at once (each holds until released).
    let r1 = Holder::spawn(lockrun(&server, &["-s"]), &dir.path().join("r1"), "reports");
    let r2 = Holder::spawn(lockrun(&server, &["-s"]), &dir.path().join("r2"), "reports");
    // psql shares it, and cannot have it exclusively.
    assert_eq!(
        server.psql(&format!("SELECT pg_try_advisory_lock_shared({key})")),
        "t"
    );
    assert_eq!(
        server.psql(&format!("SELECT pg_try_advisory_lock({key})")),
        "f"
    );
    let no_wait = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-n", "reports", "--", "true"]);
        code(run_timeout(lockrun(&server, &all), SOON).status)
    };
    assert_eq!(no_wait(&[]), 75);
    let out = run_timeout(lockrun(&server, &["status", "reports"]), SOON);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reports: held shared by 2 holders"), "{text}");
    assert_eq!(r1.release(), 0);
    assert_eq!(r2.release(), 0);

    // psql holds it shared: lockrun -s shares it, plain lockrun cannot have it.
    let psql = server.psql_session(&format!("SELECT pg_advisory_lock_shared({key})"));
    assert_eq!(no_wait(&["-s"]), 0);
    assert_eq!(no_wait(&[]), 75);
    psql.close();
    // psql holds it exclusively: lockrun -s cannot have it.
    let psql = server.psql_session(&format!("SELECT pg_advisory_lock({key})"));
    assert_eq!(no_wait(&["-s"]), 75);
    psql.close();
    assert_eq!(no_wait(&[]), 0);
}

#[test]
fn a_transaction_pooler_is_refused_and_a_session_pooler_works() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let touch_ran = ["-n", "pooled", "--", "touch", ran.to_str().unwrap()];
    let pooler = PgBouncer::start(&server, "transaction");
    let out = run_timeout(lockrun_at(&pooler.url(), &touch_ran), SOON);
    let stderr = stderr_of(&out);
    assert_eq!(code(out.status), 69, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("pooler in transaction mode"), "{stderr}");
    assert!(!ran.exists(), "the command never runs");
    drop(pooler);

    let pooler = PgBouncer::start(&server, "session");
    let out = run_timeout(lockrun_at(&pooler.url(), &touch_ran), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert!(ran.exists());
}

/// Whether the lockrun session for NAME is encrypted (`pg_stat_ssl`).
fn session_encrypted(server: &PgServer, name: &str) -> String {
    server.psql(&format!(
        "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'lockrun {name} %'"
    ))
}

#[test]
fn tls_as_libpq_sslmode_says() {
    let Some(server) = PgServer::start_tls() else {
        return;
    };
    let ca = server.tls.clone().unwrap().join("ca.pem");
    let ready = tempfile::tempdir().unwrap();
    let with = |query: &str| format!("{}?{query}", server.url());

    // verify-full with the test's CA: the session is encrypted, and the
    // child's LOCKRUN_BACKEND keeps the TLS settings.
    let full = with(&format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let holder = Holder::spawn(lockrun_at(&full, &[]), &ready.path().join("1"), "tls");
    assert_eq!(session_encrypted(&server, "tls"), "t");
    assert_eq!(holder.release(), 0);
    let out = run_timeout(
        lockrun_at(
            &full,
            &["-n", "tls", "--", "sh", "-c", "echo $LOCKRUN_BACKEND"],
        ),
        SOON,
    );
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sslmode=verify-full&sslrootcert="),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The same from libpq's environment.
    let mut cmd = lockrun(&server, &["-n", "tls", "--", "true"]);
    cmd.env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", &ca);
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));

    // The default (prefer) encrypts where the server offers TLS.
    let holder = Holder::spawn(lockrun(&server, &[]), &ready.path().join("2"), "plain-url");
    assert_eq!(session_encrypted(&server, "plain-url"), "t");
    assert_eq!(holder.release(), 0);

    // A certificate from another CA: one line, 69, the command never runs.
    let other = tempfile::tempdir().unwrap();
    assert!(make_test_certificates(other.path()));
    let ran = ready.path().join("ran");
    let wrong = with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.path().join("ca.pem").display()
    ));
    let out = run_timeout(
        lockrun_at(&wrong, &["-n", "tls", "--", "touch", ran.to_str().unwrap()]),
        SOON,
    );
    let stderr = stderr_of(&out);
    assert_eq!(code(out.status), 69, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!ran.exists());
    // A root file that is not there is a usage error.
    let missing = with("sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
    let out = run_timeout(lockrun_at(&missing, &["-n", "tls", "--", "true"]), SOON);
    assert_eq!(code(out.status), 64, "{}", stderr_of(&out));
}

#[test]
fn sslmode_require_against_a_server_without_tls_fails_clearly() {
    let server = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let url = format!("{}?sslmode=require", server.url());
    let out = run_timeout(
        lockrun_at(&url, &["-n", "x", "--", "touch", ran.to_str().unwrap()]),
        SOON,
    );
    let stderr = stderr_of(&out);
    assert_eq!(code(out.status), 69, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("does not support TLS"), "{stderr}");
    assert!(!ran.exists());
}

/// The try statement bumps the fence in the same round trip; a role that
/// may not create `lockrun_fence` (PostgreSQL 15 gives `public` no CREATE
/// to non-owners), or may not write it once it exists, still gets the lock,
/// without a fence, and leaves nothing held.
#[test]
fn a_role_without_the_fence_table_locks_without_a_fence() {
    let server = PgServer::start();
    server.psql(&format!("CREATE ROLE nofence LOGIN PASSWORD '{PASSWORD}'"));
    let url = format!("postgres://nofence@127.0.0.1:{}/postgres", server.port);
    let key = key_sql("nf");
    let run = || {
        let out = run_timeout(
            lockrun_at(
                &url,
                &[
                    "-n",
                    "nf",
                    "--",
                    "sh",
                    "-c",
                    "echo fence=${LOCKRUN_FENCE:-none}",
                ],
            ),
            SOON,
        );
        let stderr = stderr_of(&out);
        assert_eq!(code(out.status), 0, "{stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "fence=none",
            "{stderr}"
        );
        // Free again: a psql try gets it (and gives it back).
        assert_eq!(
            server.psql(&format!(
                "SELECT pg_try_advisory_lock({key}) AND pg_advisory_unlock({key})"
            )),
            "t"
        );
    };
    // No table, and this role cannot create one.
    run();
    // The table exists, and this role may not write it.
    server.psql("CREATE TABLE lockrun_fence (name text PRIMARY KEY, fence bigint NOT NULL)");
    run();
    // The owner's lockrun still gets a fence.
    let out = run_timeout(
        lockrun(
            &server,
            &[
                "-n",
                "nf",
                "--",
                "sh",
                "-c",
                "echo fence=${LOCKRUN_FENCE:-none}",
            ],
        ),
        SOON,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "fence=1",
        "{}",
        stderr_of(&out)
    );
}
