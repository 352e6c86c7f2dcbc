//! The CloudShell service-alias backend, through the emulator in
//! tests/cloudshell_emulator (which `emulator_is_faithful_to_the_official_client`
//! checks against the official Python client): exclusion, interop with the
//! published recipe, failures reported as what they are, unknown outcomes
//! resolved by looking, stale locks, secrets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::util::*;

const USER: &str = "lockrun-ci";
/// XML specials on purpose: they must arrive escaped and intact.
const PASSWORD: &str = "Pw&<d>-7c1f9e2a";
const ADMIN_TOKEN: &str = "ADMIN-TOKEN-5b7d2c94e1";
const OWNER: &str = "?owner_attribute=Mutex%20Owner";

fn emulator_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloudshell_emulator")
}

/// The Python that has the official client (`cloudshell-automation-api`).
fn official_python() -> PathBuf {
    if let Some(python) = std::env::var_os("LOCKRUN_TEST_PYTHON") {
        return python.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cloudshell-venv/bin/python");
    assert!(
        venv.exists(),
        "these tests need the official CloudShell client: run scripts/test (it creates \
         target/cloudshell-venv with cloudshell-automation-api and sets LOCKRUN_TEST_PYTHON), \
         or point LOCKRUN_TEST_PYTHON at a python that has it"
    );
    venv
}

/// A running emulator; killed and reaped on drop (and it exits by itself
/// when its stdin closes, so it never outlives the test).
struct Emulator {
    _proc: Proc,
    _stdin: ChildStdin,
    port: u16,
}

impl Emulator {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let mut cmd = Command::new("python3");
        cmd.arg(emulator_dir().join("emulator.py"))
            .arg("--exit-on-eof")
            .arg("--user")
            .arg(format!("{USER}:{PASSWORD}"))
            .arg("--admin-token")
            .arg(format!("{ADMIN_TOKEN}:{USER}"))
            .arg("--model")
            .arg("Mutex Service:Mutex Owner")
            .arg("--model")
            .arg("Firewall")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn(cmd, "cloudshell emulator");
        let stdin = proc.child.stdin.take().unwrap();
        let line = first_line(proc.child.stdout.take().unwrap());
        let port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("emulator said {line:?}"));
        Emulator {
            _proc: proc,
            _stdin: stdin,
            port,
        }
    }

    fn url(&self, query: &str) -> String {
        format!("cloudshell://127.0.0.1:{}/r1{query}", self.port)
    }

    /// `lockrun --backend URL ARGS` with our credentials and nothing else
    /// from the test's environment.
    fn lockrun(&self, query: &str, args: &[&str]) -> Command {
        let mut cmd = clean_cmd(BIN);
        cmd.env("LOCKRUN_CLOUDSHELL_USER", USER)
            .env("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD)
            .arg("--backend")
            .arg(self.url(query))
            .args(args);
        cmd
    }

    fn http(&self, method: &str, path: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(SOON)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(" 200 "), "control {path}: {head}");
        body.to_owned()
    }

    fn control(&self, action: &str, payload: Value) {
        self.http("POST", &format!("/_control/{action}"), &payload.to_string());
    }

    fn fault(&self, method: &str, kind: &str, count: i64) {
        self.control(
            "fault",
            json!({"method": method, "kind": kind, "count": count, "seconds": 2.0}),
        );
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.http("GET", "/_control/state", "")).unwrap()
    }

    fn log(&self) -> Vec<Value> {
        serde_json::from_str(&self.http("GET", "/_control/log", "")).unwrap()
    }

    fn aliases(&self) -> Vec<String> {
        self.services()
            .iter()
            .map(|s| s["alias"].as_str().unwrap().to_owned())
            .collect()
    }

    fn services(&self) -> Vec<Value> {
        self.state()["reservations"]["r1"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn calls(&self, method: &str) -> u64 {
        self.state()["calls"][method].as_u64().unwrap_or(0)
    }
}

/// A command with no LOCKRUN_*, CloudShell script or proxy variables
/// inherited from the test runner.
fn clean_cmd(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("LOCKRUN_")
            || key_text.to_ascii_lowercase().ends_with("_proxy")
            || key_text == "qualiConnectivityContext"
            || key_text == "reservationContext"
        {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The first line a process prints, within a deadline.
fn first_line(stdout: ChildStdout) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(SOON).expect("no readiness line in time")
}

/// A lockrun holding `name` through the emulator until released.
fn hold(emu: &Emulator, dir: &Path, query: &str, args: &[&str], name: &str) -> Holder {
    let ready = dir.join(format!("{name}.{}.ready", rand_suffix()));
    Holder::spawn(emu.lockrun(query, args), &ready, name)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn out_text(out: &std::process::Output) -> (i32, String, String) {
    (
        code(out.status),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr_of(out),
    )
}

#[test]
fn emulator_is_faithful_to_the_official_client() {
    let started = Instant::now();
    let mut cmd = Command::new("python3");
    cmd.arg(emulator_dir().join("emulator.py"))
        .args(["--exit-on-eof", "--user", "admin:p&ss<w>rd"])
        .args(["--admin-token", "ADMIN-TOKEN:admin"])
        .args(["--model", "Mutex Service:Mutex Owner"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut emulator = Proc::spawn(cmd, "emulator");
    let _stdin = emulator.child.stdin.take();
    let line = first_line(emulator.child.stdout.take().unwrap());
    let port = line.trim().strip_prefix("LISTENING ").unwrap().to_owned();

    let mut check = clean_cmd(official_python());
    check.arg(emulator_dir().join("check_client.py")).arg(&port);
    let out = run_timeout(check, Duration::from_secs(60));
    let (status, stdout, stderr) = out_text(&out);
    assert_eq!(
        status, 0,
        "the official client disagrees with the emulator:\n{stdout}\n{stderr}"
    );
    for what in [
        "ok Logon",
        "ok SecureLogon",
        "ok AddServiceToReservation success",
        "ok AddServiceToReservation duplicate alias -> CloudShellAPIError code '100'",
        "ok GetReservationDetails: Services",
        "ok RemoveServicesFromReservation",
        "ok HTTP 401 -> re-logon and retry",
        "ALL OK",
    ] {
        assert!(stdout.contains(what), "missing {what:?}:\n{stdout}");
    }
    eprintln!("faithfulness check took {:?}", started.elapsed());
}

#[test]
fn requests_are_the_bytes_the_official_client_sends() {
    let emu = Emulator::start();
    let out = run_timeout(emu.lockrun("", &["MUTEX", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let log = emu.log();
    let methods: Vec<&str> = log.iter().map(|e| e["method"].as_str().unwrap()).collect();
    assert_eq!(
        methods,
        [
            "Logon",
            "AddServiceToReservation",
            "RemoveServicesFromReservation"
        ]
    );
    let header = |entry: &Value, name: &str| -> String {
        entry["headers"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or_else(
                || panic!("no {name} header in {entry}"),
                |(_, v)| v.as_str().unwrap().to_owned(),
            )
    };
    for entry in &log {
        assert_eq!(header(entry, "Content-Type"), "text/xml");
        assert_eq!(header(entry, "Accept"), "*/*");
        assert_eq!(header(entry, "ClientTimeZoneId"), "UTC");
        assert_eq!(header(entry, "DateTimeFormat"), "MM/dd/yyyy HH:mm");
    }
    // Logon goes out with an empty token; the issued one is used afterwards.
    let logon_auth = header(&log[0], "Authorization");
    assert!(
        logon_auth.starts_with("MachineName=")
            && logon_auth.ends_with(&format!(":{};Token=", emu.port)),
        "{logon_auth}"
    );
    let token_auth = header(&log[1], "Authorization");
    let token = token_auth.rsplit_once(";Token=").unwrap().1;
    assert_eq!(token.len(), 24, "{token_auth}");
    assert_eq!(header(&log[2], "Authorization"), token_auth);
    assert_eq!(
        log[0]["body"],
        format!(
            "<Logon><username>{USER}</username><password>Pw&amp;&lt;d&gt;-7c1f9e2a</password><domainName>Global</domainName></Logon>"
        )
    );
    assert_eq!(
        log[1]["body"],
        "<AddServiceToReservation><reservationId>r1</reservationId><serviceName>Mutex Service</serviceName><alias>MUTEX</alias><attributes /></AddServiceToReservation>"
    );
    assert_eq!(
        log[2]["body"],
        "<RemoveServicesFromReservation><reservationId>r1</reservationId><services><string>MUTEX</string></services></RemoveServicesFromReservation>"
    );
    assert!(emu.aliases().is_empty());
}

#[test]
fn concurrent_critical_sections_never_overlap() {
    const WORKERS: usize = 8;
    const SECTIONS: usize = 25;
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    // Short backoff: the emulator answers in a millisecond, and the test
    // is about exclusion, not about sparing a real server.
    let url = emu.url("?first_poll=5ms&max_poll=40ms");
    let started = Instant::now();
    let (count, _) = contention_torture(
        dir.path(),
        WORKERS,
        SECTIONS,
        &["--backend", &url],
        &[
            ("LOCKRUN_CLOUDSHELL_USER", USER),
            ("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD),
        ],
        Duration::from_secs(240),
    );
    assert_eq!(
        count,
        WORKERS * SECTIONS,
        "lost increments: mutual exclusion broken"
    );
    assert!(emu.aliases().is_empty(), "a lock was left behind");
    eprintln!(
        "{} critical sections in {:?}, {} AddServiceToReservation calls",
        WORKERS * SECTIONS,
        started.elapsed(),
        emu.calls("AddServiceToReservation")
    );
}

#[test]
fn the_published_recipe_and_lockrun_exclude_each_other_both_ways() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let recipe = |mode: &str| {
        let mut cmd = clean_cmd(official_python());
        cmd.arg(emulator_dir().join("recipe.py"))
            .arg(emu.port.to_string())
            .args(["r1", mode])
            .env("CS_USER", USER)
            .env("CS_PASSWORD", PASSWORD);
        cmd
    };

    // The recipe holds MUTEX: lockrun MUTEX is busy, and waits until it is released.
    let mut cmd = recipe("hold");
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut driver = Proc::spawn(cmd, "recipe holding MUTEX");
    let mut driver_in = driver.child.stdin.take().unwrap();
    let mut driver_out = BufReader::new(driver.child.stdout.take().unwrap());
    wait_for_line(&mut driver_out, "HELD");
    let ran = dir.path().join("ran");
    let touch = ran.to_str().unwrap();
    let out = run_timeout(
        emu.lockrun("", &["-n", "MUTEX", "--", "touch", touch]),
        SOON,
    );
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert!(!ran.exists(), "ran without the lock");

    let mut cmd = emu.lockrun(
        "?max_poll=300ms",
        &["-v", "-w", "60s", "MUTEX", "--", "touch", touch],
    );
    cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "lockrun waiting for MUTEX");
    let mut waiter_err = BufReader::new(waiter.child.stderr.take().unwrap());
    wait_for_line(&mut waiter_err, "lock busy, waiting");
    assert!(!ran.exists());
    writeln!(driver_in, "release").unwrap();
    wait_for_line(&mut driver_out, "RELEASED");
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
    assert!(ran.exists());
    assert_eq!(code(driver.wait_timeout(SOON)), 0);

    // lockrun holds MUTEX: the recipe gets error 100, then succeeds after release.
    let holder = hold(&emu, dir.path(), "", &[], "MUTEX");
    let out = run_timeout(recipe("try"), Duration::from_secs(60));
    let (_, stdout, stderr) = out_text(&out);
    assert_eq!(
        stdout.trim(),
        "ERROR 100 Service with given alias already exists",
        "{stderr}"
    );
    assert_eq!(holder.finish().0, 0);
    let out = run_timeout(recipe("try"), Duration::from_secs(60));
    assert_eq!(out_text(&out).1.trim(), "ACQUIRED");
    assert_eq!(emu.aliases(), ["MUTEX"]);
}

/// Run `lockrun -w 60s NAME -- touch FILE`; the failure must come at once
/// (not be waited out as contention) and the command must not run.
fn fails_without_running(
    emu: &Emulator,
    mut cmd: Command,
    ran: &Path,
    expected: i32,
    what: &str,
) -> String {
    let started = Instant::now();
    cmd.args(["-w", "60s", "guarded", "--", "touch", ran.to_str().unwrap()]);
    let out = run_timeout(cmd, Duration::from_secs(60));
    let (status, stdout, stderr) = out_text(&out);
    assert_eq!(status, expected, "{what}: {stderr}");
    assert!(!ran.exists(), "{what}: the command ran");
    assert!(stdout.is_empty(), "{what}: {stdout}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{what}: took {:?}, was it retried as contention?",
        started.elapsed()
    );
    assert!(
        !emu.aliases().contains(&"guarded".to_owned()),
        "{what}: left the lock behind"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: one line expected:\n{stderr}"
    );
    stderr
}

#[test]
fn failures_are_reported_as_what_they_are_and_never_run_the_command() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");

    let mut cmd = emu.lockrun("", &[]);
    cmd.env("LOCKRUN_CLOUDSHELL_PASSWORD", "wrong-password");
    let err = fails_without_running(&emu, cmd, &ran, 77, "bad password");
    assert!(
        err.contains("refused the logon") && err.contains("error 118"),
        "{err}"
    );
    // The message asks to check the user name, so it names it: the user is
    // no secret (it only stays out of the child's environment).
    assert!(err.contains(&format!("user {USER:?}")), "{err}");

    let mut cmd = emu.lockrun("", &[]);
    cmd.env("LOCKRUN_CLOUDSHELL_TOKEN", "forged-token");
    let err = fails_without_running(&emu, cmd, &ran, 77, "bad token");
    assert!(err.contains("SecureLogon"), "{err}");

    let mut cmd = clean_cmd(BIN);
    cmd.env("LOCKRUN_CLOUDSHELL_USER", USER)
        .env("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD)
        .arg("--backend")
        .arg(format!(
            "cloudshell://127.0.0.1:{}/no-such-reservation",
            emu.port
        ));
    let err = fails_without_running(&emu, cmd, &ran, 69, "unknown reservation");
    assert!(
        err.contains("Reservation 'no-such-reservation' was not found")
            && err.contains("reservation id"),
        "{err}"
    );

    let err = fails_without_running(
        &emu,
        emu.lockrun("?model=Mutex%20Servic", &[]),
        &ran,
        69,
        "unknown model",
    );
    assert!(
        err.contains("Service model 'Mutex Servic' was not found") && err.contains("?model="),
        "{err}"
    );

    let err = fails_without_running(
        &emu,
        emu.lockrun("?owner_attribute=Owner", &[]),
        &ran,
        69,
        "attribute the model lacks",
    );
    assert!(err.contains("Attribute 'Owner' does not exist"), "{err}");

    emu.fault("AddServiceToReservation", "http500", -1);
    let err = fails_without_running(&emu, emu.lockrun("?retries=2", &[]), &ran, 69, "HTTP 500");
    assert!(
        err.contains("HTTP 500") && err.contains("failed 3 times"),
        "{err}"
    );
    emu.control("clear_faults", json!({}));

    emu.fault("AddServiceToReservation", "drop", -1);
    let err = fails_without_running(&emu, emu.lockrun("", &[]), &ran, 69, "dropped connection");
    assert!(
        err.contains("AddServiceToReservation failed 3 times"),
        "{err}"
    );
    emu.control("clear_faults", json!({}));

    emu.fault("AddServiceToReservation", "garbage", -1);
    let err = fails_without_running(&emu, emu.lockrun("", &[]), &ran, 69, "unreadable reply");
    assert!(err.contains("unreadable reply"), "{err}");
    emu.control("clear_faults", json!({}));

    // A server too slow for the timeout, every time.
    emu.fault("*", "delay", -1);
    let err = fails_without_running(
        &emu,
        emu.lockrun("?timeout=200ms&retries=1", &[]),
        &ran,
        69,
        "timeouts past the retry budget",
    );
    assert!(
        err.contains("no answer within 200ms") && err.contains("failed 2 times"),
        "{err}"
    );
    emu.control("clear_faults", json!({}));

    let mut cmd = clean_cmd(BIN);
    cmd.env("LOCKRUN_CLOUDSHELL_USER", USER)
        .env("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD)
        .arg("--backend")
        .arg(format!("cloudshell://127.0.0.1:{}/r1", free_port()));
    let err = fails_without_running(&emu, cmd, &ran, 69, "nothing listening");
    assert!(err.contains("Connection refused"), "{err}");

    // TLS where the server speaks plain HTTP: a connection failure, not a hang.
    let mut cmd = clean_cmd(BIN);
    cmd.env("LOCKRUN_CLOUDSHELL_USER", USER)
        .env("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD)
        .arg("--backend")
        .arg(format!("cloudshells://127.0.0.1:{}/r1", emu.port));
    let err = fails_without_running(&emu, cmd, &ran, 69, "TLS to a plain HTTP server");
    assert!(err.contains("https://127.0.0.1"), "{err}");

    // Missing credentials and bad URLs are usage errors, before any request.
    let mut cmd = clean_cmd(BIN);
    cmd.arg("--backend").arg(emu.url(""));
    let err = fails_without_running(&emu, cmd, &ran, 64, "no credentials");
    assert!(err.contains("LOCKRUN_CLOUDSHELL_USER"), "{err}");
    let err = fails_without_running(
        &emu,
        emu.lockrun("?colour=blue", &[]),
        &ran,
        64,
        "unknown option",
    );
    assert!(err.contains("unknown cloudshell option"), "{err}");
}

#[test]
fn an_add_with_unknown_outcome_is_resolved_by_looking_at_the_reservation() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let run = |query: &str| {
        let _ = std::fs::remove_file(&ran);
        let out = run_timeout(
            emu.lockrun(
                query,
                &[
                    "-w",
                    "60s",
                    "ambiguous",
                    "--",
                    "touch",
                    ran.to_str().unwrap(),
                ],
            ),
            Duration::from_secs(60),
        );
        out_text(&out)
    };

    // Committed, but the answer timed out: with an owner attribute the
    // reservation shows the alias is ours, so we hold it.
    emu.fault("AddServiceToReservation", "delay_after_commit", 1);
    let (status, _, stderr) = run(&format!("{OWNER}&timeout=500ms"));
    assert_eq!(status, 0, "{stderr}");
    assert!(ran.exists());
    assert!(emu.aliases().is_empty(), "not released");

    // Committed, connection dropped: same.
    emu.fault("AddServiceToReservation", "drop_after_commit", 1);
    let (status, _, stderr) = run(OWNER);
    assert_eq!(status, 0, "{stderr}");
    assert!(ran.exists());
    assert!(emu.aliases().is_empty(), "not released");

    // Not committed (HTTP 500 before the work): the reservation shows no
    // alias, so trying again within the budget is safe, and succeeds.
    emu.fault("AddServiceToReservation", "http500", 1);
    let (status, _, stderr) = run("");
    assert_eq!(status, 0, "{stderr}");
    assert!(ran.exists());

    // Committed, answer lost, no owner attribute: the alias exists and may
    // be ours or anyone's. lockrun says so and does not run the command.
    emu.fault("AddServiceToReservation", "drop_after_commit", 1);
    let (status, _, stderr) = run("");
    assert_eq!(status, 69, "{stderr}");
    assert!(!ran.exists(), "ran without being sure it held the lock");
    assert!(
        stderr.contains("unknown outcome")
            && stderr.contains("cannot tell")
            && stderr.contains("release ambiguous --force"),
        "{stderr}"
    );
    // It is left for a human to judge, and visible.
    assert_eq!(emu.aliases(), ["ambiguous"]);
    let out = run_timeout(emu.lockrun("", &["status", "ambiguous"]), SOON);
    let (status, stdout, _) = out_text(&out);
    assert_eq!(status, 0);
    assert!(
        stdout.contains("ambiguous: held (holder unknown)"),
        "{stdout}"
    );
    let out = run_timeout(emu.lockrun("", &["release", "ambiguous", "--force"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert!(emu.aliases().is_empty());
}

#[test]
fn a_401_logs_on_again_once() {
    let emu = Emulator::start();
    emu.fault("AddServiceToReservation", "unauthorized", 1);
    let out = run_timeout(emu.lockrun("", &["relogon", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    assert_eq!(emu.state()["logons"], 2);
    assert!(emu.aliases().is_empty());

    // Expired sessions, too (the server forgot every token).
    let dir = tempfile::tempdir().unwrap();
    let holder = hold(&emu, dir.path(), "", &[], "relogon");
    emu.control("expire_tokens", json!({}));
    let (status, stderr) = holder.finish();
    assert_eq!(status, 0, "{stderr}");
    assert!(
        emu.aliases().is_empty(),
        "release after re-logon failed: {stderr}"
    );

    // A 401 right after logging on again is a credentials problem, not a retry loop.
    emu.fault("AddServiceToReservation", "unauthorized", -1);
    let out = run_timeout(
        emu.lockrun("", &["-w", "60s", "relogon", "--", "true"]),
        SOON,
    );
    assert_eq!(code(out.status), 77, "{}", stderr_of(&out));
}

#[test]
fn a_stale_lock_after_sigkill_is_shown_plainly_and_broken_by_force() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    for query in ["", OWNER] {
        let holder = hold(&emu, dir.path(), query, &[], "stale");
        let lockrun_pid = holder.proc.pid();
        holder.proc.signal(Signal::SIGKILL);
        let child_pid = holder.child_pid;
        wait_until("the child to die with lockrun (PDEATHSIG)", SOON, || {
            !alive(child_pid)
        });
        drop(holder);
        // No TTL in this API: the alias stays.
        assert_eq!(emu.aliases(), ["stale"]);

        let out = run_timeout(emu.lockrun(query, &["status", "stale"]), SOON);
        let (status, stdout, stderr) = out_text(&out);
        assert_eq!(status, 0, "{stderr}");
        if query.is_empty() {
            assert!(stdout.contains("stale: held (holder unknown)"), "{stdout}");
        } else {
            assert!(stdout.contains("stale: held by "), "{stdout}");
            assert!(stdout.contains(&format!(" pid {lockrun_pid} ")), "{stdout}");
            assert!(stdout.contains("since "), "{stdout}");
        }
        assert!(
            stdout.contains("never expires by itself")
                && stdout.contains("lockrun release stale --force"),
            "{stdout}"
        );
        let out = run_timeout(emu.lockrun(query, &["status", "stale", "--json"]), SOON);
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["held"], true);
        assert_eq!(doc["slots"][0]["needs_manual_release"], true);

        let out = run_timeout(emu.lockrun(query, &["-n", "stale", "--", "true"]), SOON);
        assert_eq!(code(out.status), 75);

        let out = run_timeout(emu.lockrun(query, &["release", "stale", "--force"]), SOON);
        let (status, _, stderr) = out_text(&out);
        assert_eq!(status, 0, "{stderr}");
        assert!(stderr.contains("released stale"), "{stderr}");
        assert!(emu.aliases().is_empty());
        let out = run_timeout(emu.lockrun(query, &["status", "stale"]), SOON);
        assert!(out_text(&out).1.contains("stale: free"));
        let out = run_timeout(emu.lockrun(query, &["-n", "stale", "--", "true"]), SOON);
        assert_eq!(code(out.status), 0);
    }
}

#[test]
fn secrets_never_appear_in_output_or_the_childs_environment() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let secret_free = |what: &str, text: &str| {
        for secret in [PASSWORD, ADMIN_TOKEN, "Pw&amp;", "hunter2-url-pw"] {
            assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
        }
        // Session tokens the server issued are secrets too.
        for entry in emu.log() {
            let headers = entry["headers"].as_object().unwrap();
            let auth = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Authorization"))
                .and_then(|(_, v)| v.as_str())
                .unwrap_or_default();
            if let Some((_, token)) = auth.rsplit_once("Token=")
                && !token.is_empty()
            {
                assert!(
                    !text.contains(token),
                    "{what} shows a session token:\n{text}"
                );
            }
        }
    };
    let all_output = |out: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr_of(out))
    };

    // The child's environment, with debug logging on.
    let out = run_timeout(emu.lockrun(OWNER, &["-vv", "envy", "--", "env"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let text = all_output(&out);
    secret_free("lockrun -vv with child env", &text);
    assert!(
        !text.contains("LOCKRUN_CLOUDSHELL_PASSWORD") && !text.contains("LOCKRUN_CLOUDSHELL_USER")
    );
    assert!(
        text.contains(&format!("LOCKRUN_BACKEND={}\n", emu.url(OWNER))),
        "{text}"
    );

    // A token instead of a password.
    let mut cmd = emu.lockrun("", &["-vv", "envy", "--", "env"]);
    cmd.env_remove("LOCKRUN_CLOUDSHELL_USER")
        .env_remove("LOCKRUN_CLOUDSHELL_PASSWORD")
        .env("LOCKRUN_CLOUDSHELL_TOKEN", ADMIN_TOKEN);
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    secret_free("token logon", &all_output(&out));

    // A password in the URL (allowed, not recommended) is not passed on.
    let mut cmd = clean_cmd(BIN);
    cmd.arg("-vv")
        .arg("--backend")
        .arg(format!(
            "cloudshell://{USER}:hunter2-url-pw@127.0.0.1:{}/r1",
            emu.port
        ))
        .args(["envy", "--", "env"]);
    let out = run_timeout(cmd, SOON);
    // That is not the user's password: refused, and still not shown.
    assert_eq!(code(out.status), 77, "{}", stderr_of(&out));
    secret_free("password in the URL", &all_output(&out));

    // status, list, failures.
    let holder = hold(&emu, dir.path(), OWNER, &[], "envy");
    for args in [
        &["-vv", "status", "envy"][..],
        &["-vv", "status", "envy", "--json"],
        &["-vv", "list"],
        &["-vv", "list", "--json"],
        &["-vv", "-n", "envy", "--", "true"],
    ] {
        let out = run_timeout(emu.lockrun(OWNER, args), SOON);
        secret_free(&format!("{args:?}"), &all_output(&out));
    }
    let mut cmd = emu.lockrun("", &["-vv", "x", "--", "true"]);
    cmd.env("LOCKRUN_CLOUDSHELL_PASSWORD", "hunter2-url-pw");
    let out = run_timeout(cmd, SOON);
    assert_eq!(code(out.status), 77);
    secret_free("bad password", &all_output(&out));
    let (status, stderr) = holder.finish();
    assert_eq!(status, 0);
    secret_free("holder", &stderr);
}

#[test]
fn slots_are_aliases_that_cannot_collide_with_names() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let first = hold(&emu, dir.path(), "", &["--slots", "2"], "pool");
    let second = hold(&emu, dir.path(), "", &["--slots", "2"], "pool");
    let mut aliases = emu.aliases();
    aliases.sort();
    assert_eq!(aliases, ["pool@1", "pool@2"]);
    let out = run_timeout(
        emu.lockrun("", &["-n", "--slots", "2", "pool", "--", "true"]),
        SOON,
    );
    assert_eq!(code(out.status), 75);
    // The plain lock "pool" is a different lock.
    let out = run_timeout(emu.lockrun("", &["-n", "pool", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let out = run_timeout(emu.lockrun("", &["status", "pool"]), SOON);
    let stdout = out_text(&out).1;
    assert!(
        stdout.contains("pool@1: held") && stdout.contains("pool@2: held"),
        "{stdout}"
    );
    assert_eq!(first.finish().0, 0);
    assert_eq!(second.finish().0, 0);
    assert!(emu.aliases().is_empty());
}

#[test]
fn a_lock_broken_while_the_command_runs_stops_it() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();

    // Removed behind our back: exit 76, and nothing of ours to remove.
    let mut holder = hold(&emu, dir.path(), "?check=100ms", &[], "broken");
    emu.control(
        "remove_service",
        json!({"reservation": "r1", "alias": "broken"}),
    );
    let (status, stderr) = holder.proc.finish(SOON);
    assert_eq!(code(status), 76, "{stderr}");
    assert!(stderr.contains("lost the lock broken"), "{stderr}");
    wait_until("the child to be stopped", SOON, || !alive(holder.child_pid));

    // Taken over by another holder (force-release + re-acquire, done here in
    // one step): their lock must survive our exit.
    let query = format!("{OWNER}&check=100ms");
    let mut holder = hold(&emu, dir.path(), &query, &[], "broken");
    emu.control(
        "add_service",
        json!({"reservation": "r1", "alias": "broken", "model": "Mutex Service",
               "attributes": [["Mutex Owner", "host=elsewhere;pid=7;since=2026-01-01T00:00:00Z;user=x;id=1;cmd=y"]]}),
    );
    let (status, stderr) = holder.proc.finish(SOON);
    assert_eq!(code(status), 76, "{stderr}");
    assert!(
        stderr.contains("now belongs to elsewhere pid 7"),
        "{stderr}"
    );
    assert_eq!(emu.aliases(), ["broken"], "removed the new holder's lock");
}

#[test]
fn list_shows_locks_and_force_release_touches_only_locks() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    emu.control(
        "add_service",
        json!({"reservation": "r1", "alias": "fw1", "model": "Firewall"}),
    );
    let holder = hold(&emu, dir.path(), OWNER, &[], "deploy");
    let out = run_timeout(emu.lockrun(OWNER, &["list"]), SOON);
    let (status, stdout, _) = out_text(&out);
    assert_eq!(status, 0);
    assert!(stdout.contains("deploy: held by "), "{stdout}");
    assert!(
        !stdout.contains("fw1"),
        "a firewall is not a lock:\n{stdout}"
    );
    let out = run_timeout(emu.lockrun(OWNER, &["list", "--json"]), SOON);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["locks"].as_array().unwrap().len(), 1, "{doc}");

    let out = run_timeout(emu.lockrun("", &["release", "fw1", "--force"]), SOON);
    let (status, _, stderr) = out_text(&out);
    assert_eq!(status, 64, "{stderr}");
    assert!(stderr.contains("\"Firewall\" service"), "{stderr}");
    assert!(emu.aliases().contains(&"fw1".to_owned()));
    assert_eq!(holder.finish().0, 0);
    assert_eq!(emu.aliases(), ["fw1"]);
}

#[test]
fn inside_a_cloudshell_script_the_environment_is_enough() {
    let emu = Emulator::start();
    let script_env = |cmd: &mut Command| {
        cmd.env(
            "qualiConnectivityContext",
            json!({"serverAddress": "127.0.0.1", "tsAPIPort": "8028", "adminAuthToken": ADMIN_TOKEN,
                   "adminUser": "", "adminPass": ""})
            .to_string(),
        )
        .env("reservationContext", json!({"id": "r1", "domain": "Global", "ownerUser": USER}).to_string());
    };
    // Server, token and reservation from the environment; only the port is
    // given, because the emulator does not listen on 8029.
    // The child gets the concrete URL; a nested lockrun on the script's own
    // server may use the script's credentials.
    let nested = r#"env; "$0" --backend "$LOCKRUN_BACKEND" -n inner -- true && echo NESTED-OK"#;
    let mut cmd = clean_cmd(BIN);
    cmd.args([
        "--backend",
        &format!("cloudshell://:{}", emu.port),
        "scripted",
        "--",
        "sh",
        "-c",
        nested,
        BIN,
    ]);
    script_env(&mut cmd);
    let out = run_timeout(cmd, SOON);
    let (status, stdout, stderr) = out_text(&out);
    assert_eq!(status, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "LOCKRUN_BACKEND=cloudshell://127.0.0.1:{}/r1\n",
            emu.port
        )),
        "{stdout}"
    );
    assert!(stdout.contains("NESTED-OK"), "{stdout}\n{stderr}");
    let log = emu.log();
    assert_eq!(log[0]["method"], "SecureLogon");
    assert!(log[0]["body"].as_str().unwrap().contains(ADMIN_TOKEN));
    assert!(emu.aliases().is_empty());

    // Outside a script, `cloudshell:` is a usage error that says why.
    let mut cmd = clean_cmd(BIN);
    cmd.args(["--backend", "cloudshell:", "scripted", "--", "true"]);
    let out = run_timeout(cmd, SOON);
    let (status, _, stderr) = out_text(&out);
    assert_eq!(status, 64);
    assert!(stderr.contains("qualiConnectivityContext"), "{stderr}");
}

#[test]
fn waiting_polls_with_jittered_backoff_and_tolerates_odd_replies() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    // &#x0; in a reply (real servers emit it) must not break anything.
    emu.control("set", json!({"nul_in_description": true}));
    let holder = hold(&emu, dir.path(), "", &[], "polled");
    let before = emu.calls("AddServiceToReservation");
    let mut cmd = emu.lockrun(
        "?first_poll=50ms&max_poll=400ms",
        &["-v", "-w", "60s", "polled", "--", "true"],
    );
    cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "waiter");
    let mut waiter_err = BufReader::new(waiter.child.stderr.take().unwrap());
    wait_for_line(&mut waiter_err, "lock busy, waiting");
    // Let it poll for a while (bounded by the number of polls, not a sleep).
    wait_until("a few polls", SOON, || {
        emu.calls("AddServiceToReservation") >= before + 6
    });
    let polling_since = Instant::now();
    let polls_then = emu.calls("AddServiceToReservation");
    wait_until("more polls", SOON, || {
        emu.calls("AddServiceToReservation") >= polls_then + 4
    });
    // Capped at 400ms with full jitter: 4 polls take well under 4 × 400ms
    // plus scheduling slack, and never a recipe-style 2-5 s each.
    assert!(
        polling_since.elapsed() < Duration::from_secs(4),
        "{:?}",
        polling_since.elapsed()
    );
    let out = run_timeout(emu.lockrun("", &["status", "polled"]), SOON);
    assert!(out_text(&out).1.contains("polled: held"));
    let released = Instant::now();
    assert_eq!(holder.finish().0, 0);
    assert_eq!(code(waiter.wait_timeout(SOON)), 0);
    assert!(
        released.elapsed() < Duration::from_secs(3),
        "slow hand-over: {:?}",
        released.elapsed()
    );
}

#[test]
fn a_signal_while_waiting_leaves_nothing_behind() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let holder = hold(&emu, dir.path(), "", &[], "sig");
    let mut cmd = emu.lockrun("?max_poll=200ms", &["-v", "sig", "--", "true"]);
    cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(cmd, "waiter");
    let mut waiter_err = BufReader::new(waiter.child.stderr.take().unwrap());
    wait_for_line(&mut waiter_err, "lock busy, waiting");
    waiter.signal(Signal::SIGTERM);
    assert_eq!(code(waiter.wait_timeout(SOON)), 128 + 15);
    assert_eq!(emu.aliases(), ["sig"]);
    assert_eq!(holder.finish().0, 0);
    assert!(emu.aliases().is_empty());
}

// ---------------------------------------------------------------------------
// Requests the server carries out after lockrun gave up on them.

const ADD: &str = "AddServiceToReservation";
const REMOVE: &str = "RemoveServicesFromReservation";

/// Short request timeouts, so that a delay fault of `LATE` seconds is far
/// past lockrun's patience for one answer, but many retries, so that the time
/// lockrun gives an unanswered request to settle (timeout × (retries + 1) =
/// 6.3 s) is well past `LATE`: the late request lands while lockrun still
/// watches for it. Fast polling, so that a waiter would pounce at once on a
/// lock that is wrongly freed.
const PATIENT: &str = "timeout=300ms&retries=20&first_poll=5ms&max_poll=50ms";
const LATE: f64 = 2.5;

/// Appends `KIND PID MONOTONIC_NS` to the history file named by `$1`.
const STAMP: &str = "import sys, time; open(sys.argv[1], 'a').write('%s %s %d\\n' % (sys.argv[2], sys.argv[3], time.monotonic_ns()))";

/// The command of a critical section: `start` in the history, then (with
/// `ready`) create the ready file and block until stdin closes, then `end`.
fn section_command(history: &Path, ready: Option<&Path>) -> Vec<String> {
    let stamp = format!(
        "python3 -c {} {}",
        sh_quote(STAMP),
        sh_quote(history.to_str().unwrap())
    );
    let middle = match ready {
        Some(ready) => format!(": > {}; read line; ", sh_quote(ready.to_str().unwrap())),
        None => String::new(),
    };
    let script = format!("{stamp} start $$; {middle}{stamp} end $$");
    vec!["sh".into(), "-c".into(), script]
}

/// Every section in `history` ran alone: no `start` while another section
/// was open (one without `end`, e.g. killed, stays open). Returns the pids in
/// the order the sections started.
fn assert_sections_never_overlap(history: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(history).unwrap_or_default();
    let mut events: Vec<(u64, bool, String)> = text
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "bad history line {line:?}");
            (
                parts[2].parse().unwrap(),
                parts[0] == "start",
                parts[1].to_owned(),
            )
        })
        .collect();
    events.sort_by_key(|(ns, _, _)| *ns);
    let mut open: Vec<String> = Vec::new();
    let mut order = Vec::new();
    for (_, start, pid) in events {
        if start {
            assert!(
                open.is_empty(),
                "section {pid} started while {open:?} ran: two holders at once\n{text}"
            );
            open.push(pid.clone());
            order.push(pid);
        } else {
            open.retain(|p| *p != pid);
        }
    }
    order
}

/// A lockrun running a blocking critical section; its stderr is collected
/// as it comes, so a test can wait for a line without blocking on the pipe.
struct Section {
    proc: Proc,
    stdin: Option<ChildStdin>,
    ready: PathBuf,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Section {
    /// `lockrun` is the invocation up to, not including, the lock name.
    fn spawn(mut lockrun: Command, dir: &Path, history: &Path, name: &str, tag: &str) -> Self {
        let ready = dir.join(format!("{tag}.ready"));
        lockrun
            .arg(name)
            .arg("--")
            .args(section_command(history, Some(&ready)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut proc = Proc::spawn(lockrun, &format!("section {tag}"));
        let stdin = proc.child.stdin.take();
        let mut pipe = proc.child.stderr.take().unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Section {
            proc,
            stdin,
            ready,
            stderr,
            reader: Some(reader),
        }
    }

    fn started(&self) -> bool {
        self.ready.exists()
    }

    fn wait_started(&self) {
        let deadline = Instant::now() + SOON;
        while !self.started() {
            assert!(
                Instant::now() < deadline,
                "{} did not start within {SOON:?}; its stderr:\n{}",
                self.proc.name,
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn said(&self, needle: &str) -> bool {
        self.stderr.lock().unwrap().contains(needle)
    }

    /// Let the section end; lockrun's exit code and stderr.
    fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let status = self.proc.wait_timeout(SOON);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let stderr = self.stderr.lock().unwrap().clone();
        (code(status), stderr)
    }
}

/// Has a request that a delay fault held been carried out by now?
fn carried_out_late(emu: &Emulator, method: &str) -> bool {
    emu.state()["delayed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["method"] == method && d["state"] == "carried_out")
}

/// Fault 5: A's remove times out but the server carries it out later. If A
/// sent another remove meanwhile and B took the lock, the late remove would
/// delete B's alias and let C in while B runs.
#[test]
fn a_remove_carried_out_late_never_frees_the_next_holders_lock() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let query = format!("{OWNER}&{PATIENT}");
    let a = Section::spawn(
        emu.lockrun(&query, &["-v"]),
        dir.path(),
        &history,
        "late-remove",
        "A",
    );
    a.wait_started();
    let waiter = |tag| {
        Section::spawn(
            emu.lockrun(&query, &["-v", "-w", "60s"]),
            dir.path(),
            &history,
            "late-remove",
            tag,
        )
    };
    let b = waiter("B");
    wait_until("B to wait", SOON, || b.said("lock busy, waiting"));
    let c = waiter("C");
    wait_until("C to wait", SOON, || c.said("lock busy, waiting"));

    // A's remove is held for LATE seconds, far past A's 300ms timeout, then carried out.
    emu.control(
        "fault",
        json!({"method": REMOVE, "kind": "delay", "seconds": LATE, "count": 1}),
    );
    let (status, stderr) = a.finish();
    assert_eq!(status, 0, "{stderr}");
    assert!(!stderr.contains("could not release"), "{stderr}");
    // Either waiter may get the lock next; the other must stay out while it runs.
    wait_until("B or C to take the lock", SOON, || {
        b.started() || c.started()
    });
    let (next, other) = if b.started() { (b, c) } else { (c, b) };
    wait_until("A's late remove to be carried out", SOON, || {
        carried_out_late(&emu, REMOVE)
    });
    // Give the other every chance to get in wrongly: several polls after the late remove.
    let polls = emu.calls(ADD);
    wait_until(
        "the other waiter to poll a few more times (or get in)",
        SOON,
        || other.started() || emu.calls(ADD) >= polls + 5,
    );
    let services = emu.services();
    let (next_status, next_stderr) = next.finish();
    other.wait_started();
    let (other_status, other_stderr) = other.finish();
    let order = assert_sections_never_overlap(&history);
    assert_eq!(order.len(), 3, "{order:?}");
    assert_eq!(
        services.len(),
        1,
        "the next holder's lock is gone while it runs: {services:?}"
    );
    assert_eq!(
        (next_status, other_status),
        (0, 0),
        "next: {next_stderr}\nother: {other_stderr}"
    );
    assert!(
        emu.aliases().is_empty(),
        "left behind: {:?}",
        emu.services()
    );
}

/// Fault 6: A's add times out but the server carries it out later, after A
/// added again, ran and released: the alias would then stay for ever, held
/// by nobody.
#[test]
fn an_add_carried_out_late_leaves_no_lock_held_by_nobody() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history");
    let query = format!("{OWNER}&{PATIENT}");
    emu.control(
        "fault",
        json!({"method": ADD, "kind": "delay", "seconds": LATE, "count": 1}),
    );
    let mut cmd = emu.lockrun(&query, &["-v", "-w", "60s", "ghost", "--"]);
    cmd.args(section_command(&history, None));
    let out = run_timeout(cmd, Duration::from_secs(60));
    let (status, _, stderr) = out_text(&out);
    assert_eq!(status, 0, "{stderr}");
    wait_until("the late add to be carried out", SOON, || {
        carried_out_late(&emu, ADD)
    });
    assert_eq!(assert_sections_never_overlap(&history).len(), 1);
    assert!(
        emu.aliases().is_empty(),
        "a lock held by nobody: {:?}",
        emu.services()
    );
    let out = run_timeout(emu.lockrun(&query, &["-n", "ghost", "--", "true"]), SOON);
    assert_eq!(code(out.status), 0, "{}", stderr_of(&out));
    let out = run_timeout(emu.lockrun(&query, &["status", "ghost"]), SOON);
    assert!(out_text(&out).1.contains("ghost: free"));
}

/// Fault 7: removes that keep failing. The lock never expires, so the exit
/// status must say it was left behind (74), and stderr what and how to
/// clear it. Exit 74 is the supervisor's mapping of a final release failure
/// of a backend whose locks do not expire.
#[test]
fn a_release_that_finally_fails_exits_74_and_says_how_to_clear_it() {
    let emu = Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    // With an owner attribute a failed remove whose alias is still provably
    // ours is sent again, within the retry budget (3 in all); without one,
    // lockrun cannot tell whether the alias is still ours and never sends
    // a second remove.
    let mut statuses = Vec::new();
    for (query, removes) in [(OWNER, 3), ("", 1)] {
        let holder = hold(&emu, dir.path(), query, &[], "stuck");
        emu.fault(REMOVE, "http500", -1);
        let before = emu.calls(REMOVE);
        let (status, stderr) = holder.finish();
        assert_eq!(emu.calls(REMOVE) - before, removes, "{stderr}");
        assert_eq!(emu.aliases(), ["stuck"]);
        emu.control("clear_faults", json!({}));
        assert!(
            stderr.contains("stuck") && stderr.contains("left behind"),
            "{stderr}"
        );
        // The command it names, as printed, clears it.
        let start = stderr
            .find("lockrun -b ")
            .unwrap_or_else(|| panic!("no command in {stderr}"));
        let end = stderr[start..]
            .find("release --force stuck")
            .unwrap_or_else(|| panic!("no release --force in {stderr}"))
            + start
            + "release --force stuck".len();
        let command = &stderr[start..end];
        assert!(command.contains(&emu.url(query)), "{command}");
        let mut sh = clean_cmd("sh");
        sh.env("LOCKRUN_CLOUDSHELL_USER", USER)
            .env("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD)
            .env("LOCKRUN", BIN)
            .arg("-c")
            .arg(command.replacen("lockrun", "\"$LOCKRUN\"", 1));
        let out = run_timeout(sh, SOON);
        assert_eq!(code(out.status), 0, "{command}: {}", stderr_of(&out));
        assert!(emu.aliases().is_empty());
        statuses.push((status, stderr));
    }
    // Checked last: everything above is the backend's part, this the supervisor's.
    for (status, stderr) in statuses {
        assert_eq!(status, 74, "{stderr}");
    }
}

/// Item 9: a duration in the URL is bounded when it is parsed: a usage
/// error, never a panic in Duration arithmetic later.
#[test]
fn huge_durations_in_the_url_are_usage_errors() {
    for option in ["timeout", "first_poll", "max_poll", "check"] {
        for value in [
            "1e300",
            "1e19",
            "18446744073709551616",
            "99999999999999h",
            "inf",
            "-1",
        ] {
            let mut cmd = clean_cmd(BIN);
            cmd.env("LOCKRUN_CLOUDSHELL_USER", USER)
                .env("LOCKRUN_CLOUDSHELL_PASSWORD", PASSWORD)
                .arg("--backend")
                .arg(format!("cloudshell://127.0.0.1:1/r1?{option}={value}"))
                .args(["x", "--", "true"]);
            let out = run_timeout(cmd, SOON);
            let (status, _, stderr) = out_text(&out);
            assert_eq!(status, 64, "{option}={value}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{option}={value}: {stderr}");
            assert!(stderr.contains(option), "{option}={value}: {stderr}");
        }
    }
}

/// Issue 14, items 3 and 4 on CloudShell: a nested lockrun of the same
/// alias re-enters (proven by the owner attribute naming an ancestor), and
/// `acquire`/`release` keep and free an alias across processes.
#[test]
fn nested_lockruns_reenter_and_acquire_keeps_an_alias() {
    let emu = Emulator::start();
    let creds = format!(
        "LOCKRUN_CLOUDSHELL_USER={} LOCKRUN_CLOUDSHELL_PASSWORD={}",
        sh_quote(USER),
        sh_quote(PASSWORD)
    );
    let script = format!(
        "{creds} {b} -n x -- echo inner; echo inner=$?",
        b = sh_quote(BIN)
    );
    let out = run_timeout(emu.lockrun(OWNER, &["x", "--", "sh", "-c", &script]), SOON);
    let (status, stdout, stderr) = out_text(&out);
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, "inner\ninner=0\n", "{stderr}");
    assert!(
        emu.aliases().is_empty(),
        "released once, by the outer lockrun"
    );

    let mut job = Command::new("sleep");
    job.arg("300");
    let job = Proc::spawn(job, "job");
    let pid = job.pid().to_string();
    let out = run_timeout(
        emu.lockrun(OWNER, &["acquire", "--for-pid", &pid, "k"]),
        SOON,
    );
    assert_eq!(out_text(&out).0, 0, "{}", out_text(&out).2);
    assert_eq!(emu.aliases(), vec!["k".to_owned()]);
    let out = run_timeout(emu.lockrun(OWNER, &["-n", "k", "--", "true"]), SOON);
    assert_eq!(out_text(&out).0, 75);
    let out = run_timeout(
        emu.lockrun(OWNER, &["release", "--for-pid", &pid, "k"]),
        SOON,
    );
    assert_eq!(out_text(&out).0, 0, "{}", out_text(&out).2);
    assert!(emu.aliases().is_empty());
}
