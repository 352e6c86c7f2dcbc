//! The checked-in completions really load in bash, zsh and fish, and
//! `lockrun --<Tab>` offers the options. Each test runs the real shell on the
//! file in completions/ (zsh interactively, in a tmux pseudo-terminal).

use std::path::PathBuf;
use std::process::Command;

use clap::CommandFactory;

use crate::util::{BIN, SOON, Sandbox, run_timeout, stderr_of};
use crate::util::{Tmux, require};

fn completions(file: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("completions")
        .join(file);
    assert!(
        path.exists(),
        "{} is missing: run scripts/generate",
        path.display()
    );
    path
}

/// Every visible long option of `lockrun` (or of its subcommand `sub`).
fn long_options(sub: Option<&str>) -> Vec<String> {
    let cli = lockrun::cli::Cli::command();
    let globals: Vec<String> = cli
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let cmd = match sub {
        Some(name) => cli.find_subcommand(name).unwrap().clone(),
        None => cli,
    };
    let mut options: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    options.push("--help".into());
    if sub.is_none() {
        options.push("--version".into());
    } else {
        options.extend(globals);
    }
    options.sort();
    options.dedup();
    options
}

fn assert_offers(shell: &str, line: &str, offered: &str, expected: &[String]) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|option| {
            !offered
                .split_whitespace()
                .any(|word| word == option.as_str())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{shell}: `{line}<Tab>` does not offer {missing:?}; it offered:\n{offered}"
    );
}

/// bash: source the file, fill COMP_WORDS/COMP_CWORD as readline would and
/// call the function `complete -p lockrun` names; print COMPREPLY.
fn bash_complete(words: &[&str]) -> String {
    require("bash", "bash");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        r#"source '{file}' || exit 1
spec=$(complete -p lockrun) || {{ echo 'no completion registered for lockrun' >&2; exit 1; }}
func=${{spec##*-F }}; func=${{func%% *}}
COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$func" lockrun "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        file = completions("lockrun.bash").display(),
        words = quoted.join(" "),
    );
    let mut cmd = Command::new("bash");
    cmd.env("PATH", path_with_lockrun())
        .args(["--norc", "--noprofile", "-c", &script]);
    let out = run_timeout(cmd, SOON);
    assert!(out.status.success(), "bash: {}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completes_options_and_subcommands() {
    let offered = bash_complete(&["lockrun", "--"]);
    assert_offers("bash", "lockrun --", &offered, &long_options(None));
    assert!(
        !offered.contains("--generate"),
        "hidden flag offered: {offered}"
    );

    let offered = bash_complete(&["lockrun", ""]);
    assert_offers(
        "bash",
        "lockrun ",
        &offered,
        &["run", "status", "list", "release"].map(String::from),
    );

    let offered = bash_complete(&["lockrun", "status", "--"]);
    assert_offers(
        "bash",
        "lockrun status --",
        &offered,
        &long_options(Some("status")),
    );
    assert!(
        !offered.split_whitespace().any(|w| w == "--no-wait"),
        "{offered}"
    );
}

/// `PATH` with the lockrun under test first: the completions call
/// `lockrun --complete-names` for lock names.
fn path_with_lockrun() -> String {
    let dir = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .display()
        .to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

/// A lock directory that knows the locks `deploy` and `pool` (two slots).
fn known_locks() -> Sandbox {
    let sb = Sandbox::new();
    for args in [
        &["deploy", "--", "true"][..],
        &["--slots", "2", "pool", "--", "true"],
    ] {
        let out = run_timeout(sb.lockrun(args), SOON);
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    sb
}

#[test]
fn bash_completes_lock_names_and_the_command_after_dashdash() {
    let sb = known_locks();
    let url = sb.backend_url();
    for sub in ["status", "release"] {
        let offered = bash_complete(&["lockrun", "-b", &url, sub, ""]);
        assert_eq!(offered, "deploy\npool\n", "{sub}");
    }
    let offered = bash_complete(&["lockrun", "--backend", &url, "status", "de"]);
    assert_eq!(offered, "deploy\n");
    // After `--`: commands, not lockrun's options.
    let offered = bash_complete(&["lockrun", "deploy", "--", "ech"]);
    assert!(offered.lines().any(|l| l == "echo"), "{offered}");
    let offered = bash_complete(&["lockrun", "deploy", "--", "ls", "--"]);
    assert!(!offered.contains("--wait"), "{offered}");
    let offered = bash_complete(&["lockrun", "run", "status", "--", "ech"]);
    assert!(offered.lines().any(|l| l == "echo"), "{offered}");
}

#[test]
fn fish_completes_lock_names_and_the_command_after_dashdash() {
    let sb = known_locks();
    let url = sb.backend_url();
    let offered = fish_complete(&format!("lockrun -b {url} status "));
    assert_eq!(offered, "deploy\npool", "{offered}");
    let offered = fish_complete(&format!("lockrun -b {url} release p"));
    assert_eq!(offered, "pool", "{offered}");
    let offered = fish_complete("lockrun deploy -- ech");
    assert!(offered.lines().any(|l| l == "echo"), "{offered}");
    let offered = fish_complete("lockrun deploy -- sh --");
    assert!(!offered.contains("--wait"), "{offered}");
}

fn fish_complete(line: &str) -> String {
    require("fish", "fish");
    let script = format!(
        "source '{}'; or exit 1; complete -C '{line}'",
        completions("lockrun.fish").display()
    );
    let sandbox = Sandbox::new();
    let mut cmd = Command::new("fish");
    cmd.env("PATH", path_with_lockrun())
        .env("HOME", sandbox.dir.path())
        .env("XDG_CONFIG_HOME", sandbox.path("config"))
        .env("XDG_DATA_HOME", sandbox.path("data"))
        .args(["--no-config", "-c", &script]);
    let out = run_timeout(cmd, SOON);
    assert!(out.status.success(), "fish: {}", stderr_of(&out));
    // "--wait\tGive up after…": keep the candidates.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fish_completes_options_and_subcommands() {
    let offered = fish_complete("lockrun --");
    assert_offers("fish", "lockrun --", &offered, &long_options(None));
    assert!(
        !offered.contains("--generate"),
        "hidden flag offered: {offered}"
    );

    let offered = fish_complete("lockrun status --");
    assert_offers(
        "fish",
        "lockrun status --",
        &offered,
        &long_options(Some("status")),
    );
}

/// zsh completion only runs inside the line editor, so run an interactive
/// zsh in tmux with the completions on `fpath`, type `lockrun --`, press Tab
/// and read the listing off the screen.
#[test]
fn zsh_completes_options() {
    require("zsh", "zsh");
    let sandbox = Sandbox::new();
    let dir = completions("_lockrun").parent().unwrap().to_path_buf();
    std::fs::write(
        sandbox.path(".zshrc"),
        format!(
            "fpath=('{}' $fpath)\nautoload -Uz compinit\ncompinit -u -D\n\
             zstyle ':completion:*' list-prompt ''\nPS1='READY> '\n",
            dir.display()
        ),
    )
    .unwrap();

    // compinit registered the function for the command.
    let mut check = Command::new("zsh");
    check
        .env("ZDOTDIR", sandbox.dir.path())
        .env("HOME", sandbox.dir.path())
        .args(["-i", "-c", "print -r -- ${_comps[lockrun]}"]);
    let out = run_timeout(check, SOON);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "_lockrun",
        "{}",
        stderr_of(&out)
    );

    let command = format!(
        "env ZDOTDIR='{0}' HOME='{0}' zsh -i",
        sandbox.dir.path().display()
    );
    let tmux = Tmux::start(sandbox.dir.path(), 200, 50, &command);
    tmux.wait_for_screen("the zsh prompt", |screen| {
        screen.iter().any(|r| r.starts_with("READY>"))
    });
    tmux.send_keys(&["lockrun --", "Tab"]);
    let expected = long_options(None);
    let screen = tmux.wait_for_screen("zsh to list the options", |screen| {
        let text = screen.join("\n");
        expected.iter().all(|option| text.contains(option.as_str()))
    });
    let text = screen.join("\n");
    assert!(
        text.contains("Give up after waiting"),
        "descriptions shown:\n{text}"
    );
    assert!(!text.contains("--generate"), "hidden flag offered:\n{text}");
}

/// zsh: `lockrun -b URL status <Tab>` lists the backend's lock names.
#[test]
fn zsh_completes_lock_names() {
    require("zsh", "zsh");
    let sb = known_locks();
    let dir = completions("_lockrun").parent().unwrap().to_path_buf();
    std::fs::write(
        sb.path(".zshrc"),
        format!(
            "fpath=('{}' $fpath)\nautoload -Uz compinit\ncompinit -u -D\n\
             zstyle ':completion:*' list-prompt ''\nPS1='READY> '\n",
            dir.display()
        ),
    )
    .unwrap();
    let command = format!(
        "env ZDOTDIR='{0}' HOME='{0}' PATH='{1}' zsh -i",
        sb.dir.path().display(),
        path_with_lockrun()
    );
    let tmux = Tmux::start(sb.dir.path(), 200, 50, &command);
    tmux.wait_for_screen("the zsh prompt", |screen| {
        screen.iter().any(|r| r.starts_with("READY>"))
    });
    tmux.send_keys(&[&format!("lockrun -b {} status ", sb.backend_url()), "Tab"]);
    tmux.wait_for_screen("zsh to list the lock names", |screen| {
        let text = screen.join("\n");
        text.contains("deploy") && text.contains("pool")
    });
    // After `--`, the command's own words: here its name.
    tmux.send_keys(&["C-c"]);
    tmux.send_keys(&["lockrun deploy -- lockru", "Tab"]);
    tmux.wait_for_screen("zsh to complete the command after --", |screen| {
        screen
            .iter()
            .any(|r| r.ends_with("lockrun deploy -- lockrun"))
    });
}

/// Shells the tests cannot run here: the scripts at least name every option.
#[test]
fn elvish_and_powershell_scripts_name_every_option() {
    for (file, quoted) in [("lockrun.elv", "cand {} "), ("_lockrun.ps1", "'{}'")] {
        let script = std::fs::read_to_string(completions(file)).unwrap();
        for option in long_options(None) {
            let needle = quoted.replace("{}", &option);
            assert!(script.contains(&needle), "{file} lacks {needle}");
        }
        assert!(
            !script.contains("--generate"),
            "{file} offers the hidden flag"
        );
    }
}
