//! `--events` keeps its documented schema (docs/json-schema.md,
//! `lockrun.event/1`): every line parses, with exactly the keys of its
//! event; and `--metrics-file` accumulates across runs in the Prometheus
//! text format node_exporter's textfile collector reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::redis_server::RedisServer;
use crate::util::{
    BIN, Holder, Proc, SOON, Sandbox, code, run_timeout, sh_quote, stderr_of, wait_for_content,
    wait_until,
};

const COMMON: &[(&str, &[&str])] = &[
    ("schema", &["string"]),
    ("event", &["string"]),
    ("time", &["string"]),
    ("unix_ms", &["number"]),
    ("name", &["string"]),
    ("backend", &["string"]),
    ("pid", &["number"]),
];

/// The keys each event adds to [`COMMON`].
fn own_keys(event: &str) -> &'static [(&'static str, &'static [&'static str])] {
    match event {
        "waiting" => &[
            ("holder", &["object", "null"]),
            ("holder_since", &["string", "null"]),
            ("position", &["number", "null"]),
        ],
        "acquired" => &[
            ("wait_ms", &["number"]),
            ("fence", &["number", "null"]),
            ("slot", &["number"]),
        ],
        "renewed" => &[],
        "lost" => &[("reason", &["string"])],
        "child_exit" => &[
            ("code", &["number", "null"]),
            ("signal", &["number", "null"]),
        ],
        "released" => &[
            ("hold_ms", &["number", "null"]),
            ("error", &["string", "null"]),
        ],
        "busy" => &[("message", &["string"])],
        "gave_up" => &[("waited_ms", &["number"]), ("message", &["string"])],
        other => panic!("undocumented event {other:?}"),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every line of `path` as an event, each checked against the schema.
fn events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            let event: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            check(&event);
            event
        })
        .collect()
}

fn check(event: &Value) {
    let object = event.as_object().expect("an object");
    let name = object["event"].as_str().expect("event is a string");
    let keys: Vec<_> = COMMON.iter().chain(own_keys(name)).collect();
    let mut actual: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    actual.sort_unstable();
    expected.sort_unstable();
    assert_eq!(actual, expected, "keys of {name}: {event}");
    for (key, kinds) in keys {
        let found = kind(&object[*key]);
        assert!(kinds.contains(&found), "{name}.{key} is {found}: {event}");
    }
    assert_eq!(object["schema"], "lockrun.event/1");
    let time = object["time"].as_str().unwrap();
    assert!(
        time.ends_with('Z') && humantime::parse_rfc3339(time).is_ok(),
        "time is not RFC 3339 UTC: {time}"
    );
    if let Some(holder) = object.get("holder").filter(|h| !h.is_null()) {
        let mut keys: Vec<&str> = holder
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["command", "host", "pid", "user"], "{event}");
    }
}

fn names(events: &[Value], pid: Option<u32>) -> Vec<String> {
    events
        .iter()
        .filter(|e| pid.is_none_or(|pid| e["pid"] == pid))
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

fn of<'a>(events: &'a [Value], pid: u32, event: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["pid"] == pid && e["event"] == event)
        .unwrap_or_else(|| panic!("no {event} event of pid {pid}: {events:?}"))
}

#[test]
fn event_stream_schema_on_the_file_backend() {
    let sb = Sandbox::new();
    let log = sb.path("events.jsonl");
    let log_arg = log.to_str().unwrap();
    // A holder, and a waiter queued behind it.
    let mut holder_cmd = sb.lockrun(&["--events", log_arg]);
    holder_cmd.stdout(Stdio::null());
    let holder = Holder::spawn(holder_cmd, &sb.path("ready"), "tele");
    let holder_pid = holder.proc.pid().cast_unsigned();
    let mut waiter_cmd = sb.lockrun(&[
        "--events", log_arg, "-w", "1m", "tele", "--", "sh", "-c", "exit 3",
    ]);
    waiter_cmd.stderr(Stdio::piped());
    let mut waiter = Proc::spawn(waiter_cmd, "waiter");
    let waiter_pid = waiter.pid().cast_unsigned();
    wait_until("the waiter's waiting event", SOON, || {
        names(&events(&log), Some(waiter_pid)).contains(&"waiting".to_owned())
    });
    // Busy at once, and a wait that runs out.
    let out = run_timeout(
        sb.lockrun(&["--events", log_arg, "-n", "tele", "--", "true"]),
        SOON,
    );
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    let out = run_timeout(
        sb.lockrun(&["--events", log_arg, "-w", "200ms", "tele", "--", "true"]),
        SOON,
    );
    assert_eq!(code(out.status), 75, "{}", stderr_of(&out));
    assert_eq!(holder.release(), 0);
    let (status, stderr) = waiter.finish(SOON);
    assert_eq!(code(status), 3, "{stderr}");
    // A command killed by a signal, and a lock lost under its command.
    let out = run_timeout(
        sb.lockrun(&["--events", log_arg, "tele", "--", "sh", "-c", "kill -9 $$"]),
        SOON,
    );
    assert_eq!(code(out.status), 137, "{}", stderr_of(&out));
    let ready = sb.path("lost-ready");
    let script = format!(
        "echo $$ > {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let mut lost_cmd = sb.lockrun(&[
        "--events",
        log_arg,
        "--kill-after",
        "2s",
        "tele",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    lost_cmd.stderr(Stdio::piped());
    let mut lost = Proc::spawn(lost_cmd, "loser");
    let lost_pid = lost.pid().cast_unsigned();
    wait_for_content(&ready);
    std::fs::remove_file(sb.lock_file("tele")).unwrap();
    let (status, stderr) = lost.finish(SOON);
    assert_eq!(code(status), 76, "{stderr}");

    let all = events(&log);
    let backend = sb.backend_url();
    for event in &all {
        assert_eq!(event["name"], "tele");
        assert_eq!(event["backend"], backend.as_str());
    }
    assert_eq!(
        names(&all, Some(holder_pid)),
        ["acquired", "child_exit", "released"]
    );
    assert_eq!(
        names(&all, Some(waiter_pid)),
        ["waiting", "acquired", "child_exit", "released"]
    );
    let waiting = of(&all, waiter_pid, "waiting");
    assert_eq!(waiting["holder"]["pid"], holder_pid, "{waiting}");
    let acquired = of(&all, waiter_pid, "acquired");
    assert!(acquired["wait_ms"].as_u64().unwrap() > 0, "{acquired}");
    assert_eq!(acquired["slot"], 1);
    assert!(
        acquired["fence"].is_u64(),
        "the file backend has fences: {acquired}"
    );
    let exit = of(&all, waiter_pid, "child_exit");
    assert_eq!(
        (&exit["code"], &exit["signal"]),
        (&Value::from(3), &Value::Null)
    );
    let released = of(&all, waiter_pid, "released");
    assert!(
        released["hold_ms"].is_u64() && released["error"].is_null(),
        "{released}"
    );
    let busy: Vec<_> = all.iter().filter(|e| e["event"] == "busy").collect();
    assert_eq!(busy.len(), 1, "{all:?}");
    assert!(
        busy[0]["message"].as_str().unwrap().contains("held by"),
        "{}",
        busy[0]
    );
    let gave_up: Vec<_> = all.iter().filter(|e| e["event"] == "gave_up").collect();
    assert_eq!(gave_up.len(), 1, "{all:?}");
    assert!(
        gave_up[0]["waited_ms"].as_u64().unwrap() >= 200,
        "{}",
        gave_up[0]
    );
    let killed = all
        .iter()
        .find(|e| e["event"] == "child_exit" && e["signal"] == 9)
        .unwrap_or_else(|| panic!("no child_exit with signal 9: {all:?}"));
    assert!(killed["code"].is_null());
    assert_eq!(
        names(&all, Some(lost_pid)),
        ["acquired", "lost", "child_exit", "released"]
    );
    // Said by whichever notices first: the guardian ("the lock file was
    // removed or replaced") or lockrun's own check ("lock file … was removed").
    assert!(
        of(&all, lost_pid, "lost")["reason"]
            .as_str()
            .unwrap()
            .contains("removed")
    );
}

#[test]
fn renewals_and_a_lost_lease_on_redis_to_an_inherited_descriptor() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let ready = dir.path().join("ready");
    // fd:3, opened by the shell that execs lockrun, as a user would.
    let script = format!(
        "exec {} --backend {} --events fd:3 --ttl 1s tele -- sh -c 'echo $$ > {}; while :; do sleep 0.05; done' 3>>{}",
        sh_quote(BIN),
        sh_quote(&server.url()),
        sh_quote(ready.to_str().unwrap()),
        sh_quote(log.to_str().unwrap())
    );
    let mut cmd = crate::redis_server::sh(&script);
    cmd.stderr(Stdio::piped());
    let mut holder = Proc::spawn(cmd, "holder");
    wait_for_content(&ready);
    wait_until("two renewals", SOON, || {
        names(&events(&log), None)
            .iter()
            .filter(|e| *e == "renewed")
            .count()
            >= 2
    });
    server.cli(&["DEL", "lockrun:{tele}:lock"]);
    let (status, stderr) = holder.finish(SOON);
    assert_eq!(code(status), 76, "{stderr}");
    let all = events(&log);
    let seen = names(&all, None);
    assert_eq!(
        seen.first().map(String::as_str),
        Some("acquired"),
        "{seen:?}"
    );
    assert!(
        seen.iter().skip(1).take_while(|e| *e == "renewed").count() >= 2,
        "{seen:?}"
    );
    let tail: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|e| *e != "renewed")
        .collect();
    assert_eq!(
        tail,
        ["acquired", "lost", "child_exit", "released"],
        "{seen:?}"
    );
    let backend = all[0]["backend"].as_str().unwrap();
    assert!(
        backend.starts_with(&format!("redis://127.0.0.1:{}", server.port)),
        "{backend}"
    );
}

#[test]
fn an_unusable_events_target_warns_once_and_changes_nothing() {
    let sb = Sandbox::new();
    // A FIFO nobody reads: the open used to block for ever, deaf to SIGTERM.
    let fifo = sb.path("events.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for target in [
        "/nonexistent-lockrun-dir/events.jsonl",
        "fd:97",
        fifo.to_str().unwrap(),
    ] {
        let out = run_timeout(
            sb.lockrun(&["--events", target, "x", "--", "sh", "-c", "exit 5"]),
            SOON,
        );
        let stderr = stderr_of(&out);
        assert_eq!(code(out.status), 5, "{target}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{target}: {stderr}");
        assert!(
            stderr.starts_with("lockrun: warning: no events"),
            "{stderr}"
        );
    }
    let out = run_timeout(sb.lockrun(&["--events", "fd:x", "x", "--", "true"]), SOON);
    assert_eq!(code(out.status), 64, "{}", stderr_of(&out));
    // Exec mode leaves no lockrun to report the release: refused, not half-done.
    let events = sb.path("exec.jsonl");
    for option in ["--events", "--metrics-file"] {
        let out = run_timeout(
            sb.lockrun(&[
                "--exec",
                option,
                events.to_str().unwrap(),
                "x",
                "--",
                "true",
            ]),
            SOON,
        );
        assert_eq!(code(out.status), 64, "{option}: {}", stderr_of(&out));
        assert!(
            stderr_of(&out).contains("--exec cannot be combined with --events or --metrics-file")
        );
    }
    assert!(!events.exists());
}

/// Samples of a Prometheus text file, checked against the format's rules:
/// HELP and TYPE before each family's samples, histogram buckets
/// cumulative with `le` ascending to `+Inf`, `_count` equal to the `+Inf`
/// bucket.
fn prometheus(text: &str) -> BTreeMap<String, String> {
    let mut samples = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split_whitespace().next().unwrap().to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (family, kind) = (words.next().unwrap(), words.next().unwrap());
            assert!(
                helped.iter().any(|h| h == family),
                "TYPE before HELP: {line}"
            );
            assert!(["counter", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(family.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let metric = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                metric
                    .strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(metric);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        if types[family] == "counter" {
            assert!(metric.ends_with("_total"), "{line}");
        }
        assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
        assert!(
            samples
                .insert(series.to_owned(), value.to_owned())
                .is_none(),
            "duplicate: {line}"
        );
    }
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let labels: Vec<&String> = samples
            .keys()
            .filter(|k| k.starts_with(&format!("{family}_count{{")))
            .collect();
        for count_key in labels {
            let labels = count_key
                .strip_prefix(&format!("{family}_count{{"))
                .unwrap()
                .trim_end_matches('}');
            let prefix = format!("{family}_bucket{{{labels},le=\"");
            let buckets: Vec<(String, f64, String)> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix))
                .map(|l| {
                    let (le, rest) = l.split_once('"').unwrap();
                    let count = rest.rsplit(' ').next().unwrap();
                    (le.to_owned(), count.parse().unwrap(), count.to_owned())
                })
                .collect();
            assert_eq!(buckets.last().unwrap().0, "+Inf", "{family}{{{labels}}}");
            let mut previous = (f64::NEG_INFINITY, 0.0);
            for (le, count, _) in &buckets {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                assert!(
                    bound > previous.0 && *count >= previous.1,
                    "{family}: {buckets:?}"
                );
                previous = (bound, *count);
            }
            assert_eq!(
                samples[count_key.as_str()],
                buckets.last().unwrap().2,
                "{family}_count vs +Inf"
            );
            assert!(samples.contains_key(&format!("{family}_sum{{{labels}}}")));
        }
    }
    samples
}

#[test]
fn metrics_accumulate_across_runs_in_the_textfile_format() {
    let sb = Sandbox::new();
    let metrics = sb.path("lockrun.prom");
    let arg = metrics.to_str().unwrap();
    for _ in 0..2 {
        let out = run_timeout(
            sb.lockrun(&["--metrics-file", arg, "nightly", "--", "true"]),
            SOON,
        );
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    let holder = Holder::spawn(sb.lockrun(&[]), &sb.path("ready"), "nightly");
    let out = run_timeout(
        sb.lockrun(&["--metrics-file", arg, "-n", "nightly", "--", "true"]),
        SOON,
    );
    assert_eq!(code(out.status), 75);
    assert_eq!(holder.release(), 0);

    let text = std::fs::read_to_string(&metrics).unwrap();
    let samples = prometheus(&text);
    let labels = "name=\"nightly\",backend=\"file\"";
    let get = |series: &str| -> u64 { samples[&format!("{series}{{{labels}}}")].parse().unwrap() };
    assert_eq!(get("lockrun_acquisitions_total"), 2, "{text}");
    assert_eq!(get("lockrun_busy_total"), 1, "{text}");
    assert_eq!(get("lockrun_losses_total"), 0, "{text}");
    assert_eq!(get("lockrun_wait_seconds_count"), 2, "{text}");
    assert_eq!(get("lockrun_hold_seconds_count"), 2, "{text}");
    assert!(
        !sb.path("lockrun.prom.tmp").exists(),
        "the temporary file is renamed into place"
    );
}

/// The keys pinned here are the keys documented.
#[test]
fn the_schema_doc_lists_every_event_and_key() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json-schema.md"))
        .expect("docs/json-schema.md");
    assert!(doc.contains("lockrun.event/1"));
    let events = [
        "waiting",
        "acquired",
        "renewed",
        "lost",
        "child_exit",
        "released",
        "busy",
        "gave_up",
    ];
    for event in events {
        assert!(
            doc.contains(&format!("| `{event}` |")),
            "event {event} not documented"
        );
        for (key, _) in COMMON.iter().chain(own_keys(event)) {
            assert!(
                doc.contains(&format!("`{key}`")),
                "key {key} not documented"
            );
        }
    }
}

/// A `--metrics-file` that is no regular file (a FIFO nobody writes to,
/// a link to /dev/zero), or whose `.lock` sidecar another process keeps locked, must
/// not hang lockrun or get it killed after the command ran: one warning
/// line, the command's own exit code, within a bound.
#[test]
fn an_unusable_metrics_file_never_hangs_or_changes_the_exit_code() {
    let sb = Sandbox::new();
    let fifo = sb.path("metrics.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let zero = sb.path("zero.prom");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let locked = sb.path("locked.prom");
    let sidecar = std::fs::File::create(sb.path("locked.prom.lock")).unwrap();
    let _held = nix::fcntl::Flock::lock(sidecar, nix::fcntl::FlockArg::LockExclusive).unwrap();
    for target in [&fifo, &zero, &locked] {
        let arg = target.to_str().unwrap();
        let out = run_timeout(
            sb.lockrun(&["--metrics-file", arg, "x", "--", "sh", "-c", "exit 5"]),
            SOON,
        );
        let stderr = stderr_of(&out);
        assert_eq!(code(out.status), 5, "{arg}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{arg}: {stderr}");
        assert!(
            stderr.starts_with("lockrun: warning: cannot update --metrics-file"),
            "{arg}: {stderr}"
        );
    }
    assert!(!locked.exists());
}
