//! The command line, defined once: `--help`, the man page and the shell
//! completions are all generated from these definitions.

use std::ffi::OsString;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (backends: file, redis, rediss, cloudshell, cloudshells)"
);

const EXAMPLES: &str = "\
Examples:
  lockrun nightly-backup -- ./backup.sh            # file lock on this machine
  lockrun -n deploy -- make deploy                 # skip (exit 75) if already running
  lockrun --backend redis://ci-redis:6379 -w 10m db-migration -- make migrate
  lockrun status nightly-backup                    # who holds it, since when";

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
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
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

    /// Write the man page or a shell completion script to stdout.
    #[arg(long, value_enum, value_name = "WHAT", hide = true, exclusive = true)]
    pub generate: Option<Generate>,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where locks live: file:///DIR, redis://[USER:PASS@]HOST[:PORT][/DB],
    /// rediss://…, cloudshell://HOST[:PORT]/RESERVATION [default: a per-user
    /// directory on this machine]
    #[arg(
        short = 'b',
        long,
        value_name = "URL",
        env = "LOCKRUN_BACKEND",
        hide_env_values = true,
        global = true
    )]
    pub backend: Option<String>,

    /// More diagnostics on stderr (repeat for more); LOCKRUN_LOG overrides
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on stderr; no waiting indicator
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

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
        value_parser = clap::value_parser!(OsString)
    )]
    pub argv: Vec<OsString>,

    /// Run this string with /bin/sh -c instead of COMMAND
    #[arg(short = 'c', long = "command", value_name = "STRING", conflicts_with = "COMMAND")]
    pub shell_command: Option<OsString>,

    /// Give up after waiting this long (30s, 5m, 1h30m) [default: wait forever]
    #[arg(short, long, value_name = "DURATION", env = "LOCKRUN_WAIT", value_parser = parse_duration)]
    pub wait: Option<Duration>,

    /// Fail at once if the lock is held
    #[arg(short = 'n', long, conflicts_with = "wait")]
    pub no_wait: bool,

    /// Exit code when the lock could not be had
    #[arg(
        short = 'E',
        long,
        value_name = "N",
        env = "LOCKRUN_CONFLICT_EXIT_CODE",
        default_value_t = crate::exit::TEMPFAIL
    )]
    pub conflict_exit_code: u8,

    /// Lease length for remote backends, renewed every ttl/3 while the command runs
    #[arg(long, value_name = "DURATION", env = "LOCKRUN_TTL", default_value = "30s", value_parser = parse_ttl)]
    pub ttl: Duration,

    /// Semaphore: allow up to N holders at once (the command learns its slot in LOCKRUN_SLOT)
    #[arg(long, value_name = "N", env = "LOCKRUN_SLOTS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub slots: Option<u32>,

    /// Grace between SIGTERM and SIGKILL when lockrun must stop the command
    #[arg(long, value_name = "DURATION", env = "LOCKRUN_KILL_AFTER", default_value = "10s", value_parser = parse_duration)]
    pub kill_after: Duration,

    /// Stop the command (exit 124) if it runs longer than this
    #[arg(long, value_name = "DURATION", env = "LOCKRUN_MAX_TIME", value_parser = parse_duration)]
    pub max_time: Option<Duration>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command under the lock (the default; needed when the lock is called status, list, release or run)
    Run(RunArgs),
    /// Show whether NAME is held, by whom, since when and until when
    Status(StatusArgs),
    /// List the locks the backend knows about
    List(ListArgs),
    /// Break a lock whose holder died (needs --force)
    Release(ReleaseArgs),
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
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    // A bare number means seconds, as flock(1)'s -w does.
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
        return Err("must not be negative".into());
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{e} (examples: 30s, 5m, 1h30m, 250ms)"))
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_ttl("10ms").is_err());
    }
}
