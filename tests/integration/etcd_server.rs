//! An `etcd` of a test's own on two free loopback ports with a temporary
//! data dir; killed and reaped on drop.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::util::*;

pub struct EtcdServer {
    pub proc: Option<Proc>,
    pub client_port: u16,
    pub peer_port: u16,
    pub dir: tempfile::TempDir,
    pub tls: Option<Tls>,
    extra: Vec<String>,
}

/// Files of a throw-away CA and a server certificate for 127.0.0.1.
pub struct Tls {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl EtcdServer {
    pub fn start() -> EtcdServer {
        EtcdServer::start_with(None, &[])
    }

    pub fn start_with(tls: Option<Tls>, extra: &[&str]) -> EtcdServer {
        require("etcd", "etcd-server");
        let mut server = EtcdServer {
            proc: None,
            client_port: 0,
            peer_port: 0,
            dir: tempfile::tempdir().unwrap(),
            tls,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        for _ in 0..5 {
            server.client_port = free_port();
            server.peer_port = free_port();
            if server.client_port != server.peer_port && server.launch() {
                return server;
            }
        }
        panic!("etcd did not start on a free port");
    }

    /// A TLS-only server with a certificate from a CA the test makes;
    /// `None` (the test is skipped) without openssl.
    pub fn start_tls() -> Option<EtcdServer> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = format!(
            "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=lockrun-test-ca && \
             openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost && \
             printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext"
        );
        let out = run_timeout(crate::redis_server::sh(&script), SOON);
        if !out.status.success() {
            eprintln!(
                "skipping the TLS test: cannot make certificates (openssl): {}",
                stderr_of(&out)
            );
            return None;
        }
        let file = |name: &str| dir.path().join(name).display().to_string();
        let tls = Tls {
            ca: file("ca.pem"),
            cert: file("server.pem"),
            key: file("server.key"),
        };
        let server = EtcdServer::start_with(Some(tls), &[]);
        // Keep the certificates as long as the server.
        std::mem::forget(dir);
        Some(server)
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The backend URL for lockrun.
    pub fn url(&self) -> String {
        match &self.tls {
            Some(tls) => format!("etcds://{}?cacert={}", self.endpoint(), tls.ca),
            None => format!("etcd://{}", self.endpoint()),
        }
    }

    pub fn launch(&mut self) -> bool {
        let client = format!("{}://127.0.0.1:{}", self.scheme(), self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg("default")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("default={peer}"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join("etcd.log"))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            );
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key);
        }
        let mut proc = Proc::spawn(cmd, "etcd");
        let ready = (0..200).any(|_| {
            if proc.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if self.healthy() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
            false
        });
        if ready {
            self.proc = Some(proc);
        }
        ready
    }

    /// `etcdctl endpoint health` says yes.
    pub fn healthy(&self) -> bool {
        let out = run_timeout(
            {
                let mut cmd = self.ctl_command(&["endpoint", "health", "--command-timeout=1s"]);
                cmd.stderr(Stdio::piped());
                cmd
            },
            Duration::from_secs(5),
        );
        out.status.success()
    }

    /// `etcdctl` with this server's endpoint (API 3).
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3").arg("--endpoints").arg(format!(
            "{}://{}",
            self.scheme(),
            self.endpoint()
        ));
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert").arg(&tls.ca);
        }
        cmd.args(args);
        cmd
    }

    /// Run `etcdctl ARGS`; its stdout (panics on failure).
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = run_timeout(self.ctl_command(args), SOON);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            stderr_of(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Keys under `prefix`, one a line.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.ctl(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.proc.as_ref().unwrap().pid()
    }

    pub fn signal(&self, sig: Signal) {
        self.proc.as_ref().unwrap().signal(sig);
    }

    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal(Signal::SIGKILL);
            proc.wait_timeout(SOON);
        }
    }

    /// Kill and start again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.launch(), "etcd did not come back");
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(proc) = &self.proc {
            // A paused server must die too.
            proc.signal(Signal::SIGCONT);
        }
        self.kill();
    }
}

/// A cluster of etcd members of a test's own, each on two free loopback
/// ports with a temporary data dir; every member killed and reaped on drop.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    dir: tempfile::TempDir,
}

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub proc: Option<Proc>,
}

impl Member {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `etcdctl` against this member alone.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(format!("http://{}", self.endpoint()))
            .arg("--command-timeout=2s")
            .args(args);
        cmd
    }

    /// This member's `endpoint status`: (its member id, the leader's id).
    pub fn status(&self) -> Option<(u64, u64)> {
        let mut cmd = self.ctl_command(&["endpoint", "status", "-w", "json"]);
        cmd.stderr(Stdio::null());
        let out = run_timeout(cmd, Duration::from_secs(5));
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let header = &v[0]["Status"]["header"];
        Some((
            header["member_id"].as_u64()?,
            v[0]["Status"]["leader"].as_u64()?,
        ))
    }

    pub fn kill(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.signal(Signal::SIGKILL);
            proc.wait_timeout(SOON);
        }
    }
}

impl EtcdCluster {
    /// `n` members started at once (they elect a leader together); waits
    /// until every member knows the same leader.
    pub fn start(n: usize) -> EtcdCluster {
        require("etcd", "etcd-server");
        let dir = tempfile::tempdir().unwrap();
        let mut members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                proc: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            let client = format!("http://127.0.0.1:{}", m.client_port);
            let peer = format!("http://127.0.0.1:{}", m.peer_port);
            let mut cmd = Command::new("etcd");
            cmd.arg("--name")
                .arg(&m.name)
                .arg("--data-dir")
                .arg(dir.path().join(&m.name))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "lockrun-test"])
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join(format!("{}.log", m.name)))
                        .map_or_else(|_| Stdio::null(), Stdio::from),
                );
            m.proc = Some(Proc::spawn(cmd, &format!("etcd {}", m.name)));
        }
        let cluster = EtcdCluster { members, dir };
        wait_until("the etcd cluster to elect a leader", SOON, || {
            cluster.leader().is_some()
        });
        cluster
    }

    /// The index of the leader, when the live members agree on one.
    pub fn leader(&self) -> Option<usize> {
        let mut leader = None;
        let mut ids = Vec::new();
        for m in self.members.iter().filter(|m| m.proc.is_some()) {
            let (id, lead) = m.status()?;
            if lead == 0 || leader.is_some_and(|l| l != lead) {
                return None;
            }
            leader = Some(lead);
            ids.push(id);
        }
        let lead = leader?;
        self.members
            .iter()
            .filter(|m| m.proc.is_some())
            .zip(&ids)
            .find(|(_, id)| **id == lead)
            .map(|(m, _)| self.members.iter().position(|x| x.name == m.name).unwrap())
    }

    /// The backend URL with every member, `first` first.
    pub fn url(&self, first: usize) -> String {
        let mut endpoints = vec![self.members[first].endpoint()];
        endpoints.extend(
            self.members
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != first)
                .map(|(_, m)| m.endpoint()),
        );
        format!("etcd://{}", endpoints.join(","))
    }

    /// A live member other than `not`.
    pub fn other(&self, not: usize) -> &Member {
        self.members
            .iter()
            .enumerate()
            .find(|(i, m)| *i != not && m.proc.is_some())
            .map(|(_, m)| m)
            .unwrap()
    }

    pub fn log_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
    }
}
