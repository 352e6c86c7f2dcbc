//! The waiting indicator, seen in a real pseudo-terminal: lockrun runs in a
//! private tmux server, and the tests read the screen (capture-pane) and the
//! raw bytes the program wrote (pipe-pane).

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

use crate::util::{
    BIN, Proc, SOON, Sandbox, Tmux, lockrun_cmd, run_timeout, sh_quote, stderr_of, wait_for_file,
    wait_until,
};

/// A lockrun holding `name` until the test writes a line to its stdin.
/// Its child writes `ready` once it runs.
struct Holder {
    proc: Proc,
}

impl Holder {
    fn start(sandbox: &Sandbox, name: &str, script: &str) -> Holder {
        let ready = sandbox.path("ready");
        let mut cmd = sandbox.lockrun(&[
            name,
            "--",
            "sh",
            "-c",
            &format!("touch {}; {script}", sh_quote(&ready.display().to_string())),
        ]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn(cmd, "holder");
        wait_for_file(&ready);
        Holder { proc }
    }

    fn pid(&self) -> i32 {
        self.proc.pid()
    }

    fn release(&mut self) {
        let stdin = self.proc.child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
        self.proc.wait_timeout(SOON);
    }
}

fn host() -> String {
    lockrun::lock::HolderInfo::for_this_process("").host
}

/// A shell command line that waits for the file `go`, then runs lockrun
/// with `args`, so that recording starts before lockrun writes anything.
fn gated_lockrun(sandbox: &Sandbox, args: &str) -> String {
    let go = sandbox.path("go");
    format!(
        "while [ ! -e {go} ]; do sleep 0.01; done; exec {bin} --backend {url} {args}",
        go = sh_quote(&go.display().to_string()),
        bin = sh_quote(BIN),
        url = sh_quote(&sandbox.backend_url()),
    )
}

fn start_gated(sandbox: &Sandbox, width: u16, args: &str) -> (Tmux, PathBuf) {
    let tmux = Tmux::start(sandbox.dir.path(), width, 12, &gated_lockrun(sandbox, args));
    let raw = sandbox.path("raw");
    std::fs::write(&raw, "").unwrap();
    tmux.record(&raw);
    std::fs::write(sandbox.path("go"), "").unwrap();
    (tmux, raw)
}

#[test]
fn waiting_line_updates_in_place_and_is_cleared_before_the_command_runs() {
    let sandbox = Sandbox::new();
    let mut holder = Holder::start(&sandbox, "tty-lock", "read line");
    let done = sandbox.path("done");
    let (tmux, raw) = start_gated(
        &sandbox,
        160,
        &format!(
            "tty-lock -- sh -c 'echo CHILD-OUTPUT; touch {}'",
            done.display()
        ),
    );

    let expected_start = "lockrun: waited ";
    let holder_part = format!("for tty-lock; held by {} pid {} for ", host(), holder.pid());
    // The first drawing says "waited 0s"; seeing a later value proves it redraws.
    let screen = tmux.wait_for_screen("the waiting line to show a wait of 1s or more", |screen| {
        screen.iter().any(|row| {
            row.starts_with(expected_start)
                && row.contains(&holder_part)
                && !row.starts_with("lockrun: waited 0s")
        })
    });
    let rows: Vec<&String> = screen.iter().filter(|row| !row.is_empty()).collect();
    assert_eq!(
        rows.len(),
        1,
        "exactly one line while waiting:\n{}",
        screen.join("\n")
    );
    let line = rows[0];
    assert!(
        line.contains(" (sh -c touch "),
        "holder command missing: {line}"
    );
    assert!(
        line.ends_with("; read line)"),
        "holder command missing: {line}"
    );

    holder.release();
    wait_for_file(&done);
    let screen = tmux.wait_for_screen("the command's output", |screen| {
        screen.iter().any(|row| row.contains("CHILD-OUTPUT"))
    });
    // Cleared, not scrolled away: the command's output took the line over.
    let rows: Vec<&String> = screen.iter().filter(|row| !row.is_empty()).collect();
    assert_eq!(rows[0], "CHILD-OUTPUT", "screen:\n{}", screen.join("\n"));
    assert!(
        !screen.iter().any(|row| row.contains("waited")),
        "the waiting line was left on screen:\n{}",
        screen.join("\n")
    );

    // And in the bytes lockrun wrote: the last drawing is erased (\r, erase
    // line) before the command's first byte.
    let bytes = std::fs::read(&raw).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let child_at = text.find("CHILD-OUTPUT").expect("child output recorded");
    let last_draw = text[..child_at]
        .rfind("lockrun: waited")
        .expect("waiting line recorded");
    let erase = text[last_draw..child_at]
        .rfind("\r\x1b[2K")
        .map(|i| i + last_draw);
    assert!(
        erase.is_some(),
        "no erase between the last drawing and the child's output: {text:?}"
    );
    assert!(
        !text[..child_at].contains('\n'),
        "the waiting line must never start a new line: {text:?}"
    );
}

#[test]
fn waiting_line_fits_a_narrow_terminal() {
    let sandbox = Sandbox::new();
    let long = "x".repeat(150);
    let mut holder = Holder::start(&sandbox, "narrow", &format!("read line # {long}"));
    let (tmux, _raw) = start_gated(&sandbox, 90, "narrow -- true");
    let screen = tmux.wait_for_screen("the waiting line", |screen| {
        screen.iter().any(|row| row.starts_with("lockrun: waited "))
    });
    let rows: Vec<&String> = screen.iter().filter(|row| !row.is_empty()).collect();
    assert_eq!(rows.len(), 1, "one row only:\n{}", screen.join("\n"));
    assert!(
        rows[0].chars().count() < 90,
        "wider than the terminal: {:?}",
        rows[0]
    );
    if host().len() < 20 {
        assert!(
            rows[0].contains(&format!("pid {} for ", holder.pid())),
            "{}",
            rows[0]
        );
        assert!(
            rows[0].ends_with("...)"),
            "the command is shortened, not the times: {}",
            rows[0]
        );
    }
    holder.release();
}

#[test]
fn quiet_draws_nothing_and_stderr_off_a_terminal_gets_plain_lines() {
    let sandbox = Sandbox::new();
    let mut holder = Holder::start(&sandbox, "quiet-lock", "read line");

    // -q on a terminal: nothing at all, not even the busy message (as
    // flock -n); the exit code says it.
    let (tmux, raw) = start_gated(&sandbox, 120, "-q -w 1500ms quiet-lock -- true");
    wait_until("lockrun to give up", SOON, || tmux.exited());
    drop(tmux);
    let bytes = String::from_utf8_lossy(&std::fs::read(&raw).unwrap()).into_owned();
    assert!(
        !bytes.contains("lockrun") && !bytes.contains('\x1b'),
        "output despite -q: {bytes:?}"
    );

    // stdin and stdout on a terminal but stderr in a file: nothing drawn,
    // but the CI-log line when the wait starts, then the busy line.
    let sandbox2 = Sandbox::new();
    let err = sandbox2.path("stderr");
    let command = format!(
        "{} --backend {} -w 1500ms quiet-lock -- true 2>{}",
        sh_quote(BIN),
        sh_quote(&sandbox.backend_url()),
        sh_quote(&err.display().to_string())
    );
    let tmux = Tmux::start(sandbox2.dir.path(), 120, 12, &command);
    wait_until("lockrun to give up", SOON, || {
        std::fs::read_to_string(&err).is_ok_and(|t| t.contains(" is held by ") && t.ends_with('\n'))
    });
    drop(tmux);
    let text = std::fs::read_to_string(&err).unwrap();
    assert_plain_wait_then_busy(&text);

    // Pipes (cron, CI): the same single line.
    let out = run_timeout(
        {
            let mut cmd = lockrun_cmd();
            cmd.args([
                "--backend",
                &sandbox.backend_url(),
                "-w",
                "1500ms",
                "quiet-lock",
                "--",
                "true",
            ]);
            cmd
        },
        SOON,
    );
    assert_eq!(crate::util::code(out.status), 75);
    assert_plain_wait_then_busy(&stderr_of(&out));
    holder.release();
}

/// Off a terminal: "waiting for …" once (the wait is shorter than the
/// minute of the "still waiting" lines), then the busy line; no redraws.
fn assert_plain_wait_then_busy(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    assert!(
        lines[0].starts_with("lockrun: waiting for quiet-lock, held by "),
        "{text:?}"
    );
    assert!(
        lines[1].starts_with("lockrun: quiet-lock is held by "),
        "{text:?}"
    );
    assert!(
        !text.contains("waited") && !text.contains('\r') && !text.contains('\x1b'),
        "{text:?}"
    );
}
