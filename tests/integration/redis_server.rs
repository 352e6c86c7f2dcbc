//! A `redis-server` of a test's own on a free loopback port, no
//! persistence; killed and reaped on drop. Shared by the Redis and fault tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::util::*;

/// The uptime `start` waits for: the Redis tests' 3 s `--ttl`.
const DEFAULT_SETTLE_MS: u64 = 3000;

/// A `redis-server` of our own; killed and reaped on drop.
pub struct RedisServer {
    pub proc: Option<Proc>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    /// Uptime to wait for before a test starts (the restart guard).
    settle_ms: u64,
    password: Option<String>,
    /// CA of the server's certificate when it speaks TLS only.
    pub tls_ca: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[], None)
    }

    pub fn start_with(args: &[&str], password: Option<&str>) -> RedisServer {
        let mut server = RedisServer {
            proc: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            settle_ms: DEFAULT_SETTLE_MS,
            password: password.map(str::to_owned),
            tls_ca: None,
        };
        server.start_on_free_port();
        server
    }

    /// A TLS-only server with a certificate for localhost/127.0.0.1 from a
    /// CA of its own; `None` (the test is skipped) without openssl.
    pub fn start_tls() -> Option<RedisServer> {
        let dir = tempfile::tempdir().unwrap();
        if !make_test_certificates(dir.path()) {
            return None;
        }
        let file = |name: &str| dir.path().join(name).display().to_string();
        let mut server = RedisServer {
            proc: None,
            port: 0,
            args: vec![
                "--tls-cert-file".into(),
                file("server.pem"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.pem"),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
            settle_ms: DEFAULT_SETTLE_MS,
            password: None,
            tls_ca: Some(dir.path().join("ca.pem")),
            dir,
        };
        server.start_on_free_port();
        Some(server)
    }

    pub fn start_on_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            if self.launch() {
                self.settle();
                return;
            }
        }
        panic!("could not start redis-server on a free port");
    }

    /// Spawn on `self.port`; false if it exited (port taken) before answering.
    pub fn launch(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        if self.tls_ca.is_some() {
            cmd.args(["--port", "0", "--tls-port", &port]);
        } else {
            cmd.args(["--port", &port]);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .arg("--unixsocket")
            .arg(self.own_socket())
            .args(["--unixsocketperm", "700"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join("redis.log"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            cmd.args(["--requirepass", password]);
        }
        let mut proc = Proc::spawn(cmd, "redis-server");
        let deadline = Instant::now() + SOON;
        loop {
            if let Ok(Some(_)) = proc.child.try_wait() {
                return false;
            }
            // Over its own socket: on 127.0.0.1:PORT another test's server,
            // which took the port first, would answer (this one then exits).
            let ready = if self.tls_ca.is_some() {
                self.answers_ping()
            } else {
                self.answers_ping_on_own_socket()
            };
            if ready {
                self.proc = Some(proc);
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A fresh server grants no lock until it has been up for the TTL (the
    /// backend's restart guard): wait that out once, so tests start at once.
    pub fn settle(&self) {
        let deadline = Instant::now() + SOON;
        while self
            .info_field("uptime_in_seconds")
            .parse::<u64>()
            .unwrap_or(0)
            * 1000
            // INFO's whole seconds may run one ahead, and a grant takes one
            // off for that.
            < self.settle_ms + 1000
        {
            assert!(
                Instant::now() < deadline,
                "redis-server uptime did not grow"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn own_socket(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn answers_ping_on_own_socket(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.own_socket()).is_ok_and(|stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            pongs(stream)
        })
    }

    pub fn answers_ping(&self) -> bool {
        if self.tls_ca.is_some() {
            let out = run_timeout(self.cli_command(&["PING"]), SOON);
            return String::from_utf8_lossy(&out.stdout).contains("PONG");
        }
        TcpStream::connect(("127.0.0.1", self.port)).is_ok_and(|stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            pongs(stream)
        })
    }

    /// With `max-ttl` = the settle time: the restart guard a fresh server
    /// applies is then what `settle` waited out.
    pub fn url(&self) -> String {
        format!(
            "redis://127.0.0.1:{}/0?max-ttl={}ms",
            self.port, self.settle_ms
        )
    }

    /// `redis-cli` against this server (authenticated); its stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run_timeout(self.cli_command(args), SOON);
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            stderr_of(&out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(ca) = &self.tls_ca {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        cmd.args(args);
        if let Some(password) = &self.password {
            cmd.env("REDISCLI_AUTH", password);
        }
        cmd
    }

    pub fn info_field(&self, field: &str) -> String {
        let info = self.cli(&["INFO", "server"]);
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Kill it (no shutdown, no save) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal(Signal::SIGKILL);
            proc.wait_timeout(SOON);
        }
    }

    /// Start again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + SOON;
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Block until a CLIENT PAUSE is over (PING waits behind it).
    pub fn wait_unpaused(&self) {
        self.cli(&["PING"]);
    }

    /// Total calls of the given commands since the server started.
    pub fn calls(&self, commands: &[&str]) -> u64 {
        self.cli(&["INFO", "commandstats"])
            .lines()
            .filter_map(|line| {
                let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                commands.contains(&name).then_some(())?;
                stats
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("calls="))?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// Clients blocked in BLPOP (waiters asleep on a wake list).
    pub fn blocked_clients(&self) -> u64 {
        self.cli(&["INFO", "clients"])
            .lines()
            .find_map(|line| line.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn wait_for_blocked(&self, n: u64) {
        wait_until(&format!("{n} waiters blocked"), SOON, || {
            self.blocked_clients() == n
        });
    }

    /// `KEYS pattern`, sorted, once the wake lists (which live for 2s after
    /// the last release) have expired: what is left for good.
    pub fn lasting_keys(&self, pattern: &str) -> String {
        wait_until("the wake lists to expire", SOON, || {
            !self.cli(&["KEYS", pattern]).contains(":wake")
        });
        let mut keys: Vec<String> = self
            .cli(&["KEYS", pattern])
            .lines()
            .map(str::to_owned)
            .collect();
        keys.sort();
        keys.join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl RedisServer {
    /// A plain server, settled for a restart guard of `ttl_ms` (the
    /// `?max-ttl=` the test puts in its URL), not the default 3 s.
    pub fn start_for_ttl(ttl_ms: u64) -> RedisServer {
        let mut server = RedisServer {
            proc: None,
            port: 0,
            dir: tempfile::tempdir().unwrap(),
            args: Vec::new(),
            settle_ms: ttl_ms,
            password: None,
            tls_ca: None,
        };
        server.start_on_free_port();
        server
    }

    /// The server's pid (for SIGSTOP / SIGKILL faults).
    pub fn pid(&self) -> i32 {
        self.proc.as_ref().expect("redis-server runs").pid()
    }
}

/// `sh -c SCRIPT` without LOCKRUN_* from the test runner.
pub fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOCKRUN_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Does a server answer PING on this connection (or ask for a password)?
fn pongs(mut stream: impl std::io::Read + Write) -> bool {
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let _ = BufReader::new(stream).read_line(&mut line);
    line.starts_with("+PONG") || line.starts_with("-NOAUTH")
}
