//! The command line, defined once: `--help`, the man page and the shell
//! completions are all generated from these definitions.

use std::ffi::OsString;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum, ValueHint};

pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (backends: file, redis, rediss, cloudshell, cloudshells, postgres, postgresql, etcd, etcds)"
);

/// The usage forms, as in DESIGN.md; also the man page's SYNOPSIS.
const USAGE: &str = "\
lockrun [OPTIONS] NAME -- COMMAND [ARGS...]
       lockrun [OPTIONS] NAME -c 'SHELL COMMAND'
       lockrun run [OPTIONS] NAME -- COMMAND [ARGS...]
       lockrun status [--json] [--exit-status] [--slots N] NAME
       lockrun list [--json]
       lockrun acquire [OPTIONS] [--for-pid PID] NAME
       lockrun release [--for-pid PID] NAME
       lockrun release --force [--slots N] NAME
       lockrun doctor [--backend URL]";

/// Shown after `-h` and `--help`. Every line here must be true: the README,
/// the man page and the tests rely on it.
const EXAMPLES: &str = "\
Examples:
  lockrun nightly-backup -- ./backup.sh        # wait for the lock, then run
  lockrun -n deploy -- make deploy             # already running? exit 75 at once
  lockrun -w 10m -b redis://ci-redis db-migrate -- make migrate
  lockrun status nightly-backup                # who holds it, since when

A lock called status, list, acquire, release or run: lockrun run status -- CMD.
Exit codes: the command's own; 75 busy, 76 lock lost, 124 --max-time,
69 backend down, 64 bad arguments. Full details: man lockrun.";

/// Run a command under a named lock, and always release it.
///
/// lockrun takes the lock NAME from a backend (a lock file on this machine by
/// default, Redis, or a CloudShell reservation), runs COMMAND as its child,
/// and releases the lock when the command exits, fails, is killed, or when
/// lockrun itself gets a signal. The command never runs without the lock.
#[derive(Debug, Parser)]
#[command(
    name = "lockrun",
    version = VERSION,
    override_usage = USAGE,
    after_help = EXAMPLES,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    subcommand_value_name = "SUBCOMMAND",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The run mode's parser: the top level without the subcommands, whose
/// argument trees clap would otherwise build on every run (about a quarter
/// of lockrun's instructions before the lock; bench/analysis.md). No help
/// or version flags: `--help` fails here and goes to [`Cli`].
#[derive(Debug, Parser)]
#[command(
    name = "lockrun",
    disable_help_flag = true,
    disable_version_flag = true
)]
struct RunOnly {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(flatten)]
    run: RunArgs,
}

impl Cli {
    /// Parse `args` as [`Cli::try_parse_from`] does. When no argument before
    /// the first `--` names a subcommand, clap cannot enter one, so the run
    /// mode's smaller parser gives the same result; any error it reports is
    /// discarded and the full parser reports its own (help, usage, tips).
    pub(crate) fn parse_args(args: &[std::ffi::OsString]) -> Result<Cli, clap::Error> {
        use clap::Subcommand;
        let names_subcommand = args
            .iter()
            .skip(1)
            .take_while(|arg| *arg != "--")
            .any(|arg| arg.to_str().is_some_and(Command::has_subcommand));
        if !names_subcommand && let Ok(run) = RunOnly::try_parse_from(args) {
            return Ok(Cli {
                global: run.global,
                run: run.run,
                command: None,
            });
        }
        Cli::try_parse_from(args)
    }
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where locks live [default: lock files in a private per-user directory]
    ///
    /// file:///DIR (lock files in DIR, e.g. shared by several users),
    /// redis://[USER@]HOST[:PORT][/DB] or rediss://… (TLS),
    /// cloudshell://HOST[:PORT]/RESERVATION or cloudshells://… (TLS),
    /// postgres://[USER@]HOST[:PORT][/DB] (advisory locks).
    /// Passwords and tokens belong in LOCKRUN_REDIS_PASSWORD,
    /// LOCKRUN_PG_PASSWORD and LOCKRUN_CLOUDSHELL_*, not in the URL, where
    /// ps(1) shows them.
    #[arg(
        short = 'b',
        long,
        value_name = "URL",
        value_hint = ValueHint::Url,
        env = "LOCKRUN_BACKEND",
        hide_env_values = true,
        global = true
    )]
    pub backend: Option<String>,

    /// More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr: no waiting indicator, and a busy lock shows only in the exit code
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

// Each bool is an independent on/off flag of the command line, as clap
// parses it; an enum per flag would only move the bools elsewhere.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Lock name: 1-200 bytes of A-Z a-z 0-9 . _ -, not starting with '.'
    #[arg(value_name = "NAME", value_parser = clap::value_parser!(OsString))]
    pub name: Option<OsString>,

    /// The command and its arguments, after `--`
    #[arg(
        id = "COMMAND",
        value_name = "COMMAND",
        last = true,
        value_hint = ValueHint::CommandWithArguments,
        value_parser = clap::value_parser!(OsString)
    )]
    pub argv: Vec<OsString>,

    /// Run STRING with /bin/sh -c instead of COMMAND
    #[arg(
        short = 'c',
        long = "command",
        value_name = "STRING",
        value_hint = ValueHint::CommandString,
        conflicts_with = "COMMAND"
    )]
    pub shell_command: Option<OsString>,

    /// Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]
    #[arg(
        short,
        long,
        value_name = "DURATION",
        env = "LOCKRUN_WAIT",
        hide_env_values = true,
        allow_negative_numbers = true,
        value_parser = crate::duration::option
    )]
    pub wait: Option<Duration>,

    /// Take a shared (reader) lock: any number of shared holders at once, or one exclusive
    ///
    /// As `flock -s`: shared holders run side by side, and exclude every
    /// exclusive holder (a plain lockrun, `flock -x`). On the file backend it
    /// is flock(2) LOCK_SH on the same lock file, so `flock -s` and
    /// `lockrun --shared` share it. On Redis and etcd a waiting exclusive
    /// holder is not starved by a stream of shared ones: Redis admits no new
    /// shared holder while an exclusive one waits, etcd serves everyone in
    /// arrival order. PostgreSQL uses pg_advisory_lock_shared on the same key.
    /// The command learns the mode in LOCKRUN_MODE (shared or exclusive).
    /// Refused with --slots and the CloudShell backend.
    #[arg(short = 's', long)]
    pub shared: bool,

    /// Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)
    #[arg(short = 'n', long)]
    pub no_wait: bool,

    /// Exit code when the lock could not be had
    #[arg(
        short = 'E',
        long,
        value_name = "N",
        env = "LOCKRUN_CONFLICT_EXIT_CODE",
        hide_env_values = true,
        default_value_t = crate::exit::TEMPFAIL
    )]
    pub conflict_exit_code: u8,

    /// Lease length for remote backends, renewed every ttl/3 while the command runs
    ///
    /// If lockrun dies without releasing, a Redis lock frees itself after at
    /// most this long; a PostgreSQL lock of a dead or cut-off host is freed
    /// by the server about this long after its last packet. The file backend needs no lease: the kernel frees a
    /// lock file the moment its holder exits.
    #[arg(
        long,
        value_name = "DURATION",
        env = "LOCKRUN_TTL",
        hide_env_values = true,
        default_value = "30s",
        allow_negative_numbers = true,
        value_parser = crate::duration::ttl
    )]
    pub ttl: Duration,

    /// Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)
    ///
    /// Slot k of NAME is its own lock, NAME@k. Everyone using NAME must pass
    /// the same N.
    #[arg(
        long,
        value_name = "N",
        env = "LOCKRUN_SLOTS",
        hide_env_values = true,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub slots: Option<u32>,

    /// Grace between SIGTERM and SIGKILL when lockrun must stop the command
    #[arg(
        long,
        value_name = "DURATION",
        env = "LOCKRUN_KILL_AFTER",
        hide_env_values = true,
        default_value = "10s",
        allow_negative_numbers = true,
        value_parser = crate::duration::option
    )]
    pub kill_after: Duration,

    /// Also stop processes that left the command's process group
    ///
    /// A process the command started that moved to a new session or process
    /// group (setsid, a daemon's double fork) is out of reach of the signals
    /// sent to the command's group. lockrun still sees it (it is their
    /// subreaper) and by default names such processes in one warning when
    /// the lock is released; with this option they are stopped like the
    /// command's other leftovers: SIGTERM, then SIGKILL after --kill-after.
    #[arg(long, env = "LOCKRUN_KILL_ESCAPED", hide_env_values = true)]
    pub kill_escaped: bool,

    /// Stop the command (exit 124) if it runs longer than this; 0 means no limit
    #[arg(
        long,
        value_name = "DURATION",
        env = "LOCKRUN_MAX_TIME",
        hide_env_values = true,
        allow_negative_numbers = true,
        value_parser = crate::duration::option
    )]
    pub max_time: Option<Duration>,

    /// Exec mode (file backend only): take the lock, then become the command
    ///
    /// Like `flock -F` or setlock: lockrun execs the command itself, which
    /// inherits the lock's descriptor, so no supervisor process stays
    /// behind. The lock is held until the command and everything that
    /// inherited the descriptor (a daemon it starts) have exited. No lease,
    /// guardian or signal forwarding; refused with --max-time, --slots,
    /// --kill-escaped and the Redis and CloudShell backends.
    #[arg(long = "exec", env = "LOCKRUN_EXEC", hide_env_values = true)]
    pub exec: bool,

    /// Append one JSON line per event (waiting, acquired, renewed, lost, released, ...) to FILE or descriptor N
    ///
    /// Schema "lockrun.event/1" (docs/json-schema.md). FILE is opened for
    /// appending before the lock is taken; fd:N writes to an inherited
    /// descriptor (e.g. 3>>events.jsonl). Events never change the outcome:
    /// if they cannot be written, lockrun warns once and carries on.
    #[arg(
        long,
        value_name = "FILE|fd:N",
        value_hint = ValueHint::FilePath,
        env = "LOCKRUN_EVENTS",
        hide_env_values = true,
        value_parser = crate::telemetry::parse_events
    )]
    pub(crate) events: Option<crate::telemetry::EventsTarget>,

    /// Add this run to a node_exporter textfile-collector file (acquisitions, busy exits, losses, wait and hold times)
    ///
    /// The counts accumulate across runs: PATH is read, updated and
    /// replaced atomically (through PATH.tmp) under an flock on PATH.lock.
    /// Point it into the collector's directory as NAME.prom.
    #[arg(
        long,
        value_name = "PATH",
        value_hint = ValueHint::FilePath,
        env = "LOCKRUN_METRICS_FILE",
        hide_env_values = true
    )]
    pub metrics_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command under the lock (the default; needed when the lock is called status, list, acquire, release or run)
    Run(RunArgs),
    /// Show whether NAME is held, by whom, since when and until when
    ///
    /// Reads the lock without taking it, so it never gets in the way of a
    /// waiting or starting holder. Exit 0 whether the lock is held or free;
    /// with --exit-status, 0 if free and 1 if held.
    Status(StatusArgs),
    /// List the locks the backend knows about
    List(ListArgs),
    /// Take NAME and keep it for later steps of a job, until PID exits
    ///
    /// Returns (exit 0) once the lock is held, leaving a small detached
    /// keeper process that holds it (renewing the lease) and releases it
    /// when PID exits (default: lockrun's parent, the job's shell), when
    /// 'lockrun release NAME' asks, or when the lock is lost. Waits as the
    /// run mode does (-w, -n, -E); prints nothing on stdout but with --json.
    Acquire(AcquireArgs),
    /// End a lock that 'lockrun acquire' keeps; with --force, break any holder's lock
    ///
    /// Without --force: only a lock kept by a keeper of this user that
    /// watches one of this process's ancestors (the job that acquired it),
    /// or the process given with --for-pid; exit 1 if there is none, 76 if
    /// the keeper had lost the lock. With --force, for locks that do not
    /// free themselves when their holder dies (CloudShell service aliases):
    /// a file lock is freed by the kernel the moment its holder exits, and a
    /// Redis lease expires after --ttl.
    Release(ReleaseArgs),
    /// Check the backend's setup for what silently breaks exclusion
    ///
    /// Looks, changes nothing: a lock directory on NFS or another network
    /// file system, on a private tmpfs, or cleaned by systemd-tmpfiles; the
    /// permissions of a shared lock directory; a Redis replica or one
    /// without persistence; PostgreSQL behind a transaction pooler; etcd
    /// members without a leader; this machine's clock against the
    /// server's. One finding per line ("ok:", "note:", "problem:"). Exit 0
    /// when no problem was found, 1 when one was, 69 when the backend
    /// cannot be reached, 77 when it refuses our credentials.
    Doctor,
}

#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// Lock name
    #[arg(value_name = "NAME", value_parser = clap::value_parser!(OsString))]
    pub name: OsString,

    /// Keep the lock until this process exits [default: lockrun's parent]
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub for_pid: Option<u32>,

    /// Give up after waiting this long (30s, 5m, 1h30m, or seconds) [default: wait forever]
    #[arg(
        short,
        long,
        value_name = "DURATION",
        env = "LOCKRUN_WAIT",
        hide_env_values = true,
        allow_negative_numbers = true,
        value_parser = crate::duration::option
    )]
    pub wait: Option<Duration>,

    /// Fail at once if the lock is held (wins over --wait and LOCKRUN_WAIT)
    #[arg(short = 'n', long)]
    pub no_wait: bool,

    /// Exit code when the lock could not be had
    #[arg(
        short = 'E',
        long,
        value_name = "N",
        env = "LOCKRUN_CONFLICT_EXIT_CODE",
        hide_env_values = true,
        default_value_t = crate::exit::TEMPFAIL
    )]
    pub conflict_exit_code: u8,

    /// Lease length for remote backends, renewed every ttl/3 by the keeper
    #[arg(
        long,
        value_name = "DURATION",
        env = "LOCKRUN_TTL",
        hide_env_values = true,
        default_value = "30s",
        allow_negative_numbers = true,
        value_parser = crate::duration::ttl
    )]
    pub ttl: Duration,

    /// Semaphore: take one of N slots of NAME
    #[arg(
        long,
        value_name = "N",
        env = "LOCKRUN_SLOTS",
        hide_env_values = true,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub slots: Option<u32>,

    /// Print one JSON line (schema "lockrun.acquire/1") once the lock is held
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Lock name
    #[arg(value_name = "NAME", value_parser = clap::value_parser!(OsString))]
    pub name: OsString,

    /// Number of slots, if NAME is used with --slots [default: discovered]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub slots: Option<u32>,

    /// Machine-readable output (schema "lockrun.status/1")
    #[arg(long)]
    pub json: bool,

    /// Exit 0 if NAME is free, 1 if it is held (any slot), for scripts
    #[arg(long)]
    pub exit_status: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output (schema "lockrun.list/1")
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Lock name
    #[arg(value_name = "NAME", value_parser = clap::value_parser!(OsString))]
    pub name: OsString,

    /// Number of slots, if NAME is used with --slots [default: discovered]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub slots: Option<u32>,

    /// Really break the lock, whoever holds it
    #[arg(long, conflicts_with = "for_pid")]
    pub force: bool,

    /// End the keeper that 'lockrun acquire --for-pid PID' started [default: the job's]
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub for_pid: Option<u32>,
}

/// What `lockrun --generate WHAT` writes (debug builds only). That flag is
/// handled before clap parses (see `generate::main`), so it never shows up
/// in `--help`, the man page or the completions it generates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// clap's error as one line, built from its kind and context (the
/// argument, the value, the validator's reason, the suggestion), not from
/// its rendered text.
pub(crate) fn one_line_error(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(" ")),
        Some(ContextValue::StyledStr(s)) => Some(s.to_string()),
        Some(ContextValue::StyledStrs(v)) => Some(
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Some(ContextValue::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let arg = text(ContextKind::InvalidArg).unwrap_or_default();
    match e.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let value = text(ContextKind::InvalidValue).unwrap_or_default();
            let reason = std::error::Error::source(e)
                .map(ToString::to_string)
                .or_else(|| text(ContextKind::ValidValue).map(|v| format!("possible values: {v}")));
            match reason {
                Some(reason) => format!("invalid value '{value}' for '{arg}': {reason}"),
                None => format!("invalid value '{value}' for '{arg}'"),
            }
        }
        ErrorKind::UnknownArgument => {
            let mut line = format!("unexpected argument '{arg}' found");
            if let Some(similar) = text(ContextKind::SuggestedArg) {
                line.push_str(&format!("; tip: a similar argument exists: '{similar}'"));
            }
            line
        }
        ErrorKind::MissingRequiredArgument => {
            format!("the following required arguments were not provided: {arg}")
        }
        ErrorKind::ArgumentConflict => match text(ContextKind::PriorArg) {
            Some(prior) => format!("the argument '{arg}' cannot be used with '{prior}'"),
            None => format!("the argument '{arg}' cannot be used here"),
        },
        ErrorKind::InvalidSubcommand => format!("unrecognized subcommand '{arg}'"),
        ErrorKind::NoEquals => format!("equal sign is needed when assigning values to '{arg}'"),
        ErrorKind::TooManyValues => format!("unexpected value for '{arg}'"),
        ErrorKind::WrongNumberOfValues | ErrorKind::TooFewValues => {
            format!("wrong number of values for '{arg}'")
        }
        ErrorKind::InvalidUtf8 => "invalid UTF-8 in an argument".to_owned(),
        kind => kind.as_str().unwrap_or("invalid arguments").to_owned(),
    }
}

/// The subcommand whose arguments clap was parsing when it failed, from
/// the error's usage context (`None`: the top level).
pub(crate) fn subcommand_of(e: &clap::Error) -> Option<&'static str> {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::StyledStr(usage)) = e.get(ContextKind::Usage) else {
        return None;
    };
    let usage = usage.to_string();
    let second = usage.split_whitespace().nth(2)?;
    ["run", "status", "list", "acquire", "release", "doctor"]
        .into_iter()
        .find(|sub| *sub == second)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
        RunOnly::command().debug_assert();
    }

    #[test]
    fn the_run_only_parser_agrees_with_the_full_one() {
        let cases: &[&[&str]] = &[
            &["lockrun", "x", "--", "true"],
            &[
                "lockrun",
                "-n",
                "-w",
                "5s",
                "-b",
                "file:///tmp/l",
                "x",
                "--",
                "a",
                "b",
            ],
            &["lockrun", "x", "--", "status", "run"],
            &["lockrun", "run", "status", "--", "true"],
            &["lockrun", "status", "x"],
            &["lockrun", "-q", "x", "true"],
            &["lockrun", "x"],
            &["lockrun", "--help"],
            &["lockrun", "-h"],
            &["lockrun", "-V"],
            &["lockrun", "--version"],
            &["lockrun", "-nh", "x", "--", "true"],
            &["lockrun", "--wiat", "5s", "x", "--", "true"],
            &["lockrun", "statu", "x"],
        ];
        for case in cases {
            let args: Vec<std::ffi::OsString> = case.iter().map(Into::into).collect();
            let fast = Cli::parse_args(&args).map(|c| format!("{c:?}"));
            let full = Cli::try_parse_from(&args).map(|c| format!("{c:?}"));
            assert_eq!(
                fast.map_err(|e| e.to_string()),
                full.map_err(|e| e.to_string()),
                "{case:?}"
            );
        }
    }
}
