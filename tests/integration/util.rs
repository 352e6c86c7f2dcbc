//! Shared test helpers: sandboxes, reaped processes, bounded waits.
//! No sleeps as synchronisation: waits poll a file, pipe or condition with a
//! deadline and fail the test when it passes.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_lockrun");

/// Generous bound for anything that should happen "at once".
pub const SOON: Duration = Duration::from_secs(20);

/// A private lock directory (file backend) plus scratch space.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn lock_dir(&self) -> PathBuf {
        let dir = self.path("locks");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub fn backend_url(&self) -> String {
        format!("file://{}", self.lock_dir().display())
    }

    pub fn lock_file(&self, name: &str) -> PathBuf {
        self.lock_dir().join(format!("{name}.lock"))
    }

    /// `lockrun --backend file:///…/locks ARGS…` with a clean environment.
    pub fn lockrun(&self, args: &[&str]) -> Command {
        let mut cmd = lockrun_cmd();
        cmd.arg("--backend").arg(self.backend_url()).args(args);
        cmd
    }

    /// Is the lock free right now? Probed with flock(2) from the test, released at once.
    pub fn lock_is_free(&self, name: &str) -> bool {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_file(name))
            .unwrap();
        file.try_lock().is_ok()
    }
}

/// The binary with no LOCKRUN_* variables inherited from the test runner.
pub fn lockrun_cmd() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LOCKRUN_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A child process that is killed and reaped when dropped, even when the
/// test panics.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(mut cmd: Command, name: &str) -> Self {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal).unwrap();
    }

    /// Wait for exit, at most `timeout`; panics (after killing) if it runs longer.
    pub fn wait_timeout(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait for exit and collect stderr (needs `Stdio::piped()` for stderr).
    pub fn finish(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let status = self.wait_timeout(timeout);
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr).unwrap();
        }
        (status, stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Run to completion with a deadline; returns the output.
pub fn run_timeout(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut proc = Proc::spawn(cmd, "command");
    let stdout = proc.child.stdout.take().unwrap();
    let stderr = proc.child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || read_all(stdout));
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let status = proc.wait_timeout(timeout);
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf);
    buf
}

/// Poll `condition` until true or panic after `timeout` naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn wait_for_file(path: &Path) {
    wait_until(&format!("{}", path.display()), SOON, || path.exists());
}

/// Wait until a file exists and has non-empty content; return it.
pub fn wait_for_content(path: &Path) -> String {
    let mut text = String::new();
    wait_until(&format!("content in {}", path.display()), SOON, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text.trim().to_owned()
}

/// Read lines from a pipe until one contains `needle` (readiness lines).
pub fn wait_for_line(reader: &mut BufReader<impl Read>, needle: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "stream ended before a line containing {needle:?}");
        if line.contains(needle) {
            return line;
        }
    }
}

pub fn code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Is a process alive (and not a zombie)?
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// A free TCP port on 127.0.0.1 (for servers the tests start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn touch(path: &Path) {
    File::create(path).unwrap();
}

/// A private tmux server with one session: a real pseudo-terminal for tests
/// of terminal behaviour (Ctrl-C, the waiting indicator). Killed on drop.
pub struct Tmux {
    socket: String,
    status: PathBuf,
}

impl Tmux {
    /// Start `command` (a shell string) in a detached session. The shell
    /// around it ignores SIGINT, as an interactive shell running a
    /// foreground job would, and records the command's exit status.
    pub fn start(command: &str) -> Tmux {
        let socket = format!("lockrun-test-{}-{}", std::process::id(), rand_suffix());
        let status = std::env::temp_dir().join(format!("{socket}.status"));
        let tmux = Tmux { socket, status };
        let wrapped = format!(
            "trap '' INT; {command}; echo $? > {}.tmp; mv {0}.tmp {0}; sleep 600",
            tmux.status.display()
        );
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "200",
            "-y",
            "50",
            "sh",
            "-c",
            &wrapped,
        ]);
        tmux
    }

    /// The command's exit status once it has exited.
    pub fn wait_for_exit(&self) -> i32 {
        wait_for_content(&self.status).parse().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (scripts/test installs it)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn send_keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "t", keys]);
    }

    /// The visible screen, one string per line.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    pub fn wait_for_screen(&self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let mut screen = String::new();
        wait_until(what, SOON, || {
            screen = self.screen();
            pred(&screen)
        });
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
        let _ = std::fs::remove_file(&self.status);
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
