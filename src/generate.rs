//! `lockrun --generate man|bash|zsh|fish|elvish|powershell`: the man page and
//! completions, from the same clap definition as `--help`. The checked-in
//! copies in man/ and completions/ are refreshed with scripts/generate, and
//! tests/integration/generated.rs fails when they are stale.
//!
//! The man page is clap_mangen's title, NAME, SYNOPSIS and DESCRIPTION, then
//! sections rendered here: the options and commands (from the clap
//! definition, with their environment variables and defaults), the exit-code
//! table (from [`crate::exit::TABLE`]) and the prose that `--help` has no
//! room for. Keep it in step with DESIGN.md and README.md.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write;

use clap::{Arg, CommandFactory};
use clap_complete::Shell;

use crate::cli::{Cli, Generate};
use crate::error::{Error, Result};

/// `lockrun --generate WHAT`, for scripts/generate; returns the exit code.
pub fn main(args: &[OsString]) -> u8 {
    use clap::ValueEnum;
    let what = match args {
        [what] => what
            .to_str()
            .and_then(|w| Generate::from_str(w, false).ok()),
        _ => None,
    };
    let Some(what) = what else {
        eprintln!("lockrun: usage: lockrun --generate man|bash|zsh|fish|elvish|powershell");
        return crate::exit::USAGE;
    };
    match generate(what, &mut std::io::stdout().lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("lockrun: {e}");
            e.exit(crate::exit::TEMPFAIL).code()
        }
    }
}

pub fn generate(what: Generate, out: &mut dyn Write) -> Result<()> {
    let written = match what {
        Generate::Man => out.write_all(man_page().as_bytes()),
        Generate::Bash => complete(Shell::Bash, out),
        Generate::Zsh => complete(Shell::Zsh, out),
        Generate::Fish => complete(Shell::Fish, out),
        Generate::Elvish => complete(Shell::Elvish, out),
        Generate::Powershell => complete(Shell::PowerShell, out),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Error::internal(format!("cannot write to stdout: {e}")))
}

fn complete(shell: Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lockrun", &mut buf);
    out.write_all(&buf)
}

/// The whole man page, as roff in plain ASCII (non-ASCII characters become
/// groff escapes, so `groff -ww` has nothing to warn about).
pub fn man_page() -> String {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone())
        .title("LOCKRUN")
        .section("1")
        .source(format!("lockrun {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut head = Vec::new();
    for render in [
        clap_mangen::Man::render_title,
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
    ] {
        render(&man, &mut head).expect("rendering into memory cannot fail");
    }
    let head = String::from_utf8(head).expect("clap_mangen writes UTF-8");
    // Every render_* call repeats roff's two-line preamble; once is enough.
    let preamble: String = head.lines().take(2).map(|l| format!("{l}\n")).collect();
    let mut page = preamble.clone();
    page.push_str(&head.replace(&preamble, ""));

    let mut roff = Roff::default();
    options_section(&mut roff, &cmd);
    commands_section(&mut roff, &cmd);
    backends_section(&mut roff);
    exit_status_section(&mut roff);
    environment_section(&mut roff, &cmd);
    command_section(&mut roff);
    signals_section(&mut roff);
    exec_mode_section(&mut roff);
    waiting_section(&mut roff);
    json_section(&mut roff);
    files_section(&mut roff);
    examples_section(&mut roff);
    security_section(&mut roff);
    notes_section(&mut roff);
    see_also_section(&mut roff);
    page.push_str(&roff.out);
    ascii_roff(&page)
}

/// Options of the default form, straight from the clap definition.
fn options_section(roff: &mut Roff, cmd: &clap::Command) {
    roff.sh("OPTIONS");
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        argument(roff, arg);
    }
    roff.item(
        "`-h`, `--help`",
        "Print help (`-h`: a summary; `--help`: more).",
    );
    roff.item(
        "`-V`, `--version`",
        "Print the version and the backends compiled in.",
    );
    roff.p(
        "*DURATION* is a number with a unit: `250ms`, `30s`, `5m`, `1h30m`, `2d`; a bare \
         number means seconds, as in flock(1)'s `-w`.",
    );
}

/// One `.TP` entry: flags and value, help, default and environment variable.
fn argument(roff: &mut Roff, arg: &Arg) {
    let value = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| format!(" *{name}*"));
    let term = if arg.is_positional() {
        match arg.get_id().as_str() {
            "COMMAND" => "*COMMAND* [*ARGS*...]".to_owned(),
            _ => format!("*{}*", arg.get_value_names().map_or("", |n| n[0].as_str())),
        }
    } else {
        let mut flags = Vec::new();
        if let Some(short) = arg.get_short() {
            flags.push(format!("`-{short}`"));
        }
        if let Some(long) = arg.get_long() {
            flags.push(format!("`--{long}`"));
        }
        let value = if arg.get_action().takes_values() {
            value.unwrap_or_default()
        } else {
            String::new()
        };
        format!("{}{value}", flags.join(", "))
    };
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut body = paragraphs(&help);
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() {
        let _ = write!(body, " Default: `{}`.", defaults.join(" "));
    }
    if let Some(env) = arg.get_env() {
        let _ = write!(body, " Environment: `{}`.", env.to_string_lossy());
    }
    roff.item_plain_body(&term, &body);
}

/// Help texts are written as phrases; the man page wants sentences.
fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.ends_with('.') {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// A multi-paragraph help text as one run of sentences.
fn paragraphs(text: &str) -> String {
    text.split("\n\n")
        .map(|p| sentence(&p.replace('\n', " ")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn commands_section(roff: &mut Roff, cmd: &clap::Command) {
    roff.sh("COMMANDS");
    roff.p(
        "Without a command word, lockrun runs *COMMAND* under the lock *NAME*. These words \
         come first instead:",
    );
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        let positionals: Vec<String> = sub
            .get_arguments()
            .filter(|a| a.is_positional())
            .filter_map(|a| a.get_value_names().map(|n| format!("*{}*", n[0])))
            .collect();
        let term = match name {
            "run" => "`lockrun run` [*OPTIONS*] *NAME* `--` *COMMAND* [*ARGS*...]".to_owned(),
            _ => format!("`lockrun {name}` [*OPTIONS*] {}", positionals.join(" "))
                .trim_end()
                .to_owned(),
        };
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(ToString::to_string)
            .unwrap_or_default();
        roff.item_plain_body(&term, &paragraphs(&about));
        if name == "run" {
            roff.indented_p(
                "Takes the options above. Use it when the lock is called `status`, `list`, \
                 `release` or `run`: `lockrun run status -- make report` runs `make report` \
                 under the lock `status`.",
            );
            continue;
        }
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_positional())
        {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let value = arg
                .get_value_names()
                .and_then(|n| n.first())
                .filter(|_| arg.get_action().takes_values())
                .map(|n| format!(" *{n}*"))
                .unwrap_or_default();
            let flag = arg
                .get_long()
                .map(|l| format!("`--{l}`{value}"))
                .unwrap_or_default();
            roff.indented_item(&flag, &sentence(&help));
        }
    }
    roff.p(
        "`status`, `list` and `release` take `--backend`, `-v` and `-q` too. `status` and \
         `list` print one line per lock slot on stdout (`--json`: see *JSON OUTPUT*).",
    );
}

fn backends_section(roff: &mut Roff) {
    roff.sh("BACKENDS");
    roff.p(
        "A backend is named by a URL in `--backend` or `LOCKRUN_BACKEND`. The same *NAME* \
         means the same lock on every backend; what differs is who can share it and what \
         happens when a holder dies without releasing.",
    );
    roff.item(
        "(no URL), `file:`",
        "Lock files in a private per-user directory on this machine: `/run/lock/lockrun-`*UID* \
         when `/run/lock` is writable, otherwise `/tmp/lockrun-`*UID*. It depends only on the \
         user id, never on variables such as `HOME`, `TMPDIR` or `XDG_RUNTIME_DIR`, so a cron \
         job, a CI job and an interactive shell of the same user share their locks. lockrun \
         creates the directory with mode 0700 and refuses it (exit 77) if it is a symlink, \
         not a directory, or owned by another user. No server and no configuration.",
    );
    roff.item(
        "`file:///`*DIR*",
        "Lock files in *DIR* (created if missing), for locks shared between users or \
         services: give them all write access to *DIR*. The lock for *NAME* is the file \
         *DIR*`/`*NAME*`.lock`, locked with flock(2), so `flock` *DIR*`/`*NAME*`.lock` \
         and lockrun exclude each other in both directions. Waiting blocks in the kernel: \
         no polling, and the next waiter starts as soon as the holder exits. The kernel \
         frees the lock the moment its holder dies, even on SIGKILL. Lock files are never \
         deleted (that would let two processes hold the \"same\" lock); if one is removed or \
         replaced while a command runs, its lockrun notices at once (inotify, with a check \
         every second as a fallback), kills the command's group (SIGTERM and at once \
         SIGKILL: another process can lock the new file right away) and exits 76. The \
         window left is the few milliseconds between the removal and the SIGKILL; while \
         lockrun itself is stopped, a removal is noticed when it resumes.",
    );
    roff.item(
        "`redis://`[*USER*`@`]*HOST*[`:`*PORT*][`/`*DB*], `rediss://`...",
        "A Redis server shared by many machines; `rediss` uses TLS. The password comes from \
         `LOCKRUN_REDIS_PASSWORD` (or, less safely, *USER*`:`*PASSWORD*`@` in the URL). \
         A lock is a key with a random owner token and a lease of `--ttl` (default 30s), \
         renewed every ttl/3 while the command runs and deleted on release only if the token \
         is still ours. If renewals fail, lockrun stops the command before the lease could \
         have expired on the server and exits 76. A holder that dies without releasing \
         holds the lock until its lease expires. A release wakes exactly one waiter (BLPOP on a \
         self-expiring wake list). \
         `LOCKRUN_FENCE` comes from a per-name counter increased with every acquisition. \
         *PORT* defaults to 6379 and *DB* to 0. URL options: `?prefix=`*P* (key prefix, \
         default `lockrun:`), `cacert=`*FILE* (CA certificate for `rediss`), `max-ttl=`\
         *DURATION* (default 30s, at most 24h). A server that has been up for less than \
         max-ttl grants no lock: after a restart without persistence a previous holder's \
         command may still run until its deadline, which is at most its `--ttl` after its \
         last renewal. So `--ttl` may not exceed max-ttl (exit 64), every lockrun using the \
         server must give the same max-ttl, and the first lockrun against a brand-new \
         server waits up to max-ttl. A holder that finds its key gone after a restart has \
         its command killed before the server can grant the lock to anyone else.",
    );
    roff.item(
        "`cloudshell://`*HOST*[`:`*PORT*]`/`*RESERVATION*, `cloudshells://`...",
        "The CloudShell reservation mutex: holding *NAME* means a service with the alias \
         *NAME* (model `Mutex Service`) is in reservation *RESERVATION*; lockrun and \
         drivers using the published AddServiceToReservation recipe exclude each other. \
         *PORT* defaults to 8029; `cloudshells` uses TLS. Credentials come from \
         `LOCKRUN_CLOUDSHELL_USER`, `LOCKRUN_CLOUDSHELL_PASSWORD` and \
         `LOCKRUN_CLOUDSHELL_DOMAIN` (default `Global`), or a token in \
         `LOCKRUN_CLOUDSHELL_TOKEN`. The API cannot notify waiters, so they poll with capped \
         exponential backoff and full jitter. Nothing expires by itself: a holder killed \
         with SIGKILL leaves the alias behind; `lockrun status` says so and \
         `lockrun release` *NAME* `--force` removes it. URL options (`?`*KEY*`=`*VALUE*`&`...): \
         `model` (default `Mutex Service`), `owner_attribute` (an attribute of that model \
         where lockrun records its holder, so that `status` can name it), `domain`, \
         `first_poll` (100ms) and `max_poll` (5s) for the backoff, `timeout` (10s per \
         request), `retries` (2), `check` (10s: how often a holder checks that its alias is \
         still there) and `insecure` (with `cloudshells`, accept any certificate). Inside a \
         CloudShell script, `cloudshell:` takes the server, credentials and reservation \
         from the script's environment.",
    );
    roff.p(
        "`--slots` *N* turns *NAME* into a semaphore on any backend: slot *k* is its own lock \
         with the key *NAME*`@`*k* (no valid *NAME* contains `@`, so slot keys never collide \
         with another lock), and the command learns its slot in `LOCKRUN_SLOT`.",
    );
}

fn exit_status_section(roff: &mut Roff) {
    roff.sh("EXIT STATUS");
    roff.p(
        "lockrun exits with the command's own status, so it can replace a bare command in \
         scripts. Its own outcomes use codes a command rarely does:",
    );
    for (code, meaning) in crate::exit::TABLE {
        roff.item_plain_body(&format!("`{code}`"), &sentence(meaning));
    }
    roff.p(
        "The command never runs without the lock: when lockrun exits 64, 69, 75 or 77, the \
         command was not started.",
    );
}

/// Secrets lockrun reads from the environment, and what each is for.
const SECRET_VARS: &[(&str, &str)] = &[
    (
        "LOCKRUN_REDIS_PASSWORD",
        "Password for `redis://` and `rediss://` backends (the user, if any, stays in the URL).",
    ),
    (
        "LOCKRUN_CLOUDSHELL_USER",
        "CloudShell user name for `cloudshell://` backends.",
    ),
    (
        "LOCKRUN_CLOUDSHELL_PASSWORD",
        "CloudShell password for `LOCKRUN_CLOUDSHELL_USER`.",
    ),
    (
        "LOCKRUN_CLOUDSHELL_TOKEN",
        "CloudShell API token, used instead of user and password.",
    ),
];

fn environment_section(roff: &mut Roff, cmd: &clap::Command) {
    roff.sh("ENVIRONMENT");
    roff.p("Every option that configures a lock can come from the environment; options given on the command line win.");
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
            roff.item_plain_body(
                &format!("`{}`", env.to_string_lossy()),
                &format!("Same as `--{long}`."),
            );
        }
    }
    for (var, meaning) in SECRET_VARS {
        roff.item_plain_body(&format!("`{var}`"), meaning);
    }
    roff.item(
        "`LOCKRUN_CLOUDSHELL_DOMAIN`",
        "CloudShell domain to log on to. Default: `Global`.",
    );
    roff.item(
        "`LOCKRUN_LOG`",
        "Diagnostics filter: comma-separated `target=level` pairs or a bare level, e.g. \
         `lockrun=debug`; it takes precedence over `-v` and `-q`.",
    );
}

fn command_section(roff: &mut Roff) {
    roff.sh("THE COMMAND");
    roff.p(
        "lockrun starts *COMMAND* directly, without a shell (with `-c` *STRING*: `/bin/sh -c` \
         *STRING*), only after the lock is held. The command inherits stdin, stdout, stderr, \
         the working directory and the environment, plus:",
    );
    roff.item("`LOCKRUN_NAME`", "The lock name.");
    roff.item("`LOCKRUN_SLOT`", "With `--slots`: the slot held, 1 to *N*.");
    roff.item(
        "`LOCKRUN_FENCE`",
        "A fencing token: a number that strictly increases with every acquisition of *NAME*, \
         where the backend provides one (file, Redis). Pass it to the storage you write, and \
         have it reject numbers lower than the highest seen: then even a holder paused past \
         the end of its lease cannot overwrite a newer holder's work. It is the previous \
         holder's fence + 1 or the current time in microseconds, whichever is larger, so it \
         keeps increasing even if a lock file or a Redis counter is lost.",
    );
    roff.item(
        "`LOCKRUN_BACKEND`",
        "The backend URL actually used, without any password.",
    );
    let secrets: Vec<String> = crate::supervise::SECRET_ENV
        .iter()
        .map(|v| format!("`{v}`"))
        .collect();
    roff.p(&format!(
        "{} are removed from the command's environment. stdout belongs to the command: \
         lockrun writes only to stderr.",
        secrets.join(", ")
    ));
}

fn signals_section(roff: &mut Roff) {
    roff.sh("SIGNALS");
    roff.bullet(
        "SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to lockrun are forwarded to \
         the command's process group; lockrun then waits for the command, releases the lock \
         and exits with the command's status. The command runs in a process group of its \
         own, so Ctrl-C at a terminal reaches it once (through lockrun), not twice.",
    );
    roff.bullet(
        "A signal while lockrun is still waiting for the lock ends the wait cleanly: nothing \
         stays registered in the backend, and lockrun exits 128+*N*.",
    );
    roff.bullet(
        "When `--max-time` runs out, lockrun sends SIGTERM to the command's process group, \
         SIGKILL after `--kill-after` (default 10s), and exits 124.",
    );
    roff.bullet(
        "Every lease (Redis) has a kill deadline: the send time of its last successful \
         renewal plus `--ttl`, less a ninth of `--ttl`, on a clock that keeps counting while \
         processes are stopped or the machine sleeps. The guardian, a process of its own \
         that is not stopped when lockrun is, sends SIGTERM to the command's group a grace \
         before the deadline (`--kill-after`, capped at ttl/3) and SIGKILL at it, so a \
         stopped, starved or cut-off lockrun cannot leave its command running after the \
         lease could expire; lockrun then exits 76. The deadline is checked before the \
         command starts: a lease that went stale while lockrun was held up is released \
         and the lock taken afresh, never used.",
    );
    roff.bullet(
        "When a check finds the lock gone while the command runs (key deleted or taken, \
         lock file removed or replaced), lockrun sends SIGTERM to the command's group and \
         SIGKILL no later than the instant another holder could be granted the lock, \
         whatever `--kill-after` says: at once for a deleted key or lock file, at the end of \
         the restart guard for a Redis server that restarted. It exits 76.",
    );
    roff.bullet(
        "When the command exits, anything it left running in its process group would go on \
         without the lock: it gets SIGTERM, then SIGKILL after `--kill-after`. Processes that \
         left the group (`setsid`, a daemon's double fork) are out of reach of the group's \
         signals; lockrun, their subreaper, names them in one warning when it releases the \
         lock, or stops them like the rest with `--kill-escaped`.",
    );
    roff.bullet(
        "If lockrun itself is killed with SIGKILL, the command gets SIGKILL too \
         (PR_SET_PDEATHSIG on Linux), and so does everything in its process group (a tiny \
         guardian process that lockrun forks notices lockrun's death): nothing runs on \
         unprotected. A file lock is then free \
         at once, a Redis lease expires after `--ttl`, and a CloudShell alias stays until \
         `lockrun release` *NAME* `--force`.",
    );
    roff.bullet(
        "The lock's file descriptor is close-on-exec: neither the command nor a daemon it \
         starts can keep a file lock after lockrun exits.",
    );
    roff.bullet(
        "SIGTSTP (Ctrl-Z) stops the command's process group (with SIGSTOP, which a command \
         cannot ignore) and then lockrun; SIGCONT (`fg`) resumes both, unless the lease may \
         have expired meanwhile, in which case the command is killed instead (exit 76). A \
         stopped lockrun thus never leaves its command running without renewals. SIGWINCH \
         is passed on to the command.",
    );
}

fn exec_mode_section(roff: &mut Roff) {
    roff.sh("EXEC MODE");
    roff.p(
        "With `--exec` (file backend only) lockrun takes the lock, writes the holder record and \
         then execs *COMMAND* in its own place, with the lock's descriptor inherited (not \
         close-on-exec), as `flock -F` and setlock(8) do. There is no supervisor process, \
         which makes it the cheapest way to run a command under a lock. What it gives up:",
    );
    roff.bullet(
        "Daemons and other processes the command starts inherit the descriptor and keep the \
         lock until the last of them exits or closes it; nothing is stopped when the command \
         exits.",
    );
    roff.bullet(
        "The holder pid in the record and in `status` is the command's own (lockrun's pid, \
         which the command takes over); it does not change hands.",
    );
    roff.bullet(
        "No lease, guardian, deadline or signal forwarding: signals go to the command \
         directly, it stays in lockrun's process group, and nobody notices a lock file that \
         is removed or replaced while it runs. `--max-time`, `--slots`, `--kill-escaped` and \
         the Redis and CloudShell backends need a supervisor and are refused (exit 64).",
    );
    roff.p(
        "`LOCKRUN_NAME`, `LOCKRUN_FENCE` and `LOCKRUN_BACKEND` are set and secrets removed as \
         usual. A command that cannot be executed exits 127 or 126 and frees the lock.",
    );
}

fn waiting_section(roff: &mut Roff) {
    roff.sh("WAITING");
    roff.p(
        "By default lockrun waits as long as it takes; `--wait` *DURATION* bounds the wait, \
         `--no-wait` does not wait at all. While it waits with stderr on a terminal, one line \
         on stderr updates itself: how long we have waited, the lock, its holder (host, pid, \
         command) and how long the holder has had it. It fits the terminal's width and is \
         erased before the command starts. With `-q`, or when stderr is not a terminal (cron, \
         CI logs, pipes), nothing is drawn.",
    );
    roff.code("lockrun: waited 41s for deploy; held by ci-7 pid 4242 for 3m12s (make deploy)");
    roff.p(
        "When lockrun gives up (`--no-wait`, or `--wait` ran out) it prints one line saying \
         who holds the lock and exits 75 (or the `-E` code).",
    );
}

fn json_section(roff: &mut Roff) {
    roff.sh("JSON OUTPUT");
    roff.p(&format!(
        "`lockrun status --json` prints one JSON object with `\"schema\": \"{}\"`, `name`, \
         `backend` (no password), `held` (true if any slot is held) and `slots`, an array \
         with one object per slot. `lockrun list --json` prints `\"schema\": \"{}\"`, \
         `backend` and `locks`, an array of the same slot objects. Every key is always \
         present, `null` when unknown.",
        crate::inspect::STATUS_SCHEMA,
        crate::inspect::LIST_SCHEMA
    ));
    roff.p(
        "A slot object has `name` (string), `key` (*NAME* or *NAME*`@`*k*), `slot` (*k* or \
         null), `held` (boolean), `holder` (null, or an object with `host`, `pid`, `user`, \
         `command`), `since` (RFC 3339 time the holder took the lock, or null), `expires` \
         (RFC 3339 time the lease runs out, or null for locks without a lease), \
         `expires_in_ms` (number or null), `fence` (number or null), `waiters` (number or null: processes waiting, where the backend can tell) and \
         `needs_manual_release` (true when the lock will not free itself if its holder has \
         died). New keys may be added within a schema version; renaming, removing or \
         retyping a key changes the version.",
    );
}

fn files_section(roff: &mut Roff) {
    roff.sh("FILES");
    roff.item(
        "`/run/lock/lockrun-`*UID*`/`, `/tmp/lockrun-`*UID*`/`",
        "The default lock directory (the first when `/run/lock` is writable).",
    );
    roff.item(
        "*DIR*`/`*NAME*`.lock`",
        "The lock file for *NAME*; while held it holds a one-line JSON record of the holder \
         (host, pid, user, command, start time, fence). It is never deleted.",
    );
    roff.item(
        "*DIR*`/`*NAME*`@`*k*`.lock`",
        "Slot *k* of *NAME* with `--slots`.",
    );
}

fn examples_section(roff: &mut Roff) {
    roff.sh("EXAMPLES");
    roff.p("Run a nightly job from cron, skipping a night if the previous run is still going (cron mails the one-line reason):");
    roff.code("30 2 * * * lockrun -n nightly-backup -- /usr/local/bin/backup");
    roff.p("Wait at most ten minutes, and never let the job run longer than an hour:");
    roff.code("lockrun -w 10m --max-time 1h report -- ./make-report.sh");
    roff.p("Serialize deploys from CI jobs on one runner host; a shell snippet needs `-c`:");
    roff.code("lockrun -w 30m deploy-prod -c 'make build && make deploy'");
    roff.p("Share a lock between users or services through a common directory:");
    roff.code(
        "install -d -m 2770 -g deploy /var/lock/myapp   # for the group deploy\n\
         lockrun --backend file:///var/lock/myapp db-migrate -- ./migrate",
    );
    roff.p("Let jobs on many machines take turns, through Redis:");
    roff.code(
        "export LOCKRUN_REDIS_PASSWORD=...   # or read it from a secret store\n\
         lockrun -b rediss://redis.internal:6380/2 -w 15m db-migrate -- ./migrate",
    );
    roff.p("Allow at most three concurrent builds, each told its slot:");
    roff.code("lockrun --slots 3 heavy-build -- sh -c 'make -j4 OUT=out-$LOCKRUN_SLOT'");
    roff.p("Lock a CloudShell reservation the way its drivers do (alias MUTEX):");
    roff.code(
        "export LOCKRUN_CLOUDSHELL_TOKEN=...\n\
         lockrun -b cloudshell://cs.example.com/9e6a1f4c-0d1b-4bd7-a1c3-2f0c8f1e2d3a \\\n    \
         MUTEX -- ./run-tests.sh",
    );
    roff.p("See who holds a lock, and feed it to a script:");
    roff.code(
        "lockrun status nightly-backup\n\
         lockrun status --json nightly-backup | jq -r '.slots[0].holder.host'",
    );
    roff.p("Use a lock that happens to be called `status`:");
    roff.code("lockrun run status -- ./update-status-page");
}

fn security_section(roff: &mut Roff) {
    roff.sh("SECURITY");
    roff.bullet(
        "Put passwords and tokens in `LOCKRUN_REDIS_PASSWORD` and `LOCKRUN_CLOUDSHELL_*`, not \
         in the URL: command lines are visible to every user through ps(1) and /proc.",
    );
    roff.bullet(
        "lockrun never prints a secret: not in errors, logs, `status`, `list` or the \
         command's environment. Passwords in URLs are shown as `***`, and the secret \
         variables are removed from the command's environment.",
    );
    roff.bullet(
        "The default lock directory is private (0700, owned by you, not a symlink); lock \
         files are opened without following symlinks. A shared `file:///`*DIR* is only as \
         trustworthy as the people who can write to it: they can read holder records and \
         hold or replace locks.",
    );
    roff.bullet(
        "Holder records are shown without control characters, so a crafted record cannot \
         send escape sequences to your terminal.",
    );
    roff.bullet(
        "A lease-based lock (Redis) can be lost while its holder is paused or cut off; \
         lockrun then stops the command, but work already sent elsewhere may land late. \
         Where that matters, check `LOCKRUN_FENCE` in the storage being written.",
    );
}

fn notes_section(roff: &mut Roff) {
    roff.sh("NOTES");
    roff.p(
        "Beyond the project's design contract (DESIGN.md), this version also has: exit 124 \
         when `--max-time` runs out (as timeout(1) does); the `run` command word, for locks \
         named like a command; slot keys *NAME*`@`*k*; bare numbers as seconds in \
         *DURATION*; and `-b` as a short form of `--backend`.",
    );
    roff.p(
        "When lockrun runs in the foreground of the terminal on its stdin and alone in its \
         process group, the command's process group becomes the terminal's foreground group \
         while it runs, as a shell does for a job: the command can read the terminal, Ctrl-C \
         and Ctrl-Z reach it directly, lockrun stops with it (so the shell shows the job as \
         stopped) and hands the terminal back when it ends. In a pipeline (`lockrun ... | \
         less`) the terminal stays with the pipeline, and a command that reads the terminal \
         stops the job, as it would in the background.",
    );
    roff.p(
        "flock(2) locks on network file systems (NFS, CIFS) depend on the server; use a \
         local directory or another backend for locks shared between machines.",
    );
}

fn see_also_section(roff: &mut Roff) {
    roff.sh("SEE ALSO");
    roff.p("flock(1), flock(2), timeout(1), crontab(5), systemd.timer(5), redis-server(1)");
    roff.p(&format!(
        "lockrun {}; backends compiled in: file, redis, rediss, cloudshell, cloudshells.",
        env!("CARGO_PKG_VERSION")
    ));
}

/// A small roff writer. Text uses two marks: `code` is set in bold and
/// *placeholder* in italics; everything else is escaped.
#[derive(Default)]
struct Roff {
    out: String,
}

impl Roff {
    fn sh(&mut self, title: &str) {
        let _ = writeln!(self.out, ".SH \"{title}\"");
    }

    fn p(&mut self, text: &str) {
        self.out.push_str(".PP\n");
        self.text(text);
    }

    fn indented_p(&mut self, text: &str) {
        self.out.push_str(".RS\n");
        self.text(text);
        self.out.push_str(".RE\n");
    }

    fn item(&mut self, term: &str, body: &str) {
        self.out.push_str(".TP\n");
        self.text(term);
        self.text(body);
    }

    /// An item whose body comes from clap help text: only `code` marks,
    /// since help may contain a literal `*`.
    fn item_plain_body(&mut self, term: &str, body: &str) {
        self.out.push_str(".TP\n");
        self.text(term);
        self.line(&markup(body, false));
    }

    fn indented_item(&mut self, term: &str, body: &str) {
        self.out.push_str(".RS\n");
        self.item_plain_body(term, body);
        self.out.push_str(".RE\n");
    }

    fn bullet(&mut self, text: &str) {
        self.out.push_str(".IP \\(bu 2\n");
        self.text(text);
    }

    /// A literal block, indented and not filled.
    fn code(&mut self, text: &str) {
        self.out.push_str(".PP\n.RS 4\n.nf\n");
        for line in text.lines() {
            self.line(&escape(line));
        }
        self.out.push_str(".fi\n.RE\n");
    }

    fn text(&mut self, text: &str) {
        self.line(&markup(text, true));
    }

    fn line(&mut self, roff_text: &str) {
        // A line starting with . or ' would be read as a request.
        if roff_text.starts_with(['.', '\'']) {
            self.out.push_str("\\&");
        }
        self.out.push_str(roff_text);
        self.out.push('\n');
    }
}

/// Escape `text` and turn `code` into bold and (if `italics`) *x* into italics.
fn markup(text: &str, italics: bool) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let (mut bold, mut italic) = (false, false);
    for c in text.chars() {
        match c {
            '`' if !italic => {
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            '*' if italics && !bold => {
                out.push_str(if italic { "\\fR" } else { "\\fI" });
                italic = !italic;
            }
            _ => out.push_str(&escape(&c.to_string())),
        }
    }
    if bold || italic {
        out.push_str("\\fR");
    }
    out
}

/// Escape characters that roff would otherwise interpret or typeset.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            '\'' => out.push_str("\\*(Aq"),
            '`' => out.push_str("\\(ga"),
            '^' => out.push_str("\\(ha"),
            '~' => out.push_str("\\(ti"),
            _ => out.push(c),
        }
    }
    out
}

/// groff reads its input as Latin-1 unless told otherwise: write everything
/// outside ASCII as a `\[uXXXX]` escape.
fn ascii_roff(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "\\[u{:04X}]", u32::from(c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_the_child_loses_is_documented() {
        for var in crate::supervise::SECRET_ENV {
            assert!(
                SECRET_VARS.iter().any(|(v, _)| v == var),
                "{var} is removed from the child's environment but not documented"
            );
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(markup("`-n` *N* a-b", true), "\\fB\\-n\\fR \\fIN\\fR a\\-b");
        assert_eq!(markup("a * b", false), "a * b");
        assert_eq!(escape("it's ~/x^2 \\"), "it\\*(Aqs \\(ti/x\\(ha2 \\e");
        assert_eq!(ascii_roff("a\u{2026}"), "a\\[u2026]");
    }

    #[test]
    fn man_page_is_ascii_and_has_every_section() {
        let page = man_page();
        assert!(page.is_ascii());
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "BACKENDS",
            "EXIT STATUS",
            "ENVIRONMENT",
            "THE COMMAND",
            "SIGNALS",
            "EXEC MODE",
            "WAITING",
            "JSON OUTPUT",
            "FILES",
            "EXAMPLES",
            "SECURITY",
            "NOTES",
            "SEE ALSO",
        ] {
            assert!(
                page.contains(&format!(".SH {section}\n"))
                    || page.contains(&format!(".SH \"{section}\"\n")),
                "no {section} section"
            );
        }
    }
}
