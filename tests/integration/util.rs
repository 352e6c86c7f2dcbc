//! Shared test helpers: sandboxes, reaped processes, bounded waits.
//! No sleeps as synchronisation: waits poll a file, pipe or condition with a
//! deadline and fail the test when it passes.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: cargo's build of it, or the one named by
/// `LOCKRUN_TEST_BIN` when the tests were compiled (the static release
/// build, say: `LOCKRUN_TEST_BIN=$PWD/target/x86_64-unknown-linux-musl/release/lockrun`).
pub const BIN: &str = match option_env!("LOCKRUN_TEST_BIN") {
    Some(bin) => bin,
    None => env!("CARGO_BIN_EXE_lockrun"),
};

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

/// The state letter of a process (`R`, `S`, `T`, `Z`, …), from /proc.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// Is a process alive (and not a zombie)?
/// A signal mask from a /proc status file (`SigBlk:`, `SigIgn:`, ...), as bits.
pub fn status_mask(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map_or_else(
            || panic!("no {field} in {status}"),
            |v| u64::from_str_radix(v.trim(), 16).unwrap(),
        )
}

/// The bit of `signal` in a mask from [`status_mask`].
pub fn signal_bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

pub fn alive(pid: i32) -> bool {
    !matches!(process_state(pid), None | Some('Z' | 'X'))
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

/// A throw-away CA (`ca.pem`, `ca.key`) and a server certificate for
/// localhost and 127.0.0.1 signed by it (`server.pem`, `server.key`) in
/// `dir`, made with openssl; false (the caller skips its test, saying why)
/// when they cannot be made.
pub fn make_test_certificates(dir: &Path) -> bool {
    let d = sh_quote(&dir.display().to_string());
    let script = format!(
        "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=lockrun-test-ca && \
         openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost && \
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext"
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let out = run_timeout(cmd, SOON);
    if !out.status.success() {
        eprintln!(
            "skipping the TLS test: cannot make certificates: {}",
            stderr_of(&out)
        );
    }
    out.status.success()
}

/// Fail with an install hint when a program the tests need is missing.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is not installed: run scripts/test (it installs what the tests need) \
         or `apt-get install {package}`"
    );
}

/// The guardian of the lockrun `lockrun`: its child that is not `command`
/// (the command's pid, 0 before it started), waiting until it exists.
pub fn guardian_of(lockrun: i32, command: i32) -> i32 {
    let mut found = None;
    wait_until("the guardian to run", SOON, || {
        found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|&pid| {
                pid != command
                    && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                        stat.rsplit(')')
                            .next()
                            .and_then(|r| r.split_whitespace().nth(1))
                            == Some(lockrun.to_string().as_str())
                    })
            });
        found.is_some()
    });
    found.unwrap()
}

/// A tmux server of our own (its socket lives in the sandbox), with one
/// session running one command in a pane of a fixed size.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Start `command` (a shell command line) in a `width`×`height` pane.
    /// The pane stays after the command exits, so its last screen can be read.
    pub fn start(dir: &Path, width: u16, height: u16, command: &str) -> Tmux {
        require("tmux", "tmux");
        let socket = dir.join("tmux.sock");
        let conf = dir.join("tmux.conf");
        std::fs::write(&conf, "set -g remain-on-exit on\nset -g status off\n").unwrap();
        let mut tmux = Command::new("tmux");
        tmux.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .arg("-S")
            .arg(&socket)
            .arg("-f")
            .arg(&conf)
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(command);
        let out = run_timeout(tmux, SOON);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            stderr_of(&out)
        );
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket).args(args);
        let out = run_timeout(cmd, SOON);
        assert!(out.status.success(), "tmux {args:?}: {}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's rows, from the top of its history (tmux may push rows
    /// into history, e.g. when the pane's program exits) to the bottom of
    /// the screen, trailing blanks removed.
    pub fn screen(&self) -> Vec<String> {
        self.tmux(&["capture-pane", "-p", "-S", "-", "-t", "t"])
            .lines()
            .map(|row| row.trim_end().to_owned())
            .collect()
    }

    /// Copy everything the pane's program writes from now on into `file`.
    pub fn record(&self, file: &Path) {
        self.tmux(&[
            "pipe-pane",
            "-o",
            "-t",
            "t",
            &format!("cat >> '{}'", file.display()),
        ]);
    }

    /// Has the pane's program exited?
    pub fn exited(&self) -> bool {
        self.tmux(&["display", "-p", "-t", "t", "#{pane_dead}"])
            .trim()
            == "1"
    }

    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Poll the screen until `what` holds; panic with the last screen if not.
    pub fn wait_for_screen(
        &self,
        what: &str,
        mut condition: impl FnMut(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = std::time::Instant::now() + SOON;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{}",
                screen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

/// Quote for sh.
pub fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// How many sections a torture worker may run again after a timeout.
pub const TORTURE_RETRIES: u32 = 3;

/// The contention torture every backend must pass: `workers` shell loops
/// run at once, each running `sections` lockrun invocations (with
/// `lockrun_args` before the name `torture`) whose command is an unprotected
/// read–pause–write of a counter file: any overlap loses an increment.
/// Returns the final count and the `LOCKRUN_FENCE`s in the order the
/// critical sections ran (empty where the backend has no fence).
///
/// A server too slow to answer in time (a loaded test machine) makes lockrun
/// exit 69 without running the command, which is honest: such a section is
/// run again, at most [`TORTURE_RETRIES`] times per worker, so the count
/// still checks that no command ran against its exit code. Any other exit,
/// and a 69 for another reason, fails the worker.
pub fn contention_torture(
    dir: &Path,
    workers: usize,
    sections: usize,
    lockrun_args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (usize, Vec<u64>) {
    let counter = dir.join("torture-counter");
    let fences = dir.join("torture-fences");
    std::fs::write(&counter, "0\n").unwrap();
    std::fs::write(&fences, "").unwrap();
    let section = format!(
        "n=$(cat {c}); sleep 0.002; echo $((n + 1)) > {c}; echo \"${{LOCKRUN_FENCE:-}}\" >> {f}",
        c = counter.display(),
        f = fences.display()
    );
    let script = format!(
        "i=0; r=0; while [ $i -lt {sections} ]; do \
           \"$BIN\" \"$@\" torture -c \"$SECTION\" 2>\"$ERR\"; s=$?; cat \"$ERR\" >&2; \
           if [ $s -eq 0 ]; then i=$((i + 1)); \
           elif [ $s -eq 69 ] && [ $r -lt {TORTURE_RETRIES} ] && grep -Eq 'timed out|no answer within|did not answer within' \"$ERR\"; then r=$((r + 1)); echo 'torture: section run again after a timeout' >&2; \
           else exit $s; fi; \
         done"
    );
    let procs: Vec<Proc> = (0..workers)
        .map(|i| {
            let mut cmd = Command::new("sh");
            cmd.arg("-c").arg(&script).arg("worker").args(lockrun_args);
            cmd.env("BIN", BIN)
                .env("SECTION", &section)
                .env("ERR", dir.join(format!("torture-last-stderr.{i}")));
            for (key, value) in env {
                cmd.env(key, value);
            }
            // Kept, so that a failure says why (the waiting lines too).
            cmd.stderr(std::fs::File::create(dir.join(format!("torture-stderr.{i}"))).unwrap());
            Proc::spawn(cmd, &format!("torture worker {i}"))
        })
        .collect();
    let mut rerun = 0;
    for (i, mut proc) in procs.into_iter().enumerate() {
        let status = proc.wait_timeout(timeout);
        let stderr =
            std::fs::read_to_string(dir.join(format!("torture-stderr.{i}"))).unwrap_or_default();
        assert!(
            status.success(),
            "{} failed: {status:?}; its stderr:\n{stderr}",
            proc.name
        );
        rerun += stderr.matches("torture: section run again").count();
    }
    if rerun > 0 {
        // Shown with the test's output: a slow machine, or a slow path.
        eprintln!("torture: {rerun} sections were run again after a timeout");
    }
    let count = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let fences = std::fs::read_to_string(&fences)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| line.parse().unwrap())
        .collect();
    (count, fences)
}

/// A lockrun holding a lock until released: its command writes its pid (and
/// `LOCKRUN_FENCE`, if any) to a ready file, then blocks reading stdin, so
/// closing stdin ends it. Killed and reaped on drop, like every `Proc`.
pub struct Holder {
    pub proc: Proc,
    stdin: Option<std::process::ChildStdin>,
    /// Pid of the command lockrun runs.
    pub child_pid: i32,
    fence: Option<u64>,
}

impl Holder {
    /// `lockrun` is the invocation up to, not including, the lock name;
    /// `ready` a fresh path for the ready file.
    pub fn spawn(mut lockrun: Command, ready: &Path, name: &str) -> Holder {
        let _ = std::fs::remove_file(ready);
        let script = format!(
            "echo $$ ${{LOCKRUN_FENCE:-}} > {}; read line; exit 0",
            ready.display()
        );
        lockrun.args([name, "--", "sh", "-c", &script]);
        lockrun.stdin(Stdio::piped()).stderr(Stdio::piped());
        let mut proc = Proc::spawn(lockrun, &format!("holder of {name}"));
        let stdin = proc.child.stdin.take();
        let text = wait_for_content(ready);
        let mut words = text.split_whitespace();
        let child_pid = words.next().unwrap().parse().unwrap();
        let fence = words.next().map(|f| f.parse().unwrap());
        Holder {
            proc,
            stdin,
            child_pid,
            fence,
        }
    }

    /// The holder's `LOCKRUN_FENCE`.
    pub fn fence(&self) -> u64 {
        self.fence.expect("LOCKRUN_FENCE is set")
    }

    /// Let the command finish; lockrun's exit code.
    pub fn release(self) -> i32 {
        self.finish().0
    }

    /// Let the command finish; lockrun's exit code and stderr.
    pub fn finish(mut self) -> (i32, String) {
        drop(self.stdin.take());
        let (status, stderr) = self.proc.finish(SOON);
        (code(status), stderr)
    }

    /// Wait until lockrun exits by itself; its exit code and stderr.
    pub fn wait_exit(&mut self, timeout: Duration) -> (i32, String) {
        let (status, stderr) = self.proc.finish(timeout);
        (code(status), stderr)
    }
}
