//! The checked-in man page and completions are exactly what the binary
//! generates from the clap definition, the man page renders cleanly and
//! covers what issue 5 asks for, and `--help`/`--version` say what they must.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

use crate::util::require;
use crate::util::{BIN, SOON, run_timeout, stderr_of};

/// (`--generate` value, checked-in file): keep in step with scripts/generate.
const GENERATED: &[(&str, &str)] = &[
    ("man", "man/lockrun.1"),
    ("bash", "completions/lockrun.bash"),
    ("zsh", "completions/_lockrun"),
    ("fish", "completions/lockrun.fish"),
    ("elvish", "completions/lockrun.elv"),
    ("powershell", "completions/_lockrun.ps1"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(what: &str) -> Vec<u8> {
    let mut cmd = Command::new(BIN);
    cmd.args(["--generate", what]);
    let out = run_timeout(cmd, SOON);
    assert!(
        out.status.success(),
        "lockrun --generate {what}: {}",
        stderr_of(&out)
    );
    assert!(
        out.stderr.is_empty(),
        "lockrun --generate {what} wrote to stderr"
    );
    out.stdout
}

#[test]
fn checked_in_files_are_what_the_binary_generates() {
    let mut stale = Vec::new();
    for (what, file) in GENERATED {
        let fresh = generate(what);
        assert!(!fresh.is_empty(), "--generate {what} wrote nothing");
        if std::fs::read(root().join(file)).ok() != Some(fresh) {
            stale.push(*file);
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {}. The command line or man/lockrun.1.template changed; run scripts/generate and commit the result.",
        stale.join(", ")
    );
    let script = std::fs::read_to_string(root().join("scripts/generate")).unwrap();
    for (what, file) in GENERATED {
        assert!(
            script.contains(&format!("generate {what} {file}")),
            "scripts/generate does not write {file}"
        );
    }
}

#[test]
fn generate_rejects_unknown_targets() {
    for args in [
        &["--generate"][..],
        &["--generate", "tcsh"],
        &["--generate", "man", "extra"],
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(args);
        let out = run_timeout(cmd, SOON);
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = stderr_of(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("lockrun: usage: lockrun --generate man|bash|"),
            "{err}"
        );
    }
}

#[test]
fn man_page_renders_without_warnings() {
    require("groff", "groff");
    let page = root().join("man/lockrun.1");
    let out = run_timeout(
        {
            let mut cmd = Command::new("groff");
            cmd.args(["-man", "-Tutf8", "-ww", "-z"]).arg(&page);
            cmd
        },
        SOON,
    );
    assert!(out.status.success(), "groff failed: {}", stderr_of(&out));
    assert_eq!(stderr_of(&out), "", "groff warnings in man/lockrun.1");
    if Path::new("/usr/bin/man").exists() {
        let mut cmd = Command::new("man");
        cmd.env("MANWIDTH", "80")
            .args(["--warnings", "-l"])
            .arg(&page);
        let out = run_timeout(cmd, SOON);
        assert!(out.status.success(), "man -l failed: {}", stderr_of(&out));
        assert_eq!(
            stderr_of(&out),
            "",
            "man --warnings -l man/lockrun.1 is not clean"
        );
    }
}

/// The page as plain text: no hyphenation, no justification breaks inside
/// words, no bold or underline.
fn man_text() -> String {
    require("groff", "groff");
    let mut cmd = Command::new("groff");
    cmd.args(["-man", "-Tutf8", "-rHY=0", "-rLL=400n", "-P-cbou"])
        .arg(root().join("man/lockrun.1"));
    let out = run_timeout(cmd, SOON);
    assert!(out.status.success(), "groff: {}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn man_page_covers_options_environment_exit_codes_and_more() {
    let text = man_text();
    let missing = |needle: &str| !text.contains(needle);

    let cli = lockrun::cli::Cli::command();
    let mut needles: Vec<String> = Vec::new();
    for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                needles.push(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                needles.push(format!("-{short}"));
            }
            if let Some(env) = arg.get_env() {
                needles.push(env.to_string_lossy().into_owned());
            }
        }
        needles.push(format!("lockrun {}", cmd.get_name()).replace("lockrun lockrun", "lockrun"));
    }
    for (code, meaning) in lockrun::exit::TABLE {
        assert!(
            text.lines().any(|line| line.trim_start().starts_with(code)),
            "man/lockrun.1 has no exit-status entry for {code}"
        );
        needles.push((*meaning).to_owned());
    }
    for var in lockrun::supervise::SECRET_ENV {
        needles.push((*var).to_owned());
    }
    needles.extend(
        [
            // sections
            "SYNOPSIS",
            "OPTIONS",
            "COMMANDS",
            "BACKENDS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "THE COMMAND",
            "SIGNALS",
            "WAITING",
            "JSON OUTPUT",
            "FILES",
            "EXAMPLES",
            "SECURITY",
            // backends and their URLs
            "file:///DIR",
            "redis://",
            "rediss://",
            "cloudshell://",
            "cloudshells://",
            "/run/lock/lockrun-UID",
            "/tmp/lockrun-UID",
            "0700",
            "symlink",
            "owned by another user",
            "LOCKRUN_CLOUDSHELL_DOMAIN",
            "LOCKRUN_LOG",
            // what the child sees
            "LOCKRUN_NAME",
            "LOCKRUN_SLOT",
            "LOCKRUN_FENCE",
            "LOCKRUN_BACKEND",
            "without any password",
            // signals
            "SIGINT",
            "SIGTERM",
            "SIGHUP",
            "SIGQUIT",
            "SIGUSR1",
            "SIGUSR2",
            "process group",
            "PR_SET_PDEATHSIG",
            "close-on-exec",
            "--kill-after",
            // examples: cron, CI, shared dir, Redis, CloudShell, a lock called status
            "30 2 * * * lockrun",
            "deploy-prod",
            "--backend file:///var/lock/myapp",
            "LOCKRUN_REDIS_PASSWORD=",
            "LOCKRUN_CLOUDSHELL_TOKEN=",
            "lockrun run status --",
            // the JSON schema
            "lockrun.status/1",
            "lockrun.list/1",
        ]
        .map(str::to_owned),
    );
    let absent: Vec<&String> = needles.iter().filter(|n| missing(n)).collect();
    assert!(
        absent.is_empty(),
        "man/lockrun.1 does not mention: {absent:?}"
    );
}

#[test]
fn help_shows_usage_and_real_examples() {
    let help = |flag: &str| {
        let mut cmd = Command::new(BIN);
        cmd.arg(flag);
        let out = run_timeout(cmd, SOON);
        assert!(out.status.success(), "{flag}: {}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let short = help("-h");
    let long = help("--help");
    for text in [&short, &long] {
        assert!(
            text.contains("Usage: lockrun [OPTIONS] NAME -- COMMAND [ARGS...]"),
            "{text}"
        );
        assert!(
            text.contains("lockrun status [--json] [--exit-status] [--slots N] NAME"),
            "{text}"
        );
        let examples: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "Examples:")
            .skip(1)
            .take_while(|l| l.starts_with("  lockrun "))
            .collect();
        assert!(
            (3..=4).contains(&examples.len()),
            "3-4 examples: {examples:?}"
        );
        // Each example parses: the same words, with the command replaced by
        // `--help` of the right (sub)command, must not be a usage error.
        for example in examples {
            let words: Vec<&str> = example
                .split('#')
                .next()
                .unwrap()
                .split_whitespace()
                .skip(1)
                .collect();
            let parsed = lockrun::cli::Cli::command()
                .try_get_matches_from(std::iter::once("lockrun").chain(words.iter().copied()));
            assert!(
                parsed.is_ok(),
                "example does not parse: {example}: {parsed:?}"
            );
        }
        assert!(text.contains("lockrun run status -- CMD"), "{text}");
    }
    assert!(
        short.len() < long.len(),
        "-h is the summary, --help the long form"
    );
    assert!(
        long.contains("LOCKRUN_REDIS_PASSWORD"),
        "--help explains where secrets go"
    );

    let version = help("--version");
    assert_eq!(
        version.trim(),
        format!(
            "lockrun {} (backends: file, redis, rediss, cloudshell, cloudshells, postgres, postgresql, etcd, etcds)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// README's exit-code table has one row per row of exit::TABLE, verbatim.
#[test]
fn readme_exit_codes_match_the_table() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    for (code, meaning) in lockrun::exit::TABLE {
        let row = format!("| {code} | {meaning} |");
        assert!(
            readme.contains(&row),
            "README.md lacks the exit-code row:\n{row}"
        );
    }
}

/// scripts/install-extras puts each file where man and the shells look.
#[test]
fn install_extras_puts_files_in_standard_places() {
    let prefix = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(root().join("scripts/install-extras"));
    cmd.arg(prefix.path());
    let out = run_timeout(cmd, SOON);
    assert!(out.status.success(), "install-extras: {}", stderr_of(&out));
    for (from, to) in [
        ("man/lockrun.1", "share/man/man1/lockrun.1"),
        (
            "completions/lockrun.bash",
            "share/bash-completion/completions/lockrun",
        ),
        ("completions/_lockrun", "share/zsh/site-functions/_lockrun"),
        (
            "completions/lockrun.fish",
            "share/fish/vendor_completions.d/lockrun.fish",
        ),
        (
            "completions/lockrun.elv",
            "share/lockrun/completions/lockrun.elv",
        ),
        (
            "completions/_lockrun.ps1",
            "share/lockrun/completions/_lockrun.ps1",
        ),
    ] {
        let installed = std::fs::read(prefix.path().join(to)).unwrap_or_default();
        assert_eq!(installed, std::fs::read(root().join(from)).unwrap(), "{to}");
    }
    // And `man` finds the page there.
    if Path::new("/usr/bin/man").exists() {
        let mut cmd = Command::new("man");
        cmd.env("MANPATH", prefix.path().join("share/man"))
            .args(["-w", "lockrun"]);
        let out = run_timeout(cmd, SOON);
        assert!(out.status.success(), "man -w lockrun: {}", stderr_of(&out));
    }
    let mut bad = Command::new(root().join("scripts/install-extras"));
    bad.arg("relative/prefix");
    assert_eq!(run_timeout(bad, SOON).status.code(), Some(64));
}
