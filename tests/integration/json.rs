//! `status --json` and `list --json` keep the documented, versioned schema
//! (docs/json-schema.md): exactly these keys, with these types, for free
//! locks, held locks and slots. Changing any of this needs a new schema
//! version and a doc update, not an edit here.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::util::{Proc, SOON, Sandbox, run_timeout, stderr_of, wait_for_file};

const STATUS_KEYS: &[(&str, &[&str])] = &[
    ("schema", &["string"]),
    ("name", &["string"]),
    ("backend", &["string"]),
    ("held", &["bool"]),
    ("slots", &["array"]),
];

const LIST_KEYS: &[(&str, &[&str])] = &[
    ("schema", &["string"]),
    ("backend", &["string"]),
    ("locks", &["array"]),
];

const SLOT_KEYS: &[(&str, &[&str])] = &[
    ("name", &["string"]),
    ("key", &["string"]),
    ("slot", &["number", "null"]),
    ("held", &["bool"]),
    ("mode", &["string", "null"]),
    ("shared_holders", &["number", "null"]),
    ("holder", &["object", "null"]),
    ("since", &["string", "null"]),
    ("expires", &["string", "null"]),
    ("expires_in_ms", &["number", "null"]),
    ("fence", &["number", "null"]),
    ("waiters", &["number", "null"]),
    ("needs_manual_release", &["bool"]),
    ("queue", &["array"]),
];

const HOLDER_KEYS: &[(&str, &[&str])] = &[
    ("host", &["string"]),
    ("pid", &["number"]),
    ("user", &["string"]),
    ("command", &["string"]),
];

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

/// Exactly `keys`, each with one of its allowed types.
fn check_object(what: &str, value: &Value, keys: &[(&str, &[&str])]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    let mut actual: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
    actual.sort_unstable();
    expected.sort_unstable();
    assert_eq!(actual, expected, "keys of {what}: {value}");
    for (key, kinds) in keys {
        let found = kind(&object[*key]);
        assert!(
            kinds.contains(&found),
            "{what}.{key} is {found}, expected one of {kinds:?}: {value}"
        );
    }
}

fn check_slot(what: &str, slot: &Value) {
    check_object(what, slot, SLOT_KEYS);
    if let Some(holder) = slot.get("holder").filter(|h| !h.is_null()) {
        check_object(&format!("{what}.holder"), holder, HOLDER_KEYS);
    }
    if let Some(since) = slot["since"].as_str() {
        assert!(
            humantime::parse_rfc3339(since).is_ok(),
            "{what}.since is not RFC 3339: {since}"
        );
    }
}

fn json_of(sandbox: &Sandbox, args: &[&str]) -> Value {
    let out = run_timeout(sandbox.lockrun(args), SOON);
    assert!(
        out.status.success(),
        "lockrun {args:?}: {}",
        stderr_of(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A lockrun holding `args` (NAME [--slots N]) until dropped or released.
struct Holder {
    proc: Proc,
}

impl Holder {
    fn start(sandbox: &Sandbox, tag: &str, args: &[&str]) -> Holder {
        let ready = sandbox.path(tag);
        let mut all: Vec<&str> = args.to_vec();
        let script = format!("touch '{}'; read line", ready.display());
        all.extend(["--", "sh", "-c", &script]);
        let mut cmd = sandbox.lockrun(&all);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let proc = Proc::spawn(cmd, tag);
        wait_for_file(&ready);
        Holder { proc }
    }

    fn release(mut self) {
        self.proc
            .child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        assert!(self.proc.wait_timeout(SOON).success());
    }
}

#[test]
fn status_json_of_a_free_lock() {
    let sandbox = Sandbox::new();
    let doc = json_of(&sandbox, &["status", "--json", "never-used"]);
    check_object("status", &doc, STATUS_KEYS);
    assert_eq!(doc["schema"], "lockrun.status/1");
    assert_eq!(doc["name"], "never-used");
    assert_eq!(doc["backend"], sandbox.backend_url().as_str());
    assert_eq!(doc["held"], false);
    let slots = doc["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 1);
    check_slot("slots[0]", &slots[0]);
    assert_eq!(slots[0]["key"], "never-used");
    assert_eq!(slots[0]["name"], "never-used");
    for key in [
        "slot",
        "holder",
        "since",
        "expires",
        "expires_in_ms",
        "fence",
    ] {
        assert!(slots[0][key].is_null(), "{key} of a free lock: {doc}");
    }
}

#[test]
fn status_json_of_a_held_lock_names_its_holder() {
    let sandbox = Sandbox::new();
    let holder = Holder::start(&sandbox, "held-ready", &["held"]);
    let doc = json_of(&sandbox, &["status", "--json", "held"]);
    check_object("status", &doc, STATUS_KEYS);
    assert_eq!(doc["held"], true);
    let slot = &doc["slots"][0];
    check_slot("slots[0]", slot);
    assert_eq!(slot["held"], true);
    assert!(slot["slot"].is_null());
    let info = &slot["holder"];
    assert_eq!(info["pid"], holder.proc.pid());
    assert_eq!(
        info["host"],
        lockrun::lock::HolderInfo::for_this_process("")
            .host
            .as_str()
    );
    assert!(
        info["command"]
            .as_str()
            .unwrap()
            .starts_with("sh -c touch "),
        "{info}"
    );
    assert!(slot["since"].is_string(), "{slot}");
    assert!(slot["fence"].as_u64().is_some_and(|f| f >= 1), "{slot}");
    // The file backend has no lease.
    assert!(
        slot["expires"].is_null() && slot["expires_in_ms"].is_null(),
        "{slot}"
    );
    assert_eq!(slot["needs_manual_release"], false);
    holder.release();

    let doc = json_of(&sandbox, &["status", "--json", "held"]);
    assert_eq!(doc["held"], false);
    assert!(
        doc["slots"][0]["holder"].is_null(),
        "a dead holder's record is not shown: {doc}"
    );
}

#[test]
fn status_and_list_json_with_slots() {
    let sandbox = Sandbox::new();
    let holder = Holder::start(&sandbox, "slot-ready", &["--slots", "2", "pool"]);
    let doc = json_of(&sandbox, &["status", "--json", "--slots", "2", "pool"]);
    check_object("status", &doc, STATUS_KEYS);
    assert_eq!(doc["held"], true);
    let slots = doc["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{doc}");
    for (i, slot) in slots.iter().enumerate() {
        check_slot(&format!("slots[{i}]"), slot);
        assert_eq!(slot["name"], "pool");
        assert_eq!(slot["slot"], i + 1);
        assert_eq!(slot["key"], format!("pool@{}", i + 1));
    }
    assert_eq!(
        slots.iter().filter(|s| s["held"] == true).count(),
        1,
        "{doc}"
    );

    let list = json_of(&sandbox, &["list", "--json"]);
    check_object("list", &list, LIST_KEYS);
    assert_eq!(list["schema"], "lockrun.list/1");
    assert_eq!(list["backend"], sandbox.backend_url().as_str());
    let locks = list["locks"].as_array().unwrap();
    assert!(!locks.is_empty(), "{list}");
    for (i, lock) in locks.iter().enumerate() {
        check_slot(&format!("locks[{i}]"), lock);
    }
    let held: Vec<&Value> = locks.iter().filter(|l| l["held"] == true).collect();
    assert_eq!(held.len(), 1, "{list}");
    assert_eq!(held[0]["name"], "pool");
    assert_eq!(held[0]["holder"]["pid"], holder.proc.pid());
    holder.release();
}

#[test]
fn list_json_of_an_empty_backend() {
    let sandbox = Sandbox::new();
    let list = json_of(&sandbox, &["list", "--json"]);
    check_object("list", &list, LIST_KEYS);
    assert_eq!(list["locks"], Value::Array(Vec::new()));
}

/// The keys pinned here are the keys documented.
#[test]
fn the_schema_doc_lists_every_key() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json-schema.md"))
        .expect("docs/json-schema.md");
    for (key, _) in STATUS_KEYS
        .iter()
        .chain(LIST_KEYS)
        .chain(SLOT_KEYS)
        .chain(HOLDER_KEYS)
    {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/json-schema.md does not document `{key}`"
        );
    }
    for schema in ["lockrun.status/1", "lockrun.list/1"] {
        assert!(
            doc.contains(schema),
            "docs/json-schema.md does not name {schema}"
        );
    }
}
