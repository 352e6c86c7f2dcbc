//! lockrun: run a command under a named lock, and always release it.
//! `main.rs` only calls [`main`]; everything else lives in these modules.

pub(crate) mod acquire;
pub(crate) mod backend;
pub mod cli;
pub(crate) mod doctor;
pub(crate) mod duration;
pub(crate) mod error;
pub mod exit;
// A development tool (scripts/generate, tests/integration/generated.rs),
// left out of release builds: clap_complete and clap_mangen are ~90 KB of
// a binary that must stay under 5 MiB; users get the checked-in files.
#[cfg(debug_assertions)]
pub(crate) mod generate;
pub(crate) mod guardian;
#[cfg(target_env = "musl")]
pub mod heap;
pub(crate) mod inspect;
pub(crate) mod keeper;
pub mod lock;
pub(crate) mod os;
pub(crate) mod raw;
pub(crate) mod reentry;
pub(crate) mod run;
pub(crate) mod shared;
pub(crate) mod signals;
pub(crate) mod spawn;
pub mod startup;
pub mod supervise;
pub(crate) mod telemetry;
pub(crate) mod terminal;
pub(crate) mod ui;

use std::ffi::OsString;

use crate::cli::{Cli, Command};
use crate::error::{Error, Result};
use crate::exit::Exit;

/// Parse `args`, do the work, and return the process exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    let args = startup::set_args(args.into_iter().collect());
    #[cfg(debug_assertions)]
    if args.get(1).is_some_and(|arg| arg == "--generate") {
        return generate::main(&args[2..]);
    }
    // Called by the shell completions (see src/completion/): hidden, like --generate.
    if args.get(1).is_some_and(|arg| arg == "--complete-names") {
        return inspect::complete_names(args.get(2));
    }
    let cli = match Cli::parse_args(args) {
        Ok(cli) => cli,
        Err(e) => return report_parse_error(&e),
    };
    init_logging(cli.global.verbose, cli.global.quiet);
    let quiet = cli.global.quiet;
    let conflict_code = match &cli.command {
        Some(Command::Run(run)) => run.conflict_exit_code,
        Some(Command::Acquire(acquire)) => acquire.conflict_exit_code,
        _ => cli.run.conflict_exit_code,
    };
    match dispatch(&cli) {
        Ok(exit) => exit.code(),
        Err(e) => {
            // A busy lock is an expected outcome, not an error: with -q the
            // exit code alone tells it, as flock -n does.
            if !(quiet && matches!(e, Error::Busy(_))) {
                eprintln!("lockrun: {}", ui::error_line(&e.to_string()));
            }
            e.exit(conflict_code).code()
        }
    }
}

/// What the command line asks for, with everything checked that can be
/// checked before a runtime is started or a backend touched.
enum Task<'a> {
    Run(Box<run::RunPlan>, &'a cli::RunArgs),
    Status(&'a cli::StatusArgs),
    List(&'a cli::ListArgs),
    Release(&'a cli::ReleaseArgs),
    Acquire(&'a cli::AcquireArgs),
    Doctor,
}

fn dispatch(cli: &Cli) -> Result<Exit> {
    let global = &cli.global;
    let task = match &cli.command {
        Some(Command::Run(args)) => Task::Run(Box::new(run::plan(args, global)?), args),
        None => Task::Run(Box::new(run::plan(&cli.run, global)?), &cli.run),
        Some(Command::Status(args)) => Task::Status(args),
        Some(Command::List(args)) => Task::List(args),
        Some(Command::Release(args)) => Task::Release(args),
        Some(Command::Acquire(args)) => Task::Acquire(args),
        Some(Command::Doctor) => Task::Doctor,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the runtime: {e}")))?;
    // Boxed: the future is the largest of every subcommand's, and on the
    // stack its frame (tens of KiB, each page probed on entry) cost an
    // uncontended run a page fault per page, most of them for subcommands
    // it never runs (bench/analysis.md, "fifth round").
    runtime.block_on(Box::pin(async {
        match task {
            Task::Run(plan, args) => run::run(*plan, args, global).await,
            Task::Status(args) => inspect::status(args, global).await,
            Task::List(args) => inspect::list(args, global).await,
            Task::Release(args) if !args.force => keeper::release(args, global).await,
            Task::Release(args) => inspect::release(args, global).await,
            Task::Acquire(args) => keeper::acquire(args, global).await,
            Task::Doctor => doctor::doctor(global).await,
        }
    }))
}

/// clap's errors are several lines with usage; ours are one line and exit 64.
fn report_parse_error(e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return exit::USAGE;
    }
    use clap::error::{ContextKind, ContextValue};
    let mut line = cli::one_line_error(e);
    if let (Some(ContextValue::String(arg)), Some(ContextValue::String(value))) = (
        e.get(ContextKind::InvalidArg),
        e.get(ContextKind::InvalidValue),
    ) {
        // "--wait <DURATION>": if the bad value came from the environment, say so.
        let long = arg.split_whitespace().next().unwrap_or_default();
        let env = <Cli as clap::CommandFactory>::command()
            .get_arguments()
            .find(|a| a.get_long().is_some_and(|l| long == format!("--{l}")))
            .and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()));
        if let Some(env) = env
            && std::env::var_os(&env).is_some_and(|v| v.to_string_lossy() == *value)
        {
            line.push_str(&format!("; the value comes from {env}"));
        }
    }
    // "lockrun NAME make": the command needs a `--` in front of it.
    let help_for =
        cli::subcommand_of(e).map_or_else(|| "lockrun".to_owned(), |sub| format!("lockrun {sub}"));
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
        && !arg.starts_with('-')
        && matches!(cli::subcommand_of(e), None | Some("run"))
    {
        line.push_str("; the command goes after '--': lockrun NAME -- COMMAND [ARGS...]");
    }
    eprintln!(
        "lockrun: {}",
        ui::error_line(&format!("{line} (see '{help_for} --help')"))
    );
    exit::USAGE
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, _) => LevelFilter::DEBUG,
    };
    // `LOCKRUN_LOG`: `target=level` pairs separated by commas, or a bare
    // level (`lockrun=debug`, `debug,redis=trace`). A plain target list
    // instead of a full filter language: no regex engine to start up.
    let filter = std::env::var("LOCKRUN_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_target("lockrun", level));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .without_time()
                .with_target(false)
                // No escape sequences in a CI log or a file, nor with NO_COLOR.
                .with_ansi(ui::use_color()),
        )
        .with(filter)
        .try_init();
}
