//! `--events` (one JSON line per event, schema `lockrun.event/1`) and
//! `--metrics-file` (node_exporter's textfile-collector format, accumulated
//! across runs). See docs/json-schema.md and docs/DESIGN.md, "Telemetry".
//!
//! Telemetry never changes what lockrun does: a file that cannot be opened
//! or written costs one warning, and the command's outcome is the same. The
//! events file is opened before the lock is taken, and every line is handed
//! to a writer thread through a bounded queue, so a slow disk or a full
//! pipe can delay the event stream but never a renewal.
//!
//! The hooks in `run`, `supervise` and `acquire` are one-line calls into a
//! process-wide sink: one lockrun process runs one lock, so there is
//! exactly one stream, set up once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::lock::{HolderInfo, LockName, WaitDisplay};

/// The event stream's schema and version (docs/json-schema.md).
pub(crate) const EVENT_SCHEMA: &str = "lockrun.event/1";

/// Lines queued for the writer before new ones are dropped (with a warning).
const QUEUE: usize = 1024;

/// How long lockrun waits at exit for queued lines to be written.
const FLUSH_LIMIT: Duration = Duration::from_secs(2);

/// Where `--events` goes: a file (appended to) or an inherited descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventsTarget {
    File(PathBuf),
    Fd(i32),
}

/// `--events FILE|fd:N`.
pub(crate) fn parse_events(text: &str) -> Result<EventsTarget, String> {
    if let Some(n) = text.strip_prefix("fd:") {
        return match n.parse::<i32>() {
            Ok(fd) if fd >= 0 => Ok(EventsTarget::Fd(fd)),
            _ => Err(format!(
                "{n:?} is not a descriptor number; use fd:N with N >= 0, e.g. fd:3"
            )),
        };
    }
    if text.is_empty() {
        return Err("empty path; give a FILE or fd:N".to_owned());
    }
    Ok(EventsTarget::File(PathBuf::from(text)))
}

/// What is counted for `--metrics-file` in this run.
#[derive(Default)]
struct Tally {
    acquisitions: u64,
    busy: u64,
    losses: u64,
    waits: Vec<f64>,
    holds: Vec<f64>,
}

struct State {
    backend: String,
    kind: &'static str,
    waiting_announced: bool,
    acquired_at: Option<Instant>,
    lost: bool,
    tally: Tally,
    tx: Option<SyncSender<Vec<u8>>>,
    done: Option<Receiver<()>>,
    dropped_warned: bool,
}

struct Sink {
    name: String,
    pid: u32,
    metrics: Option<PathBuf>,
    state: Mutex<State>,
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn state(sink: &Sink) -> MutexGuard<'_, State> {
    // Poisoning needs a panic while holding it; telemetry goes on regardless.
    sink.state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Set up telemetry for this run. Opens the events file now, before the lock
/// is taken. Must be called after the guardian is forked: it may start a
/// thread, and the guardian must be forked from a single-threaded process.
pub(crate) fn init(
    events: Option<&EventsTarget>,
    metrics: Option<&Path>,
    name: &LockName,
    kind: &'static str,
) {
    if events.is_none() && metrics.is_none() {
        return;
    }
    let (tx, done) = match events.map(open_events) {
        Some(Ok(out)) => {
            let (tx, done) = start_writer(out);
            (Some(tx), Some(done))
        }
        Some(Err(e)) => {
            eprintln!(
                "lockrun: warning: {}",
                crate::ui::error_line(&format!("no events will be written: {e}"))
            );
            (None, None)
        }
        None => (None, None),
    };
    let _ = SINK.set(Sink {
        name: name.to_string(),
        pid: std::process::id(),
        metrics: metrics.map(Path::to_path_buf),
        state: Mutex::new(State {
            backend: String::new(),
            kind,
            waiting_announced: false,
            acquired_at: None,
            lost: false,
            tally: Tally::default(),
            tx,
            done,
            dropped_warned: false,
        }),
    });
}

fn open_events(target: &EventsTarget) -> Result<File, String> {
    match target {
        EventsTarget::File(path) => {
            let failed =
                |e: std::io::Error| format!("cannot open --events {}: {e}", path.display());
            // O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of
            // blocking the open for ever, with SIGTERM and Ctrl-C only
            // noted by the handlers. The writer thread then writes blocking.
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o666)
                .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
                .open(path)
                .map_err(failed)?;
            nix::fcntl::fcntl(
                &file,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
            )
            .map_err(|e| failed(e.into()))?;
            Ok(file)
        }
        &EventsTarget::Fd(fd) => {
            // Our own copy, close-on-exec: the command keeps whatever it
            // inherited of the caller's descriptor, nothing more.
            // SAFETY: fcntl on any integer is safe; it fails with EBADF
            // when `fd` is not open.
            let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if copy < 0 {
                return Err(format!(
                    "cannot use --events fd:{fd}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: `copy` was just created by F_DUPFD_CLOEXEC and is owned
            // by nothing else.
            Ok(File::from(unsafe { OwnedFd::from_raw_fd(copy) }))
        }
    }
}

/// The writer thread: writes each line with one `write` (O_APPEND keeps
/// lines of concurrent lockruns whole), warns once on a write error and
/// then discards the rest. Signals stay with the main thread.
fn start_writer(mut out: File) -> (SyncSender<Vec<u8>>, Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let (done_tx, done) = std::sync::mpsc::sync_channel::<()>(1);
    let spawned = std::thread::Builder::new()
        .name("lockrun-events".into())
        .spawn(move || {
            block_signals();
            let mut failed = false;
            for line in rx {
                if failed {
                    continue;
                }
                if let Err(e) = out.write_all(&line) {
                    failed = true;
                    eprintln!(
                        "lockrun: warning: {}",
                        crate::ui::error_line(&format!(
                            "cannot write --events: {e}; no more events will be written"
                        ))
                    );
                }
            }
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        eprintln!(
            "lockrun: warning: cannot start the events writer: {e}; no events will be written"
        );
    }
    (tx, done)
}

fn block_signals() {
    // SAFETY: an all-filled sigset and pthread_sigmask on the calling thread
    // only change this thread's signal mask.
    unsafe {
        let mut all = std::mem::zeroed::<libc::sigset_t>();
        libc::sigfillset(&raw mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &raw const all, std::ptr::null_mut());
    }
}

/// The backend's kind, the `backend` label of the metrics.
pub(crate) fn kind_of(config: &crate::backend::BackendConfig) -> &'static str {
    use crate::backend::BackendConfig;
    match config {
        BackendConfig::File(_) => "file",
        BackendConfig::Redis(_) => "redis",
        BackendConfig::CloudShell(_) => "cloudshell",
        BackendConfig::Postgres(_) => "postgres",
        BackendConfig::Etcd(_) => "etcd",
    }
}

/// The backend is connected: its URL (without secrets) goes into every event.
pub(crate) fn connected(display_url: String) {
    if let Some(sink) = SINK.get() {
        state(sink).backend = display_url;
    }
}

fn emit(sink: &Sink, state: &mut State, event: &str, fields: Value) {
    let Some(tx) = &state.tx else { return };
    let now = SystemTime::now();
    let unix_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut line = json!({
        "schema": EVENT_SCHEMA,
        "event": event,
        "time": humantime::format_rfc3339_millis(now).to_string(),
        "unix_ms": unix_ms,
        "name": sink.name,
        "backend": state.backend,
        "pid": sink.pid,
    });
    if let (Value::Object(line), Value::Object(fields)) = (&mut line, fields) {
        line.extend(fields);
    }
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    match tx.try_send(bytes) {
        Ok(()) | Err(TrySendError::Disconnected(_)) => {}
        Err(TrySendError::Full(_)) => {
            if !state.dropped_warned {
                state.dropped_warned = true;
                eprintln!(
                    "lockrun: warning: --events cannot keep up (its reader is slow or stuck); events are dropped"
                );
            }
        }
    }
}

fn with_sink(f: impl FnOnce(&Sink, &mut State)) {
    if let Some(sink) = SINK.get() {
        f(sink, &mut state(sink));
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn holder_json(holder: Option<&HolderInfo>) -> Value {
    holder.map_or(
        Value::Null,
        |h| json!({"host": h.host, "pid": h.pid, "user": h.user, "command": h.command}),
    )
}

/// The lock was taken after waiting `waited`.
pub(crate) fn acquired(waited: Duration, fence: Option<u64>, slot: u32) {
    with_sink(|sink, state| {
        state.acquired_at = Some(Instant::now());
        state.lost = false;
        state.waiting_announced = false;
        state.tally.acquisitions += 1;
        state.tally.waits.push(waited.as_secs_f64());
        emit(
            sink,
            state,
            "acquired",
            json!({"wait_ms": millis(waited), "fence": fence, "slot": slot}),
        );
    });
}

/// The lease was renewed (or, without a lease, found still ours).
pub(crate) fn renewed() {
    with_sink(|sink, state| emit(sink, state, "renewed", json!({})));
}

/// The lock was lost while the command ran; once per acquisition.
pub(crate) fn lost(reason: &str) {
    with_sink(|sink, state| {
        if state.lost {
            return;
        }
        state.lost = true;
        state.tally.losses += 1;
        emit(
            sink,
            state,
            "lost",
            json!({"reason": crate::ui::redact_url(reason)}),
        );
    });
}

/// The command's process exited: its code, or the signal that killed it.
pub(crate) fn child_exit(status: std::process::ExitStatus) {
    use std::os::unix::process::ExitStatusExt;
    with_sink(|sink, state| {
        emit(
            sink,
            state,
            "child_exit",
            json!({"code": status.code(), "signal": status.signal()}),
        );
    });
}

/// The lock was given back (`error`: why the release failed, if it did).
pub(crate) fn released(error: Option<&str>) {
    with_sink(|sink, state| {
        let held = state.acquired_at.take().map(|at| at.elapsed());
        if let Some(held) = held {
            state.tally.holds.push(held.as_secs_f64());
        }
        emit(
            sink,
            state,
            "released",
            json!({
                "hold_ms": held.map(millis),
                "error": error.map(crate::ui::redact_url),
            }),
        );
    });
}

/// The lock could not be had: `waited` is `None` for `--no-wait` (event
/// `busy`), else how long lockrun waited before `--wait` ran out (`gave_up`).
pub(crate) fn not_acquired(message: &str, waited: Option<Duration>) {
    with_sink(|sink, state| {
        state.tally.busy += 1;
        let message = crate::ui::redact_url(message);
        match waited {
            None => emit(sink, state, "busy", json!({"message": message})),
            Some(waited) => emit(
                sink,
                state,
                "gave_up",
                json!({"waited_ms": millis(waited), "message": message}),
            ),
        }
    });
}

/// A wait display that also reports the start of each wait as a
/// `waiting` event (with the holder, when the backend told it).
pub(crate) struct Observed<D>(pub(crate) D);

impl<D: WaitDisplay> WaitDisplay for Observed<D> {
    fn tick(&self) -> Option<Duration> {
        self.0.tick()
    }

    fn show(
        &mut self,
        name: &LockName,
        holder: Option<&HolderInfo>,
        position: Option<u32>,
        waiting_since: Instant,
    ) {
        with_sink(|sink, state| {
            if !state.waiting_announced {
                state.waiting_announced = true;
                let since = holder
                    .filter(|h| h.since > 0)
                    .map(|h| crate::lock::rfc3339(h.since));
                emit(
                    sink,
                    state,
                    "waiting",
                    json!({
                        "holder": holder_json(holder),
                        "holder_since": since,
                        "position": position,
                    }),
                );
            }
        });
        self.0.show(name, holder, position, waiting_since);
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The run is over: write the queued events out (within a bound) and add
/// this run to the metrics file.
pub(crate) fn finish() {
    let Some(sink) = SINK.get() else { return };
    let (done, tally, kind) = {
        let mut state = state(sink);
        state.tx = None;
        (
            state.done.take(),
            std::mem::take(&mut state.tally),
            state.kind,
        )
    };
    if let Some(done) = done {
        let _ = done.recv_timeout(FLUSH_LIMIT);
    }
    if let Some(path) = &sink.metrics
        && let Err(e) = add_to_metrics(path, &sink.name, kind, &tally)
    {
        eprintln!(
            "lockrun: warning: {}",
            crate::ui::error_line(&format!(
                "cannot update --metrics-file {}: {e}",
                path.display()
            ))
        );
    }
}

// ---------------------------------------------------------------------------
// The metrics file.

/// Histogram bucket bounds (seconds), the same for wait and hold times:
/// from a 10 ms hand-over to a four-hour nightly job.
pub(crate) const BUCKETS: [f64; 10] = [
    0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    /// Cumulative counts, one per bound in [`BUCKETS`], then +Inf.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, value: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.buckets[BUCKETS.len()] += 1;
        self.sum += value;
        self.count += 1;
    }
}

/// One lock's series: labels `name` and `backend` (the backend's kind).
#[derive(Debug, Clone, Default, PartialEq)]
struct Series {
    acquisitions: u64,
    busy: u64,
    losses: u64,
    wait: Histogram,
    hold: Histogram,
}

type Metrics = std::collections::BTreeMap<(String, String), Series>;

const COUNTERS: [(&str, &str); 3] = [
    (
        "lockrun_acquisitions_total",
        "Times lockrun acquired the lock.",
    ),
    (
        "lockrun_busy_total",
        "Times lockrun did not get the lock: busy with --no-wait, or --wait ran out.",
    ),
    (
        "lockrun_losses_total",
        "Times the lock was lost while the command ran.",
    ),
];

const HISTOGRAMS: [(&str, &str); 2] = [
    (
        "lockrun_wait_seconds",
        "Time from starting to wait to holding the lock, per acquisition.",
    ),
    (
        "lockrun_hold_seconds",
        "Time the lock was held, per acquisition.",
    ),
];

/// Add this run's counts to the file at `path`: read, add, write to
/// `PATH.tmp` and rename over `path`, all under an flock on `PATH.lock`,
/// so concurrent lockruns never lose each other's counts and the collector
/// never reads half a file.
fn add_to_metrics(path: &Path, name: &str, kind: &str, tally: &Tally) -> std::io::Result<()> {
    let sidecar = with_suffix(path, ".lock");
    let guard = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o666)
        .custom_flags(libc::O_CLOEXEC)
        .open(&sidecar)?;
    // Bounded: a lockrun stopped while it updates the file must not keep
    // every later lockrun from exiting.
    let deadline = Instant::now() + FLUSH_LIMIT;
    let mut guard = guard;
    let guard = loop {
        match nix::fcntl::Flock::lock(guard, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(locked) => break locked,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                guard = file;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(std::io::Error::other(format!(
                    "{} stayed locked by another process for {}s",
                    sidecar.display(),
                    FLUSH_LIMIT.as_secs()
                )));
            }
            Err((_, e)) => return Err(e.into()),
        }
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer; only a regular
    // file is read (a device such as /dev/zero never ends).
    let existing = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path);
    let mut metrics = match existing {
        Ok(mut file) => {
            if !file.metadata()?.is_file() {
                return Err(std::io::Error::other("not a regular file"));
            }
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            parse_metrics(&text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Metrics::new(),
        Err(e) => return Err(e),
    };
    let series = metrics
        .entry((name.to_owned(), kind.to_owned()))
        .or_default();
    series.acquisitions += tally.acquisitions;
    series.busy += tally.busy;
    series.losses += tally.losses;
    for &wait in &tally.waits {
        series.wait.observe(wait);
    }
    for &hold in &tally.holds {
        series.hold.observe(hold);
    }
    let tmp = with_suffix(path, ".tmp");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        // A FIFO left at PATH.tmp fails (ENXIO) instead of waiting.
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&tmp)?;
    out.write_all(render_metrics(&metrics).as_bytes())?;
    out.flush()?;
    std::fs::rename(&tmp, path)?;
    drop(guard);
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

fn render_metrics(metrics: &Metrics) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let labels = |(name, kind): &(String, String)| {
        format!("name=\"{}\",backend=\"{}\"", escape(name), escape(kind))
    };
    for (i, (metric, help)) in COUNTERS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} counter");
        for (key, series) in metrics {
            let value = [series.acquisitions, series.busy, series.losses][i];
            let _ = writeln!(out, "{metric}{{{}}} {value}", labels(key));
        }
    }
    for (i, (metric, help)) in HISTOGRAMS.iter().enumerate() {
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} histogram");
        for (key, series) in metrics {
            let h = if i == 0 { &series.wait } else { &series.hold };
            let labels = labels(key);
            for (bound, count) in BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "{metric}_bucket{{{labels},le=\"+Inf\"}} {}",
                h.buckets[BUCKETS.len()]
            );
            let _ = writeln!(out, "{metric}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "{metric}_count{{{labels}}} {}", h.count);
        }
    }
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Read back what [`render_metrics`] wrote. Lines it does not recognise
/// (comments, other metrics, buckets of other bounds) are skipped.
fn parse_metrics(text: &str) -> Metrics {
    let mut metrics = Metrics::new();
    for line in text.lines() {
        let Some((metric, labels, value)) = split_sample(line) else {
            continue;
        };
        let (Some(name), Some(kind)) = (labels.get("name"), labels.get("backend")) else {
            continue;
        };
        let series = metrics.entry((name.clone(), kind.clone())).or_default();
        let count = || value.parse::<u64>().ok();
        match metric {
            "lockrun_acquisitions_total" => series.acquisitions = count().unwrap_or(0),
            "lockrun_busy_total" => series.busy = count().unwrap_or(0),
            "lockrun_losses_total" => series.losses = count().unwrap_or(0),
            _ => {
                let (histogram, part) =
                    if let Some(part) = metric.strip_prefix("lockrun_wait_seconds_") {
                        (&mut series.wait, part)
                    } else if let Some(part) = metric.strip_prefix("lockrun_hold_seconds_") {
                        (&mut series.hold, part)
                    } else {
                        continue;
                    };
                match part {
                    "sum" => histogram.sum = value.parse().unwrap_or(0.0),
                    "count" => histogram.count = count().unwrap_or(0),
                    "bucket" => {
                        let le = labels.get("le").map(String::as_str);
                        let index = if le == Some("+Inf") {
                            Some(BUCKETS.len())
                        } else {
                            le.and_then(|le| le.parse::<f64>().ok())
                                .and_then(|le| BUCKETS.iter().position(|b| (b - le).abs() < 1e-9))
                        };
                        if let Some(index) = index {
                            histogram.buckets[index] = count().unwrap_or(0);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    metrics
}

/// `metric{a="x",b="y"} value` → its parts.
fn split_sample(line: &str) -> Option<(&str, std::collections::HashMap<String, String>, &str)> {
    if line.starts_with('#') {
        return None;
    }
    let open = line.find('{')?;
    let metric = &line[..open];
    let mut labels = std::collections::HashMap::new();
    let mut rest = line[open + 1..].chars().peekable();
    loop {
        let key: String = rest.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').to_owned();
        if rest.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match rest.next()? {
                '\\' => match rest.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match rest.next()? {
            ',' => {}
            '}' => break,
            _ => return None,
        }
    }
    let tail: String = rest.collect();
    let value = line[line.len() - tail.len()..].trim();
    Some((metric, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_targets() {
        assert_eq!(parse_events("fd:3"), Ok(EventsTarget::Fd(3)));
        assert!(parse_events("fd:x").is_err());
        assert!(parse_events("fd:-1").is_err());
        assert!(parse_events("").is_err());
        assert_eq!(
            parse_events("/tmp/e.jsonl"),
            Ok(EventsTarget::File("/tmp/e.jsonl".into()))
        );
    }

    #[test]
    fn metrics_round_trip_through_the_text_format() {
        let mut metrics = Metrics::new();
        let series = metrics
            .entry(("nightly".into(), "redis".into()))
            .or_default();
        series.acquisitions = 3;
        series.busy = 1;
        series.wait.observe(0.5);
        series.wait.observe(700.0);
        series.hold.observe(20000.0);
        metrics
            .entry(("odd\"name".into(), "file".into()))
            .or_default()
            .losses = 2;
        let text = render_metrics(&metrics);
        assert_eq!(parse_metrics(&text), metrics, "{text}");
        assert!(
            text.contains(
                "lockrun_wait_seconds_bucket{name=\"nightly\",backend=\"redis\",le=\"1\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lockrun_wait_seconds_bucket{name=\"nightly\",backend=\"redis\",le=\"900\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lockrun_hold_seconds_bucket{name=\"nightly\",backend=\"redis\",le=\"14400\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "lockrun_hold_seconds_bucket{name=\"nightly\",backend=\"redis\",le=\"+Inf\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn foreign_lines_are_skipped() {
        let text = "# a comment\nother_metric 3\nlockrun_busy_total{name=\"x\",backend=\"file\"} 4\nbroken{name=\"x 1\n";
        let metrics = parse_metrics(text);
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[&("x".into(), "file".into())].busy, 4);
    }
}
