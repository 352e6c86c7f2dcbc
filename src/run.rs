//! `lockrun NAME -- COMMAND`: acquire, supervise, release.

use std::ffi::OsString;
use std::time::Instant;

use crate::backend::{AnyBackend, BackendConfig};
use crate::cli::{GlobalArgs, RunArgs};
use crate::error::{Error, Result};
use crate::exit::Exit;
use crate::guardian::Guardian;
use crate::lock::{Backend, HolderInfo, Inspect, Lease, LockName, LockRequest, WaitPolicy};
use crate::signals::Signals;
use crate::supervise::{self, ChildSpec, StopPolicy, Supervised};
use crate::ui::WaitIndicator;

/// Everything checked before any backend is touched, so bad input never
/// costs a connection and never runs the command.
pub(crate) struct RunPlan {
    pub name: LockName,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub backend: BackendConfig,
}

pub(crate) fn plan(args: &RunArgs, global: &GlobalArgs) -> Result<RunPlan> {
    let Some(raw_name) = &args.name else {
        return Err(Error::usage(
            "missing lock NAME: lockrun [OPTIONS] NAME -- COMMAND [ARGS...]",
        ));
    };
    let name = LockName::parse(raw_name)?;
    let (program, args_out) = match (&args.shell_command, args.argv.split_first()) {
        (Some(script), _) => ("/bin/sh".into(), vec!["-c".into(), script.clone()]),
        (None, Some((program, rest))) => (program.clone(), rest.to_vec()),
        (None, None) => {
            return Err(Error::usage(format!(
                "missing command: lockrun {name} -- COMMAND [ARGS...], or lockrun {name} -c 'shell command'"
            )));
        }
    };
    if program.is_empty() {
        return Err(Error::usage(
            "empty command: give the program to run after '--', e.g. lockrun NAME -- make deploy",
        ));
    }
    let backend = BackendConfig::parse(global.backend.as_deref())?;
    if let BackendConfig::Redis(redis) = &backend
        && args.ttl > redis.max_ttl
    {
        return Err(Error::usage(format!(
            "--ttl {} is longer than the Redis backend's max-ttl {}: a restarted server would not wait long enough for the old holder; add ?max-ttl={} to the URL of every lockrun using this server",
            humantime::format_duration(args.ttl),
            humantime::format_duration(redis.max_ttl),
            humantime::format_duration(args.ttl),
        )));
    }
    if args.shared {
        crate::shared::check(args, &backend)?;
    }
    if args.exec {
        let refuse = |what: &str| {
            Err(Error::usage(format!(
                "--exec cannot be combined with {what}: exec mode leaves no lockrun process to supervise the command"
            )))
        };
        if !matches!(backend, BackendConfig::File(_)) {
            return refuse("a lease backend (Redis, CloudShell); it needs the file backend");
        }
        if max_time(args).is_some() {
            return refuse("--max-time");
        }
        if args.slots.is_some() {
            return refuse("--slots");
        }
        if args.kill_escaped {
            return refuse("--kill-escaped");
        }
        if args.events.is_some() || args.metrics_file.is_some() {
            return refuse("--events or --metrics-file");
        }
    }
    Ok(RunPlan {
        name,
        program,
        args: args_out,
        backend,
    })
}

pub(crate) async fn run(plan: RunPlan, args: &RunArgs, global: &GlobalArgs) -> Result<Exit> {
    // Installed before the wait starts: a signal while waiting must abort
    // the wait cleanly, not kill us half-way through a backend request.
    let mut signals = Signals::install()?;
    // Nested inside a holder of this very lock: run at once, or fail at
    // once; never wait for ourselves.
    if let crate::reentry::Nested::Reenter = crate::reentry::check(
        &plan.name,
        args.slots,
        args.shared,
        &plan.backend,
        global.backend.as_deref(),
    )
    .await?
    {
        return crate::reentry::exec(&plan.program, &plan.args, &mut signals);
    }
    if args.exec {
        return run_exec(plan, args, global, &mut signals).await;
    }
    crate::os::become_subreaper();
    let RunPlan {
        name,
        program,
        args: child_args,
        backend,
    } = plan;
    let command_line = command_line(&program, &child_args);
    let token = crate::reentry::new_token();
    let req = LockRequest {
        name,
        slots: args.slots.unwrap_or(1),
        ttl: args.ttl,
        shared: args.shared,
        holder: HolderInfo {
            token: Some(token.clone()),
            ..HolderInfo::for_this_process(&command_line)
        },
    };
    let policy = if args.no_wait {
        WaitPolicy::NoWait
    } else {
        args.wait.map_or(WaitPolicy::Forever, |wait| {
            WaitPolicy::Until(Instant::now() + wait)
        })
    };
    let spec = |backend_url: String, lease: &dyn Lease| {
        let mut env = vec![
            ("LOCKRUN_NAME".to_owned(), req.name.to_string()),
            crate::reentry::held_env(&req.name, &token, &backend_url),
            ("LOCKRUN_BACKEND".to_owned(), backend_url),
            crate::shared::mode_env(req.shared),
        ];
        if args.slots.is_some() {
            env.push(("LOCKRUN_SLOT".to_owned(), lease.slot().to_string()));
        }
        if let Some(fence) = lease.fence() {
            env.push(("LOCKRUN_FENCE".to_owned(), fence.to_string()));
        }
        env.extend(lease.env());
        ChildSpec {
            program: program.clone(),
            args: child_args.clone(),
            env,
        }
    };
    // Before the guardian and the command exist: any child now is one this
    // pid had before `exec lockrun`, not the command's.
    // One waitid answers "none" in the usual case, without reading /proc.
    let inherited = if crate::os::has_any_child() {
        crate::os::children_of_self().unwrap_or_default()
    } else {
        Vec::new()
    };
    let stop = StopPolicy {
        kill_after: args.kill_after,
        max_time: max_time(args),
        kill_escaped: args.kill_escaped,
        inherited: &inherited,
    };
    // Started while nothing is held yet: it costs nothing inside the
    // critical section, and it is there before the command can exist.
    let guardian = Guardian::start()?;
    // After the guardian's fork (it may start a thread), before the lock.
    crate::telemetry::init(
        args.events.as_ref(),
        args.metrics_file.as_deref(),
        &req.name,
        crate::telemetry::kind_of(&backend),
    );
    let result = async {
        let mut backend = AnyBackend::connect(backend).await?;
        crate::telemetry::connected(backend.display_url());
        let mut indicator = crate::telemetry::Observed(WaitIndicator::new(global.quiet));
        loop {
            let started = Instant::now();
            let lease =
                crate::acquire::acquire(&mut backend, &req, policy, &mut signals, &mut indicator)
                    .await
                    .inspect_err(|e| {
                        if let Error::Busy(message) = e {
                            let waited = (!matches!(policy, WaitPolicy::NoWait))
                                .then(|| started.elapsed());
                            crate::telemetry::not_acquired(message, waited);
                        }
                    })?;
            // A signal that came while a backend request was in flight must
            // still abort: the command never starts after one.
            if let Some(signal) = signals.pending() {
                let _ = backend.release(lease).await;
                return Err(Error::interrupted(signal));
            }
            crate::telemetry::acquired(started.elapsed(), lease.fence(), lease.slot());
            tracing::info!(name = %req.name, slot = lease.slot(), fence = %fence_text(lease.fence()), "acquired");
            let spec = spec(backend.display_url(), &lease);
            match supervise::run_locked(
                &mut backend,
                lease,
                &req,
                &spec,
                stop,
                &mut signals,
                &guardian,
            )
            .await?
            {
                Supervised::Ran(exit) => break Ok(exit),
                // lockrun was held up (stopped, starved) between the acquire
                // reply and the spawn for so long that the lease may have
                // run out: it was released unused; take the lock afresh.
                Supervised::Stale => tracing::warn!(
                    name = %req.name,
                    "the lease ran out before the command could start; acquiring again"
                ),
            }
        }
    }
    .await;
    guardian.dismiss();
    crate::telemetry::finish();
    result
}

/// `--max-time`, where 0 (also from `LOCKRUN_MAX_TIME=0`) means no limit, as
/// `timeout 0` does: a zero limit would kill the command at once, racing
/// its start, which nobody means.
fn max_time(args: &RunArgs) -> Option<std::time::Duration> {
    args.max_time.filter(|limit| !limit.is_zero())
}

/// A fence for the log: the number, or "none" (not `Some(3)`).
fn fence_text(fence: Option<u64>) -> String {
    fence.map_or_else(|| "none".to_owned(), |f| f.to_string())
}

fn command_line(program: &OsString, args: &[OsString]) -> String {
    std::iter::once(program)
        .chain(args)
        .map(|word| word.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `--exec`: take the file lock, then become the command, which inherits
/// the lock's descriptor. Returns only if the command could not be
/// executed (or a signal came first); the lock is freed as lockrun exits.
async fn run_exec(
    plan: RunPlan,
    args: &RunArgs,
    global: &GlobalArgs,
    signals: &mut Signals,
) -> Result<Exit> {
    let RunPlan {
        name,
        program,
        args: child_args,
        backend,
    } = plan;
    let BackendConfig::File(config) = backend else {
        return Err(Error::internal("exec mode without the file backend"));
    };
    let mut backend = crate::backend::file::FileBackend::open(&config)?;
    let req = LockRequest {
        name,
        slots: 1,
        ttl: args.ttl,
        shared: args.shared,
        // The pid in the record is ours, and after the exec the command's.
        holder: HolderInfo {
            token: Some(crate::reentry::new_token()),
            ..HolderInfo::for_this_process(&command_line(&program, &child_args))
        },
    };
    let policy = if args.no_wait {
        WaitPolicy::NoWait
    } else {
        args.wait.map_or(WaitPolicy::Forever, |wait| {
            WaitPolicy::Until(Instant::now() + wait)
        })
    };
    let mut indicator = WaitIndicator::new(global.quiet);
    let lease =
        crate::acquire::acquire(&mut backend, &req, policy, signals, &mut indicator).await?;
    tracing::info!(name = %req.name, fence = %fence_text(lease.fence()), "acquired; exec");
    let mut env = vec![
        ("LOCKRUN_NAME".to_owned(), req.name.to_string()),
        ("LOCKRUN_BACKEND".to_owned(), backend.display_url()),
        crate::shared::mode_env(req.shared),
    ];
    if let Some(token) = &req.holder.token {
        env.push(crate::reentry::held_env(
            &req.name,
            token,
            &backend.display_url(),
        ));
    }
    if let Some(fence) = lease.fence() {
        env.push(("LOCKRUN_FENCE".to_owned(), fence.to_string()));
    }
    let prepared = crate::spawn::Prepared::new(&program, &child_args, &env)
        .map_err(|e| supervise::spawn_error(&program, &e))?;
    lease
        .keep_across_exec()
        .map_err(|e| Error::internal(format!("cannot pass the lock to the command: {e}")))?;
    let failed = crate::spawn::exec_in_place(&prepared, || signals.pending());
    // Still here: the descriptor closes as lockrun exits, freeing the lock.
    drop(lease);
    match failed {
        crate::spawn::InPlace::Interrupted(signal) => Err(Error::interrupted(signal)),
        crate::spawn::InPlace::Failed(e) => Err(supervise::spawn_error(&program, &e)),
    }
}
