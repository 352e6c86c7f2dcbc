//! The bad-input table: every bad name, URL, duration and missing piece is
//! refused with its documented exit code and exactly one stderr line that
//! starts with `lockrun:` and says what to do next; the command provably did
//! not run (it would have created a file); and no secret is ever echoed.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use crate::util::{SOON, Sandbox, code, lockrun_cmd, run_timeout};

struct Case {
    what: &'static str,
    /// Arguments before the command; `CMD` is replaced by a command that
    /// would create the marker file.
    args: Vec<OsString>,
    env: Vec<(&'static str, &'static str)>,
    code: i32,
    /// The message must contain this (the hint at what to do next).
    hint: &'static str,
}

const CMD: &str = "\u{0}CMD";

fn case(what: &'static str, args: &[&str], code: i32, hint: &'static str) -> Case {
    Case {
        what,
        args: args.iter().map(OsString::from).collect(),
        env: Vec::new(),
        code,
        hint,
    }
}

fn with_env(mut case: Case, env: &[(&'static str, &'static str)]) -> Case {
    case.env = env.to_vec();
    case
}

fn with_args(what: &'static str, args: Vec<OsString>, code: i32, hint: &'static str) -> Case {
    Case {
        what,
        args,
        env: Vec::new(),
        code,
        hint,
    }
}

const SECRET: &str = "hunter2-s3cret";

fn table() -> Vec<Case> {
    let long_name = "x".repeat(201);
    let long_name: &'static str = Box::leak(long_name.into_boxed_str());
    let cmd_then = |name: OsString| vec![name, "--".into(), CMD.into()];
    vec![
        // Names.
        case("empty name", &["", "--", CMD], 64, "give a NAME"),
        case(
            "name /",
            &["/", "--", CMD],
            64,
            "use only A-Z a-z 0-9 . _ -",
        ),
        case(
            "name ..",
            &["..", "--", CMD],
            64,
            "use only A-Z a-z 0-9 . _ -",
        ),
        case(
            "name starting with a dot",
            &[".hidden", "--", CMD],
            64,
            "must not start with '.'",
        ),
        case(
            "name with a path",
            &["a/b", "--", CMD],
            64,
            "use only A-Z a-z 0-9 . _ -",
        ),
        case(
            "name with a control character",
            &["a\u{1}b", "--", CMD],
            64,
            "use only",
        ),
        case(
            "name with a space",
            &["a b", "--", CMD],
            64,
            "use only A-Z a-z 0-9 . _ -",
        ),
        case(
            "name with a slot suffix",
            &["build@2", "--", CMD],
            64,
            "use only",
        ),
        case(
            "201-byte name",
            &[long_name, "--", CMD],
            64,
            "use a shorter NAME",
        ),
        with_args(
            "non-UTF-8 name",
            cmd_then(OsString::from_vec(b"caf\xe9".to_vec())),
            64,
            "not valid UTF-8",
        ),
        case("no name at all", &[], 64, "NAME -- COMMAND"),
        // Backend URLs.
        case(
            "URL without a scheme",
            &["-b", "localhost", "n", "--", CMD],
            64,
            "use file:///DIR",
        ),
        case(
            "unknown scheme",
            &["-b", "ftp://host/x", "n", "--", CMD],
            64,
            "use file:///DIR",
        ),
        case(
            "relative file URL",
            &["-b", "file:locks", "n", "--", CMD],
            64,
            "three slashes",
        ),
        case(
            "file URL with a host",
            &["-b", "file://locks", "n", "--", CMD],
            64,
            "three slashes",
        ),
        case(
            "redis URL without a host",
            &["-b", "redis://", "n", "--", CMD],
            64,
            "redis://",
        ),
        case(
            "redis URL with a bad port and a password",
            &[
                "-b",
                "redis://u:hunter2-s3cret@localhost:99999",
                "n",
                "--",
                CMD,
            ],
            64,
            "redis://",
        ),
        case(
            "--ttl longer than the redis server's max-ttl (refused before connecting)",
            &[
                "-b",
                "redis://127.0.0.1:1/0?max-ttl=5s",
                "--ttl",
                "10s",
                "n",
                "--",
                CMD,
            ],
            64,
            "max-ttl",
        ),
        case(
            "redis max-ttl out of range",
            &["-b", "redis://127.0.0.1:1/0?max-ttl=1e19", "n", "--", CMD],
            64,
            "max-ttl",
        ),
        case(
            "redis server that is not there (password in the URL)",
            &["-b", "redis://u:hunter2-s3cret@127.0.0.1:1", "n", "--", CMD],
            69,
            "redis",
        ),
        with_env(
            case(
                "redis server that is not there (password in the environment)",
                &["-b", "redis://127.0.0.1:1", "n", "--", CMD],
                69,
                "redis",
            ),
            &[("LOCKRUN_REDIS_PASSWORD", SECRET)],
        ),
        case(
            "cloudshell URL without credentials",
            &["-b", "cloudshell://127.0.0.1:1/res-1", "n", "--", CMD],
            64,
            "LOCKRUN_CLOUDSHELL_",
        ),
        case(
            "a URL with a password where the NAME goes",
            &["redis://u:hunter2-s3cret@h", "--", CMD],
            64,
            "use only",
        ),
        // Durations.
        case(
            "--wait that is not a duration",
            &["-w", "soon", "n", "--", CMD],
            64,
            "e.g. 30s, 5m",
        ),
        case(
            "negative --wait",
            &["-w", "-5", "n", "--", CMD],
            64,
            "must not be negative",
        ),
        case("empty --wait", &["-w", "", "n", "--", CMD], 64, "e.g. 30s"),
        case(
            "huge --wait",
            &["-w", "1e300", "n", "--", CMD],
            64,
            "e.g. 30s",
        ),
        case(
            "--ttl below a second",
            &["--ttl", "10ms", "n", "--", CMD],
            64,
            "at least 1s",
        ),
        case(
            "bad --kill-after",
            &["--kill-after", "x", "n", "--", CMD],
            64,
            "e.g. 30s",
        ),
        case(
            "bad --max-time",
            &["--max-time", "1y2", "n", "--", CMD],
            64,
            "e.g. 30s",
        ),
        with_env(
            case(
                "bad LOCKRUN_WAIT",
                &["n", "--", CMD],
                64,
                "comes from LOCKRUN_WAIT",
            ),
            &[("LOCKRUN_WAIT", "forever")],
        ),
        // Missing or malformed command.
        case("missing command", &["n"], 64, "lockrun n -- COMMAND"),
        case("nothing after --", &["n", "--"], 64, "lockrun n -- COMMAND"),
        case("empty command", &["n", "--", ""], 64, "after '--'"),
        case(
            "-c without a string",
            &["n", "-c"],
            64,
            "see 'lockrun --help'",
        ),
        case(
            "-c and a command",
            &["n", "-c", "true", "--", CMD],
            64,
            "cannot be used with",
        ),
        case(
            "command without --",
            &["n", "touch", "x"],
            64,
            "the command goes after '--'",
        ),
        // Other option errors.
        case(
            "unknown option",
            &["--frobnicate", "n", "--", CMD],
            64,
            "see 'lockrun --help'",
        ),
        case(
            "misspelt option",
            &["--wiat", "5", "n", "--", CMD],
            64,
            "similar argument exists: '--wait'",
        ),
        case(
            "-E out of range",
            &["-E", "300", "n", "--", CMD],
            64,
            "0..=255",
        ),
        case(
            "--slots 0",
            &["--slots", "0", "n", "--", CMD],
            64,
            "1..=1000",
        ),
        // Subcommands.
        // Without --force, release ends only a keeper of this job's: none
        // here, so nothing is released (exit 1), and it names --force.
        case("release without --force", &["release", "n"], 1, "--force"),
        case(
            "status without a name",
            &["status"],
            64,
            "see 'lockrun status --help'",
        ),
        case("status with a bad name", &["status", "a/b"], 64, "use only"),
        case(
            "list with an extra word",
            &["list", "n"],
            64,
            "see 'lockrun list --help'",
        ),
        case(
            "run without a command",
            &["run", "n"],
            64,
            "lockrun n -- COMMAND",
        ),
    ]
}

#[test]
fn bad_input_is_refused_with_one_line_and_the_command_never_runs() {
    let mut failures = Vec::new();
    for case in table() {
        let sandbox = Sandbox::new();
        let marker = sandbox.path("ran");
        let touch: OsString = format!("touch {}", marker.display()).into();
        let args: Vec<OsString> = case
            .args
            .iter()
            .flat_map(|arg| {
                if arg == CMD {
                    vec!["sh".into(), "-c".into(), touch.clone()]
                } else {
                    vec![arg.clone()]
                }
            })
            .collect();
        let mut cmd = lockrun_cmd();
        // A private lock directory unless the case names its own backend.
        cmd.env("LOCKRUN_BACKEND", sandbox.backend_url());
        cmd.args(&args);
        for (key, value) in &case.env {
            cmd.env(key, value);
        }
        let out = run_timeout(cmd, SOON);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut problems = Vec::new();
        if code(out.status) != case.code {
            problems.push(format!(
                "exit {} instead of {}",
                code(out.status),
                case.code
            ));
        }
        if stderr.lines().count() != 1 || !stderr.ends_with('\n') {
            problems.push("not exactly one line on stderr".to_owned());
        }
        if !stderr.starts_with("lockrun: ") {
            problems.push("does not start with 'lockrun: '".to_owned());
        }
        if !stderr.contains(case.hint) {
            problems.push(format!("does not say {:?}", case.hint));
        }
        if stderr.contains(SECRET) {
            problems.push("leaks the secret".to_owned());
        }
        if !out.stdout.is_empty() {
            problems.push("wrote to stdout".to_owned());
        }
        if marker.exists() {
            problems.push("THE COMMAND RAN".to_owned());
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {stderr:?}",
                case.what,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "bad input handled badly:\n{}",
        failures.join("\n")
    );
}

#[test]
fn help_and_version_are_not_errors() {
    for flag in ["-h", "--help", "-V", "--version"] {
        let mut cmd = lockrun_cmd();
        cmd.arg(flag);
        let out = run_timeout(cmd, SOON);
        assert_eq!(code(out.status), 0, "{flag}");
        assert!(out.stderr.is_empty(), "{flag} wrote to stderr");
        assert!(!out.stdout.is_empty(), "{flag} wrote nothing");
    }
}

/// Durations near the limits are refused when parsed (one line, 64), never
/// left to overflow later.
#[test]
fn huge_durations_are_usage_errors_not_panics() {
    for args in [
        &["--kill-after", "1e19", "n", "--", "true"][..],
        &["-w", "1e19", "n", "--", "true"],
        &["--ttl", "1e19", "n", "--", "true"],
        &["--ttl", "25h", "n", "--", "true"],
        &["--max-time", "18446744073709551615", "n", "--", "true"],
        &["--wait", "300000000000y", "n", "--", "true"],
    ] {
        let out = run_timeout(
            {
                let mut cmd = lockrun_cmd();
                cmd.args(args);
                cmd
            },
            SOON,
        );
        let err = crate::util::stderr_of(&out);
        assert_eq!(crate::util::code(out.status), 64, "{args:?}: {err}");
        assert!(
            err.starts_with("lockrun: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

/// Secrets are kept out of messages where they are written, not by
/// replacing their values anywhere in the text: a password that is also a
/// plain word ("held") leaves that word alone.
#[test]
fn a_password_that_is_a_plain_word_does_not_mangle_messages() {
    let sandbox = Sandbox::new();
    let ready = sandbox.path("ready");
    let mut holder = sandbox.lockrun(&[
        "plain",
        "--",
        "sh",
        "-c",
        &format!("touch {}; sleep 30", ready.display()),
    ]);
    holder.stdin(std::process::Stdio::null());
    let _holder = crate::util::Proc::spawn(holder, "holder");
    crate::util::wait_for_file(&ready);

    let mut cmd = sandbox.lockrun(&["release", "--force", "plain"]);
    cmd.env("LOCKRUN_REDIS_PASSWORD", "held")
        .env("LOCKRUN_CLOUDSHELL_PASSWORD", "lock")
        .env("LOCKRUN_CLOUDSHELL_TOKEN", "process");
    let out = run_timeout(cmd, SOON);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("plain is held by pid") && stderr.contains("stop that process"),
        "{stderr}"
    );
    assert!(!stderr.contains("***"), "{stderr}");
}
