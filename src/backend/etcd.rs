//! etcd v3 backend: the key layout of etcd's `concurrency.Mutex`, so that
//! `etcdctl lock NAME` and `lockrun -b etcd://… NAME` are one lock.
//!
//! Spoken over etcd's JSON gateway (`/v3/kv/txn`, `/v3/lease/*`,
//! `/v3/watch`) with the HTTP client lockrun already ships, not over gRPC:
//! see docs/DESIGN.md for the measurement behind that choice.
//!
//! * A lock NAME under the URL's `?prefix=P` (empty by default) is the set of
//!   keys `P NAME/<lease id in hex>`, each created with its owner's lease;
//!   `etcdctl lock NAME` uses exactly `NAME/<lease id in hex>`. The holder is
//!   the key with the lowest create revision; with `--slots N`, the N
//!   lowest (etcd's semaphore recipe).
//! * A contender creates its key once (a txn `CreateRevision == 0` that puts
//!   it and reads the queue, or a summary of it, in the same round trip),
//!   and a waiter watches only its predecessor, the key with the next-lower
//!   create revision, for deletion: a release wakes exactly one waiter, and
//!   the queue is FIFO. (With slots, a waiter watches the queue for deletions:
//!   any earlier key leaving moves it up.)
//! * The fence is the create revision of the holder's key: cluster-wide,
//!   strictly increasing, the `ETCD_LOCK_REV` of etcdctl.
//! * The lease of `--ttl` is kept alive by one keepalive round trip per
//!   renewal, and also while waiting (the queue key must not expire under a
//!   patient waiter). A renewal also checks that the key is still there:
//!   a lease that keepalive reports with TTL 0, or a key deleted by
//!   `release --force`, is a lost lock.
//! * Release revokes the lease: the key (and a slot claim) go with it in one
//!   step. A wait ended by a signal or by `--wait` revokes it too, from
//!   `Drop`; after a SIGKILL the lease expires after the ttl.
//! * Shared holders (`--shared`) follow etcd's read-write recipe: their key
//!   is `P NAME/read/<lease id in hex>`; one holds when no exclusive key
//!   (any other key of the queue) has a lower create revision, and watches
//!   the last such key. Exclusive contenders keep the Mutex rule, so they
//!   wait for shared keys too, and `etcdctl lock` does the same.
//! * Slot numbers: a holder of a `--slots N` lock claims `P NAME@K` (the
//!   lowest free K, created with its lease) for `LOCKRUN_SLOT`; those keys are
//!   outside the queue, so etcdctl and the ranking never see them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::acquire::{backoff_delay, poll_acquire};
use crate::error::{Error, Result};
use crate::lock::{
    Attempt, Backend, HolderInfo, Inspect, Interrupts, Lease, LockName, LockRequest, Polling,
    QueueEntry, Renewal, SlotState, Wait, WaitDisplay, WaitOutcome,
};
use crate::os::BootTime;

pub(crate) const DEFAULT_PORT: u16 = 2379;
pub(crate) const USER_ENV: &str = "LOCKRUN_ETCD_USER";
pub(crate) const PASSWORD_ENV: &str = "LOCKRUN_ETCD_PASSWORD";
pub(crate) const CACERT_ENV: &str = "LOCKRUN_ETCD_CACERT";
pub(crate) const CERT_ENV: &str = "LOCKRUN_ETCD_CERT";
/// Not `LOCKRUN_ETCD_KEY`: that is the lock key the child is told.
pub(crate) const CERT_KEY_ENV: &str = "LOCKRUN_ETCD_CERT_KEY";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const RENEW_TIMEOUT_CAP: Duration = Duration::from_secs(2);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a waiter waits for a cluster that stopped answering.
const OUTAGE_PATIENCE: Duration = Duration::from_secs(60);
/// The revoke in `Drop` (a wait ended by a signal or `--wait`) gets this long.
const DROP_TIMEOUT: Duration = Duration::from_millis(800);

/// A parsed `etcd://` / `etcds://` URL. The password stays out of `Debug`
/// and out of [`display_url`](Self::display_url).
#[derive(Clone)]
pub(crate) struct EtcdConfig {
    pub tls: bool,
    /// `host:port`, IPv6 in brackets, tried in turn.
    pub endpoints: Vec<String>,
    pub user: Option<String>,
    password: Option<String>,
    pub prefix: String,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Which of the files came from the URL (shown again in `display_url`).
    from_url: [bool; 3],
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("url", &self.display_url())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl EtcdConfig {
    /// `etcd://[user[:password]@]host[:port][,host[:port]...][?prefix=P&cacert=F&cert=F&key=F]`.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let mut config = Self::parse_url(url)?;
        if config.user.is_none() {
            config.user = env_nonempty(USER_ENV);
        }
        if config.password.is_none() {
            config.password = env_nonempty(PASSWORD_ENV);
        }
        if config.tls {
            config.ca_file = config
                .ca_file
                .or(env_nonempty(CACERT_ENV).map(PathBuf::from));
            config.cert_file = config
                .cert_file
                .or(env_nonempty(CERT_ENV).map(PathBuf::from));
            config.key_file = config
                .key_file
                .or(env_nonempty(CERT_KEY_ENV).map(PathBuf::from));
        }
        if config.cert_file.is_some() != config.key_file.is_some() {
            return Err(Error::usage(format!(
                "etcd client certificate: give both the certificate and its key (cert= and key= in the URL, or {CERT_ENV} and {CERT_KEY_ENV})"
            )));
        }
        Ok(config)
    }

    fn parse_url(url: &str) -> Result<Self> {
        let shown = super::url::redacted(url);
        let bad = |why: &str| {
            Error::usage(format!(
                "invalid etcd URL {shown:?}: {why}; use etcd://host[:port][,host[:port]...][?prefix=P] or etcds://… for TLS"
            ))
        };
        let scheme = super::url::scheme(url).unwrap_or_default();
        let tls = match scheme.as_str() {
            "etcd" => false,
            "etcds" => true,
            _ => return Err(bad("the scheme must be etcd or etcds")),
        };
        let Some(rest) = url[scheme.len() + 1..].strip_prefix("//") else {
            return Err(bad("expected etcd://"));
        };
        // The authority runs to the first '/' or '?'; its user info to the last '@'.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if hosts.is_empty() {
            return Err(bad("no host"));
        }
        let mut endpoints = Vec::new();
        let mut first = None;
        for host in hosts.split(',') {
            let parts = super::url::parse(&format!("{scheme}://{host}"))
                .map_err(|why| bad(&why))
                .and_then(|p| {
                    if p.host.is_none() || !p.path.trim_start_matches('/').is_empty() {
                        Err(bad("bad host list (host[:port],host[:port],…)"))
                    } else {
                        Ok(p)
                    }
                })?;
            endpoints.push(format!(
                "{}:{}",
                parts.host_bracketed().unwrap_or_default(),
                parts.port.unwrap_or(DEFAULT_PORT)
            ));
            first.get_or_insert(host);
        }
        // User, password and query through the shared parser, on the first host.
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        let parts = super::url::parse(&format!(
            "{scheme}://{userinfo}{}{tail}",
            first.unwrap_or_default()
        ))
        .map_err(|why| bad(&why))?;
        if !parts.path.trim_start_matches('/').is_empty() {
            return Err(bad("no path is used; give the key prefix as ?prefix=P"));
        }
        let mut config = EtcdConfig {
            tls,
            endpoints,
            user: parts.user.clone(),
            password: parts.password.clone(),
            prefix: String::new(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            from_url: [false; 3],
        };
        let query = parts
            .query_pairs(super::url::Plus::Literal)
            .map_err(|why| bad(&format!("{why} in the query")))?;
        for (key, value) in query {
            let file = |value: String| -> Result<PathBuf> {
                if !tls {
                    return Err(bad(&format!("{key} only applies to etcds:// (TLS)")));
                }
                if value.is_empty() {
                    return Err(bad(&format!("{key} needs a file name")));
                }
                Ok(PathBuf::from(value))
            };
            match key.as_str() {
                "prefix" => {
                    if value.chars().any(char::is_control) {
                        return Err(bad("the prefix must not contain control characters"));
                    }
                    config.prefix = value;
                }
                "cacert" => {
                    config.ca_file = Some(file(value)?);
                    config.from_url[0] = true;
                }
                "cert" => {
                    config.cert_file = Some(file(value)?);
                    config.from_url[1] = true;
                }
                "key" => {
                    config.key_file = Some(file(value)?);
                    config.from_url[2] = true;
                }
                other => {
                    return Err(bad(&format!(
                        "unknown option {other:?} (known: prefix, cacert, cert, key)"
                    )));
                }
            }
        }
        Ok(config)
    }

    /// The URL without the password, for the child's `LOCKRUN_BACKEND` and output.
    pub(crate) fn display_url(&self) -> String {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{}@", super::url::encode(u)))
            .unwrap_or_default();
        let mut url = format!("{scheme}://{user}{}", self.endpoints.join(","));
        let mut options = Vec::new();
        if !self.prefix.is_empty() {
            options.push(format!(
                "prefix={}",
                super::url::encode_query_value(&self.prefix)
            ));
        }
        let files = [
            ("cacert", &self.ca_file),
            ("cert", &self.cert_file),
            ("key", &self.key_file),
        ];
        for ((name, file), from_url) in files.into_iter().zip(self.from_url) {
            if let (Some(file), true) = (file, from_url) {
                options.push(format!(
                    "{name}={}",
                    super::url::encode_query_value(&file.to_string_lossy())
                ));
            }
        }
        if !options.is_empty() {
            url.push('?');
            url.push_str(&options.join("&"));
        }
        url
    }

    fn http_client(&self) -> Result<reqwest::Client> {
        super::install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("lockrun/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .no_proxy();
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).map_err(|e| {
                Error::usage(format!(
                    "cannot read the etcd {what} {}: {e}",
                    path.display()
                ))
            })
        };
        if !self.tls {
            // Plain HTTP: no root store at all. Without this, reqwest's
            // platform verifier reads and parses every certificate under
            // /etc/ssl/certs at build time (~290 files, 10–20 ms of CPU on
            // a loaded 2-core machine) for a client that never speaks TLS.
            builder = builder.tls_certs_only(Vec::new());
        }
        if let Some(ca) = &self.ca_file {
            let pem = read(ca, "CA file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::usage(format!("the etcd CA file {} is not PEM: {e}", ca.display()))
            })?;
            builder = builder.tls_certs_only(certs);
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            let mut pem = read(cert, "client certificate")?;
            pem.push(b'\n');
            pem.extend(read(key, "client key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::usage(format!(
                    "the etcd client certificate {} or key {} is not usable: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))
    }
}

/// The lock's queue prefix: `P NAME/`, as `concurrency.NewMutex(s, P NAME)`.
fn queue_prefix(prefix: &str, name: &LockName) -> String {
    format!("{prefix}{name}/")
}

/// What marks a shared holder's key in a lock's queue: `P NAME/read/<lease
/// id in hex>`, the "read" keys of etcd's read-write recipe
/// (`contrib/recipes` RWMutex). Every other key in the queue (a plain
/// `NAME/<lease>` of lockrun or `etcdctl lock`, a recipe's `write/` key) is
/// exclusive.
const READ_MARKER: &str = "read/";

fn is_read_key(queue_prefix: &str, key: &str) -> bool {
    key.strip_prefix(queue_prefix)
        .is_some_and(|rest| rest.starts_with(READ_MARKER))
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from `prefix` on.
    vec![0]
}

/// The two reads of a contender's txn that stand for the whole queue (etcd
/// still scans the range to sort it, but sends, and its gateway turns into
/// JSON, three keys instead of every key ahead, each with its holder
/// record: 1.40 against 0.87 ms of etcd CPU for a queue of 32):
/// the newest two keys by create revision (ours, just put, and our
/// predecessor) with the count of the range, and the oldest one (the
/// holder, for the waiting line).
fn queue_summary(prefix: &str) -> [Value; 2] {
    let range = |order: &str, limit: u32| {
        json!({"request_range": {
            "key": b64(prefix),
            "range_end": b64_encode(&prefix_end(prefix.as_bytes())),
            "sort_order": order,
            "sort_target": "CREATE",
            "limit": limit.to_string(),
        }})
    };
    [range("DESCEND", 2), range("ASCEND", 1)]
}

// --- JSON of the gateway -------------------------------------------------

/// etcd's gateway writes 64-bit integers as strings.
fn de_i64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        S(String),
        N(i64),
    }
    match Num::deserialize(d)? {
        Num::N(n) => Ok(n),
        Num::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize, Default, Debug)]
struct Header {
    #[serde(default, deserialize_with = "de_i64")]
    revision: i64,
}

#[derive(Deserialize, Default, Debug, Clone)]
struct Kv {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
    #[serde(default, deserialize_with = "de_i64", alias = "createRevision")]
    create_revision: i64,
    #[serde(default, deserialize_with = "de_i64", alias = "modRevision")]
    mod_revision: i64,
    #[serde(default, deserialize_with = "de_i64")]
    lease: i64,
}

impl Kv {
    fn key_text(&self) -> String {
        String::from_utf8_lossy(&b64_decode(&self.key)).into_owned()
    }
    fn holder(&self) -> Option<HolderInfo> {
        let mut holder: HolderInfo = serde_json::from_slice(&b64_decode(&self.value)).ok()?;
        holder.fence = u64::try_from(self.create_revision).ok();
        Some(holder)
    }
}

#[derive(Deserialize, Default, Debug)]
struct RangeResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<Kv>,
    /// Keys in the range, whatever `limit` (not what the revision filters
    /// leave: etcd counts before it filters).
    #[serde(default, deserialize_with = "de_i64")]
    count: i64,
}

#[derive(Deserialize, Default, Debug)]
struct ResponseOp {
    #[serde(default, alias = "responseRange")]
    response_range: Option<RangeResponse>,
}

#[derive(Deserialize, Default, Debug)]
struct TxnResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<ResponseOp>,
}

#[derive(Deserialize, Default, Debug)]
struct LeaseResponse {
    #[serde(default, rename = "ID", deserialize_with = "de_i64")]
    id: i64,
    #[serde(default, rename = "TTL", deserialize_with = "de_i64")]
    ttl: i64,
}

#[derive(Deserialize, Default, Debug)]
struct KeepAliveResponse {
    #[serde(default)]
    result: Option<LeaseResponse>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default, Debug)]
struct WatchMessage {
    #[serde(default)]
    result: Option<WatchResult>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default, Debug)]
struct WatchResult {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    canceled: bool,
    #[serde(default)]
    events: Vec<WatchEvent>,
}

#[derive(Deserialize, Default, Debug)]
struct WatchEvent {
    #[serde(default, rename = "type")]
    kind: String,
}

#[derive(Deserialize, Default, Debug)]
struct AuthResponse {
    #[serde(default)]
    token: String,
}

/// What a failed request was, for the caller.
#[derive(Debug)]
enum Failure {
    /// Not answered (refused, reset, timed out): worth the next endpoint.
    Transport(String),
    /// Answered with an error, `code` the gRPC status code.
    Server { code: i64, message: String },
}

impl Failure {
    /// Our auth token ran out (its ttl, a restarted member): a fresh login
    /// and the same request again answer it, when we log in at all.
    fn is_expired_token(&self) -> bool {
        matches!(self, Failure::Server { code, message }
            if *code == 16 || message.contains("invalid auth token"))
    }
}

fn b64_encode(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn b64(text: &str) -> String {
    b64_encode(text.as_bytes())
}

// --- the backend ---------------------------------------------------------

/// Our key in a lock's queue, while we wait (before it becomes a lease).
struct Queued {
    lease: i64,
    key: String,
    /// Create revision of the key, once the first txn has answered.
    rev: i64,
    /// Send time of the grant or of the last successful keepalive.
    renewed: BootTime,
}

/// What a waiter watches for deletion, from which revision on.
struct WatchTarget {
    key: String,
    /// `Some`: the range `[key, range_end)` (slots); `None`: the one key.
    range_end: Option<Vec<u8>>,
    /// The revision right after our last look at the queue: nothing that
    /// happened from here on may be missed.
    start_revision: i64,
    /// What that look saw of the target, for the check of the gap between
    /// the look and the watch's creation (see [`EtcdBackend::watch_for_delete`]).
    seen: Seen,
    /// Wake on any event, puts too: a `--slots` waiter behind the first
    /// one waits for its predecessor to be deleted *or* to become a holder
    /// (a holder rewrites its key once, see [`EtcdBackend::claim_slot`]).
    any_event: bool,
    /// `key` is the only key ahead of ours (plain lock, second in line):
    /// its deletion alone makes us the holder.
    sole_ahead: bool,
}

/// A watch target as the last look at the queue saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// The one key, with these create and mod revisions.
    Key { create: i64, modified: i64 },
    /// `ahead` keys of the range had a create revision below `mine`.
    Ahead { ahead: usize, mine: i64 },
}

/// What a watch that ended told the next try.
struct Woke {
    /// The revision of the watch response (the member that sent it has
    /// applied it).
    at: i64,
    /// The only key ahead of ours was deleted.
    first: bool,
    /// Where the watch started: the revision right after our last look at
    /// the queue.
    since: i64,
}

/// The holder's watch on its own key, kept across
/// [`loss_hint`](Backend::loss_hint) calls (the supervisor drops that
/// future at every renewal; the stream lives on here).
struct OwnWatch {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

pub(crate) struct EtcdBackend {
    config: EtcdConfig,
    http: reqwest::Client,
    token: Option<String>,
    /// Index of the endpoint that answered last.
    current: usize,
    queued: Option<Queued>,
    watch: Option<WatchTarget>,
    last_holder: Option<HolderInfo>,
    /// Our place in the queue at the last try (1 = holder).
    position: Option<u32>,
    lost_waits: u32,
    /// The revision a watch woke us at: the next try reads the queue as of
    /// that revision from the member that sent the event (a local read, no
    /// raft round trip) instead of a txn.
    woke: Option<Woke>,
    /// A queued waiter's read of the queue failed for want of a cluster
    /// (a member down, an election): since when; the next wait backs off.
    outage_since: Option<tokio::time::Instant>,
    back_off: bool,
    own_watch: Option<OwnWatch>,
    /// A client of its own for watch streams, made at the first watch: a
    /// stream holds its connection for as long as it lasts, and taking the
    /// request client's idle connection would make the request that follows
    /// the event (the read of a woken waiter, the revoke of a releasing
    /// holder) connect anew, on the hand-off path.
    watch_http: Option<reqwest::Client>,
    /// No new own-key watch before this (the last one failed).
    own_watch_retry: Option<tokio::time::Instant>,
}

pub(crate) struct EtcdLease {
    key: String,
    lease: i64,
    rev: i64,
    slot: u32,
    ttl: Duration,
    expires_at: BootTime,
    /// Where a new watch on our own key starts: no deletion since the last
    /// check of the key can be missed.
    watch_from: i64,
}

impl Lease for EtcdLease {
    fn slot(&self) -> u32 {
        self.slot
    }
    fn fence(&self) -> Option<u64> {
        u64::try_from(self.rev).ok()
    }
    fn expires_at(&self) -> Option<BootTime> {
        Some(self.expires_at)
    }
    fn env(&self) -> Vec<(String, String)> {
        vec![("LOCKRUN_ETCD_KEY".to_owned(), self.key.clone())]
    }
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
        .unwrap_or(i64::MAX)
        .max(1)
}

fn renew_timeout(ttl: Duration) -> Duration {
    (ttl / 3).min(RENEW_TIMEOUT_CAP)
}

fn acquire_timeout(ttl: Duration) -> Duration {
    (ttl / 3).min(CALL_TIMEOUT)
}

impl EtcdBackend {
    /// Ready to talk to the cluster; no request is made unless there are
    /// credentials to log in with.
    pub(crate) async fn connect(config: EtcdConfig) -> Result<Self> {
        let http = config.http_client()?;
        let mut backend = EtcdBackend {
            config,
            http,
            token: None,
            current: 0,
            queued: None,
            watch: None,
            last_holder: None,
            position: None,
            lost_waits: 0,
            woke: None,
            outage_since: None,
            back_off: false,
            own_watch: None,
            watch_http: None,
            own_watch_retry: None,
        };
        // With credentials, logging in is the first request; without, the
        // first request proper (the lease grant of a run, the read of
        // `status`) finds an unreachable cluster (69) or one that wants
        // credentials (77) before anything happens: a separate probe would
        // be one more round trip in every run.
        if backend.config.user.is_some() {
            backend.authenticate(CALL_TIMEOUT).await?;
        }
        Ok(backend)
    }

    fn base(&self, endpoint: usize) -> String {
        let scheme = if self.config.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.config.endpoints[endpoint])
    }

    fn cluster(&self) -> String {
        self.config.endpoints.join(",")
    }

    async fn authenticate(&mut self, limit: Duration) -> Result<()> {
        let body = json!({
            "name": self.config.user.clone().unwrap_or_default(),
            "password": self.config.password.clone().unwrap_or_default(),
        });
        self.token = None;
        let reply: AuthResponse = match self.send("/v3/auth/authenticate", &body, limit).await {
            Ok(reply) => reply,
            Err(Failure::Server { code, message }) => {
                return Err(Error::no_permission(format!(
                    "etcd at {} refused our credentials (user {:?}): {} (code {code}); check {USER_ENV} and {PASSWORD_ENV}",
                    self.cluster(),
                    self.config.user.as_deref().unwrap_or_default(),
                    self.scrub(&message)
                )));
            }
            Err(failure) => return Err(self.error("authenticating", failure)),
        };
        self.token = Some(reply.token).filter(|t| !t.is_empty());
        Ok(())
    }

    /// One request, trying the endpoints in turn within `limit`. A server
    /// error that says our token is stale is answered by logging in again.
    async fn post<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &Value,
        limit: Duration,
        what: &str,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut relogged = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.send(path, body, left).await {
                Ok(value) => return Ok(value),
                Err(failure)
                    if !relogged && self.config.user.is_some() && failure.is_expired_token() =>
                {
                    relogged = true;
                    tracing::debug!("etcd auth token expired; logging in again");
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.authenticate(left).await?;
                }
                Err(failure) => return Err(self.error(what, failure)),
            }
        }
    }

    /// Send to the current endpoint, then to the others on a transport
    /// failure or an unavailable member (no leader), each within a share
    /// of `limit`.
    async fn send<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        body: &Value,
        limit: Duration,
    ) -> std::result::Result<T, Failure> {
        let deadline = tokio::time::Instant::now() + limit;
        let n = self.config.endpoints.len();
        let mut last = Failure::Transport("no endpoint tried".into());
        for i in 0..n {
            let endpoint = (self.current + i) % n;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let share = if i + 1 == n {
                left
            } else {
                (left / u32::try_from(n - i).unwrap_or(1)).max(Duration::from_millis(300))
            };
            match self.send_one(endpoint, path, body, share).await {
                Ok(value) => {
                    self.current = endpoint;
                    return Ok(value);
                }
                Err(Failure::Server { code, message }) if code == 14 || code == 4 => {
                    // Unavailable / deadline exceeded on that member (no
                    // leader, partitioned): another may do better.
                    last = Failure::Server { code, message };
                }
                Err(Failure::Transport(why)) => {
                    tracing::debug!(endpoint = %self.config.endpoints[endpoint], %why, "etcd endpoint failed");
                    last = Failure::Transport(why);
                }
                Err(other) => return Err(other),
            }
        }
        Err(last)
    }

    async fn send_one<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: usize,
        path: &str,
        body: &Value,
        limit: Duration,
    ) -> std::result::Result<T, Failure> {
        let request = self.request(endpoint, path, body);
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|e| Failure::Transport(transport_reason(&e)))?;
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| Failure::Transport(transport_reason(&e)))?;
            if !status.is_success() {
                return Err(server_failure(status, &bytes));
            }
            serde_json::from_slice::<T>(&bytes).map_err(|e| Failure::Server {
                code: 2,
                message: format!("unexpected reply ({e})"),
            })
        };
        tokio::time::timeout(limit, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Transport(format!(
                    "no answer within {}",
                    humantime::format_duration(limit)
                )))
            })
    }

    fn request(&self, endpoint: usize, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.request_on(&self.http, endpoint, path, body)
    }

    fn request_on(
        &self,
        http: &reqwest::Client,
        endpoint: usize,
        path: &str,
        body: &Value,
    ) -> reqwest::RequestBuilder {
        let mut request = http
            .post(format!("{}{path}", self.base(endpoint)))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token);
        }
        request
    }

    fn error(&self, what: &str, failure: Failure) -> Error {
        match failure {
            Failure::Transport(why) => {
                Error::unavailable(format!("etcd at {}: {what} failed: {why}", self.cluster()))
            }
            Failure::Server { code, message } => {
                let message = self.scrub(&message);
                let auth = message.contains("user name is empty")
                    || message.contains("authentication failed")
                    || message.contains("invalid auth token")
                    || message.contains("permission denied")
                    || message.contains("user name not found");
                if auth || code == 7 || code == 16 {
                    let hint = if self.config.user.is_none() {
                        format!("the cluster has auth enabled: set {USER_ENV} and {PASSWORD_ENV}")
                    } else {
                        "check the user's roles and password".to_owned()
                    };
                    Error::no_permission(format!(
                        "etcd at {} refused {what}: {message}; {hint}",
                        self.cluster()
                    ))
                } else {
                    Error::unavailable(format!(
                        "etcd at {}: {what} failed: {message} (code {code})",
                        self.cluster()
                    ))
                }
            }
        }
    }

    fn scrub(&self, text: &str) -> String {
        match &self.config.password {
            Some(password) if !password.is_empty() => text.replace(password.as_str(), "***"),
            _ => text.to_owned(),
        }
    }

    async fn grant(&mut self, ttl: Duration) -> Result<(i64, BootTime)> {
        let sent = BootTime::now();
        let reply: LeaseResponse = self
            .post(
                "/v3/lease/grant",
                &json!({ "TTL": ttl_secs(ttl).to_string() }),
                acquire_timeout(ttl),
                "granting a lease",
            )
            .await?;
        if reply.id == 0 {
            return Err(Error::unavailable(format!(
                "etcd at {} granted no lease",
                self.cluster()
            )));
        }
        Ok((reply.id, sent))
    }

    /// One keepalive round trip: the lease's remaining TTL (0: gone).
    async fn keepalive(&mut self, lease: i64, limit: Duration) -> Result<i64> {
        let reply: KeepAliveResponse = self
            .post(
                "/v3/lease/keepalive",
                &json!({ "ID": lease.to_string() }),
                limit,
                "renewing the lease",
            )
            .await?;
        if let Some(error) = reply.error {
            return Err(Error::unavailable(format!(
                "etcd at {}: renewing the lease failed: {}",
                self.cluster(),
                self.scrub(&error.to_string())
            )));
        }
        Ok(reply.result.map_or(0, |r| r.ttl))
    }

    /// Revoke `lease`, logging in again once if the token ran out since
    /// the last renewal (as [`Self::post`] does): a failed revoke leaves
    /// the key, and the next holder waiting, until the lease expires.
    async fn revoke(&mut self, lease: i64, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        let body = json!({ "ID": lease.to_string() });
        let mut relogged = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let reply: std::result::Result<Value, Failure> =
                self.send("/v3/lease/revoke", &body, left).await;
            match reply {
                Ok(_) => return Ok(()),
                // Expired already: the keys went with it.
                Err(Failure::Server { code: 5, .. }) => return Ok(()),
                Err(failure)
                    if !relogged && self.config.user.is_some() && failure.is_expired_token() =>
                {
                    relogged = true;
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.authenticate(left).await?;
                }
                Err(failure) => {
                    return Err(self.error("releasing the lock (revoking its lease)", failure));
                }
            }
        }
    }

    /// Every key of `name`'s queue, oldest first.
    async fn queue(&mut self, name: &LockName) -> Result<(Vec<Kv>, i64)> {
        let prefix = queue_prefix(&self.config.prefix, name);
        let reply: RangeResponse = self
            .post(
                "/v3/kv/range",
                &json!({
                    "key": b64(&prefix),
                    "range_end": b64_encode(&prefix_end(prefix.as_bytes())),
                    "sort_order": "ASCEND",
                    "sort_target": "CREATE",
                }),
                CALL_TIMEOUT,
                "reading the lock",
            )
            .await?;
        Ok((reply.kvs, reply.header.revision))
    }

    /// Slot claims of `name`: lease -> slot number.
    async fn claims(&mut self, name: &LockName) -> Result<Vec<(i64, u32, String)>> {
        let prefix = format!("{}{name}@", self.config.prefix);
        let reply: RangeResponse = self
            .post(
                "/v3/kv/range",
                &json!({
                    "key": b64(&prefix),
                    "range_end": b64_encode(&prefix_end(prefix.as_bytes())),
                    "keys_only": true,
                }),
                CALL_TIMEOUT,
                "reading the slots",
            )
            .await?;
        Ok(reply
            .kvs
            .iter()
            .filter_map(|kv| {
                let key = kv.key_text();
                let slot = key.strip_prefix(&prefix)?.parse().ok()?;
                Some((kv.lease, slot, key))
            })
            .collect())
    }

    /// Our place in the queue `kvs` (sorted by create revision; `me` is our
    /// key in it): hold, or watch what can move us up, from `start_revision`.
    ///
    /// `ahead_total`: how many keys are ahead of ours when `kvs` holds only
    /// some of them (the first and our predecessor, see [`queue_summary`]);
    /// `None`: `kvs` is the whole queue up to ours.
    async fn decide(
        &mut self,
        req: &LockRequest,
        prefix: &str,
        kvs: &[Kv],
        me: &Kv,
        start_revision: i64,
        ahead_total: Option<usize>,
    ) -> Result<Attempt<EtcdLease>> {
        if let Some(queued) = &mut self.queued {
            queued.rev = me.create_revision;
        }
        let ahead: Vec<&Kv> = kvs
            .iter()
            .filter(|kv| kv.create_revision < me.create_revision)
            .collect();
        let ahead_n = ahead_total.unwrap_or(ahead.len());
        let position = u32::try_from(ahead_n).unwrap_or(u32::MAX).saturating_add(1);
        let slots = req.slots.max(1);
        self.position = Some(position);
        // The read-write recipe: a shared holder waits only for the last
        // exclusive key before its own; an exclusive one (as a plain Mutex)
        // for the last key of any kind.
        let blocking: Vec<&Kv> = if req.shared {
            ahead
                .iter()
                .copied()
                .filter(|kv| !is_read_key(prefix, &kv.key_text()))
                .collect()
        } else {
            ahead.clone()
        };
        let admitted = if req.shared {
            blocking.is_empty()
        } else {
            position <= slots
        };
        if admitted {
            let Some(queued) = self.queued.take() else {
                return Err(Error::internal("etcd: acquired without a queue key"));
            };
            self.watch = None;
            self.lost_waits = 0;
            let slot = if slots > 1 {
                match self.claim_slot(req, &queued, position).await {
                    Ok(slot) => slot,
                    Err(e) => {
                        self.queued = Some(queued);
                        return Err(e);
                    }
                }
            } else {
                1
            };
            return Ok(Attempt::Acquired(EtcdLease {
                key: queued.key,
                lease: queued.lease,
                rev: me.create_revision,
                slot,
                ttl: req.ttl,
                expires_at: queued.renewed.saturating_add(req.ttl),
                watch_from: start_revision,
            }));
        }
        let predecessor = || blocking.last().map(|kv| kv.key_text()).unwrap_or_default();
        let seen_predecessor = blocking.last().map_or(
            Seen::Key {
                create: 0,
                modified: 0,
            },
            |kv| Seen::Key {
                create: kv.create_revision,
                modified: kv.mod_revision,
            },
        );
        self.watch = Some(if slots == 1 {
            // The Mutex recipe: only the next-lower key's deletion matters.
            WatchTarget {
                key: predecessor(),
                range_end: None,
                start_revision,
                seen: seen_predecessor,
                any_event: false,
                // Its deletion admits us with no further read.
                sole_ahead: if req.shared {
                    blocking.len() == 1
                } else {
                    ahead_n == 1
                },
            }
        } else if position == slots + 1 {
            // First in line for a slot: any holder's deletion frees one,
            // so this one waiter watches the queue for deletions.
            WatchTarget {
                key: prefix.to_owned(),
                range_end: Some(prefix_end(prefix.as_bytes())),
                start_revision,
                seen: Seen::Ahead {
                    ahead: ahead_n,
                    mine: me.create_revision,
                },
                any_event: false,
                sole_ahead: false,
            }
        } else {
            // Further back: nothing can free a slot for us before our
            // predecessor is first in line and then holds (it rewrites its
            // key then) or leaves. So no herd: a release wakes one waiter.
            WatchTarget {
                key: predecessor(),
                range_end: None,
                start_revision,
                seen: seen_predecessor,
                any_event: true,
                sole_ahead: false,
            }
        });
        self.last_holder = kvs.first().and_then(Kv::holder);
        tracing::debug!(position, "queued");
        Ok(Attempt::Held(self.last_holder.clone()))
    }

    /// Claim the lowest free slot number for our lease, and in the same
    /// txn rewrite our queue key (same value and lease, a new mod revision):
    /// the put wakes the one waiter that watches us (see [`Self::decide`]).
    async fn claim_slot(&mut self, req: &LockRequest, queued: &Queued, rank: u32) -> Result<u32> {
        let lease = queued.lease;
        let mine = b64(&queued.key);
        let ours_still = json!({"target": "CREATE", "result": "EQUAL", "key": mine, "create_revision": queued.rev.to_string()});
        let touch =
            json!({"request_put": {"key": mine, "ignore_value": true, "ignore_lease": true}});
        for _ in 0..=req.slots {
            let taken = self.claims(&req.name).await?;
            if let Some((_, slot, _)) = taken.iter().find(|(l, _, _)| *l == lease) {
                return Ok(*slot);
            }
            let Some(free) = (1..=req.slots).find(|k| !taken.iter().any(|(_, s, _)| s == k)) else {
                break;
            };
            let key = b64(&format!("{}{}@{free}", self.config.prefix, req.name));
            let reply: TxnResponse = self
                .post(
                    "/v3/kv/txn",
                    &json!({
                        "compare": [
                            {"target": "CREATE", "result": "EQUAL", "key": key, "create_revision": "0"},
                            ours_still,
                        ],
                        "success": [
                            {"request_put": {"key": key, "value": "", "lease": lease.to_string()}},
                            touch,
                        ],
                    }),
                    acquire_timeout(req.ttl),
                    "claiming a slot",
                )
                .await?;
            if reply.succeeded {
                return Ok(free);
            }
        }
        // Every number claimed (a holder's key was deleted by hand, its
        // lease and claim live on): our rank still says we hold. The
        // waiter behind us is still told.
        let _: TxnResponse = self
            .post(
                "/v3/kv/txn",
                &json!({"compare": [ours_still], "success": [touch]}),
                acquire_timeout(req.ttl),
                "claiming a slot",
            )
            .await?;
        Ok(rank)
    }

    /// Remaining TTL of a lease in ms, if it has one.
    async fn time_to_live(&mut self, lease: i64) -> Option<u64> {
        let reply: LeaseResponse = self
            .post(
                "/v3/lease/timetolive",
                &json!({ "ID": lease.to_string() }),
                CALL_TIMEOUT,
                "reading a lease",
            )
            .await
            .ok()?;
        u64::try_from(reply.ttl).ok().map(|s| s * 1000)
    }

    /// The slots of a lock from its queue, for `status`, `list` and `release --force`.
    async fn slot_states(
        &mut self,
        name: &LockName,
        kvs: &[Kv],
        slots: Option<u32>,
    ) -> Result<Vec<(SlotState, Option<Kv>)>> {
        let queue_prefix = queue_prefix(&self.config.prefix, name);
        // Shared keys at the front of a plain lock's queue all hold it.
        let shared = if slots.unwrap_or(1) <= 1 {
            kvs.iter()
                .take_while(|kv| is_read_key(&queue_prefix, &kv.key_text()))
                .count()
        } else {
            0
        };
        let n = slots.unwrap_or(1).max(1) as usize;
        let queue: Vec<QueueEntry> = kvs
            .iter()
            .skip(n.max(shared))
            .map(|kv| QueueEntry {
                key: kv.key_text(),
                revision: u64::try_from(kv.create_revision).unwrap_or(0),
                holder: kv.holder(),
            })
            .collect();
        let claims = if n > 1 {
            self.claims(name).await?
        } else {
            Vec::new()
        };
        let mut out = Vec::new();
        let mut used = Vec::new();
        for (rank, kv) in kvs.iter().take(n).enumerate() {
            let slot = claims
                .iter()
                .find(|(lease, _, _)| *lease == kv.lease)
                .map_or(rank as u32 + 1, |(_, slot, _)| *slot);
            used.push(slot);
            let expires = self.time_to_live(kv.lease).await;
            out.push((
                SlotState {
                    key: if n > 1 {
                        format!("{name}@{slot}")
                    } else {
                        name.as_str().to_owned()
                    },
                    slot: (n > 1).then_some(slot),
                    held: true,
                    holder: kv.holder(),
                    expires_in_ms: expires,
                    waiters: Some(queue.len() as u32),
                    queue: queue.clone(),
                    shared_by: (shared > 0).then(|| u32::try_from(shared).unwrap_or(u32::MAX)),
                    needs_manual_release: false,
                },
                Some(kv.clone()),
            ));
        }
        for slot in (1..=n as u32)
            .filter(|s| !used.contains(s))
            .take(n - out.len())
        {
            out.push((
                SlotState {
                    key: if n > 1 {
                        format!("{name}@{slot}")
                    } else {
                        name.as_str().to_owned()
                    },
                    slot: (n > 1).then_some(slot),
                    held: false,
                    holder: None,
                    expires_in_ms: None,
                    waiters: Some(0),
                    shared_by: None,
                    queue: Vec::new(),
                    needs_manual_release: false,
                },
                None,
            ));
        }
        out.sort_by_key(|(s, _)| s.slot);
        Ok(out)
    }

    /// Open a watch stream (`create` is the gateway's `create_request`).
    async fn open_watch(&mut self, create: Value) -> Result<reqwest::Response> {
        let body = json!({ "create_request": create });
        if self.watch_http.is_none() {
            self.watch_http = Some(self.config.http_client()?);
        }
        let http = self.watch_http.as_ref().unwrap_or(&self.http);
        let request = self.request_on(http, self.current, "/v3/watch", &body);
        match tokio::time::timeout(CALL_TIMEOUT, request.send()).await {
            Ok(Ok(response)) if response.status().is_success() => Ok(response),
            Ok(Ok(response)) => {
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                Err(self.error("watching the lock", server_failure(status, &bytes)))
            }
            Ok(Err(e)) => Err(self.error(
                "watching the lock",
                Failure::Transport(transport_reason(&e)),
            )),
            Err(_) => Err(self.error("watching the lock", Failure::Transport("no answer".into()))),
        }
    }

    /// Watch `target` until a deletion (any event with `any_event`),
    /// keeping our queue key's lease alive meanwhile. `Ok`: something
    /// happened (or the watch was cancelled): try again.
    ///
    /// The watch starts at the cluster's current revision, not at
    /// `target.start_revision`: etcd serves a watch whose start revision is
    /// already past (a contender queued, or a holder let go, between our
    /// look and the watch) from its "unsynced" group, which a background
    /// loop catches up only every 100 ms, and events that happen meanwhile
    /// wait for it too: up to 100 ms of a hand-off lost, which was the
    /// throughput dip at N = 4 (bench/analysis.md, "etcd, fourth round").
    /// The gap between our look and the watch's creation revision is
    /// closed by one local read at that revision ([`Self::changed_by`]),
    /// made only when the revision moved at all.
    async fn watch_for_delete(&mut self, target: &WatchTarget, ttl: Duration) -> Result<()> {
        let mut create = json!({ "key": b64(&target.key) });
        if !target.any_event {
            create["filters"] = json!(["NOPUT"]);
        }
        if let Some(end) = &target.range_end {
            create["range_end"] = Value::String(b64_encode(end));
        }
        let mut response = self.open_watch(create).await?;
        let mut buffer = Vec::new();
        loop {
            let Some(queued) = &self.queued else {
                return Ok(());
            };
            let next_keepalive = queued.renewed.saturating_add(ttl / 3);
            tokio::select! {
                chunk = response.chunk() => {
                    match chunk {
                        Ok(Some(bytes)) => {
                            buffer.extend_from_slice(&bytes);
                            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                                let line: Vec<u8> = buffer.drain(..=end).collect();
                                let Ok(message) = serde_json::from_slice::<WatchMessage>(&line) else {
                                    continue;
                                };
                                if let Some(error) = message.error {
                                    return Err(Error::unavailable(format!(
                                        "etcd at {}: watching the lock failed: {}",
                                        self.cluster(), self.scrub(&error.to_string())
                                    )));
                                }
                                let result = message.result.unwrap_or_default();
                                if result.canceled {
                                    return Ok(());
                                }
                                if result.created {
                                    let at = result.header.revision;
                                    if at < target.start_revision {
                                        // Nothing happened since our look.
                                        continue;
                                    }
                                    let Some(deleted) = self.changed_by(target, at).await else {
                                        continue;
                                    };
                                    self.woke = Some(Woke {
                                        at,
                                        first: target.sole_ahead && deleted,
                                        since: target.start_revision,
                                    })
                                    .filter(|w| w.at > 0);
                                    return Ok(());
                                }
                                let deleted = result.events.iter().any(|e| e.kind == "DELETE");
                                if deleted || (target.any_event && !result.events.is_empty()) {
                                    self.woke = Some(Woke {
                                        at: result.header.revision,
                                        first: target.sole_ahead && deleted,
                                        since: target.start_revision,
                                    })
                                    .filter(|w| w.at > 0);
                                    return Ok(());
                                }
                            }
                        }
                        Ok(None) => return Err(self.error("watching the lock", Failure::Transport("the watch stream ended".into()))),
                        Err(e) => return Err(self.error("watching the lock", Failure::Transport(transport_reason(&e)))),
                    }
                }
                () = tokio::time::sleep_until(next_keepalive.to_instant().into()) => {
                    let lease = queued.lease;
                    let sent = BootTime::now();
                    let left = self.keepalive(lease, renew_timeout(ttl)).await?;
                    if left <= 0 {
                        tracing::info!("our queue key's lease expired while waiting; queueing again");
                        self.queued = None;
                        return Ok(());
                    }
                    if let Some(queued) = &mut self.queued {
                        queued.renewed = sent;
                    }
                }
            }
        }
    }
}

impl EtcdBackend {
    /// Whether `target` changed between our last look at the queue and
    /// revision `at` (a watch's creation revision; every event after it
    /// reaches the watch): `None` unchanged, `Some(deleted)` changed. One
    /// serializable read at `at` from the member the watch is on, which
    /// has applied `at` (it told us so): local, no raft round trip. A read
    /// that fails counts as a change: the caller reads the queue anew.
    async fn changed_by(&mut self, target: &WatchTarget, at: i64) -> Option<bool> {
        let mut body = json!({
            "key": b64(&target.key),
            "revision": at.to_string(),
            "serializable": true,
        });
        if let Some(end) = &target.range_end {
            body["range_end"] = Value::String(b64_encode(end));
            body["keys_only"] = Value::Bool(true);
        }
        if let Seen::Ahead { mine, .. } = target.seen {
            // Keys created after ours rank behind us: not counted.
            body["max_create_revision"] = Value::String((mine - 1).max(1).to_string());
        }
        let reply: std::result::Result<RangeResponse, Failure> =
            self.send("/v3/kv/range", &body, CALL_TIMEOUT).await;
        let Ok(reply) = reply else {
            tracing::debug!("the read closing a watch's gap failed; reading the queue anew");
            return Some(false);
        };
        match target.seen {
            Seen::Key { create, modified } => match reply.kvs.first() {
                Some(kv) if kv.create_revision == create => {
                    (target.any_event && kv.mod_revision != modified).then_some(false)
                }
                _ => Some(true),
            },
            // Keys ahead of ours can only leave.
            Seen::Ahead { ahead, .. } => (reply.kvs.len() < ahead).then_some(true),
        }
    }

    /// The holder's own key deleted (`release --force`, `etcdctl del`) or
    /// its lease revoked (the key goes with it): resolves at once, so the
    /// supervisor renews now and finds the lock lost. A watch that cannot
    /// be opened or breaks is retried after a pause without resolving: the
    /// renewals still run on their interval, and a cluster that is down
    /// must not turn this into a busy loop of renewals.
    async fn own_key_event(&mut self, lease: &EtcdLease) {
        loop {
            if self.own_watch.is_none() {
                // Opened at once, not after a delay that would spare short
                // commands its cost: a deleted key is another holder's
                // grant, and every moment the command runs after it is an
                // overlap.
                if let Some(retry) = self.own_watch_retry {
                    tokio::time::sleep_until(retry).await;
                }
                let create = json!({
                    "key": b64(&lease.key),
                    "start_revision": lease.watch_from.to_string(),
                    "filters": ["NOPUT"],
                });
                match self.open_watch(create).await {
                    Ok(response) => {
                        self.own_watch_retry = None;
                        self.own_watch = Some(OwnWatch {
                            response,
                            buffer: Vec::new(),
                        });
                    }
                    Err(e) => {
                        tracing::debug!(%e, "cannot watch our own key; trying again");
                        self.own_watch_retry =
                            Some(tokio::time::Instant::now() + Duration::from_secs(1));
                        continue;
                    }
                }
            }
            let Some(watch) = &mut self.own_watch else {
                continue;
            };
            // `chunk` is cancel-safe: a chunk is taken only when it is ready.
            match watch.response.chunk().await {
                Ok(Some(bytes)) => {
                    watch.buffer.extend_from_slice(&bytes);
                    let mut lost = false;
                    while let Some(end) = watch.buffer.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = watch.buffer.drain(..=end).collect();
                        let Ok(message) = serde_json::from_slice::<WatchMessage>(&line) else {
                            continue;
                        };
                        let result = message.result.unwrap_or_default();
                        // Cancelled (compacted past `watch_from`): let the
                        // renewal look at the key itself.
                        lost |= message.error.is_some()
                            || result.canceled
                            || result.events.iter().any(|e| e.kind == "DELETE");
                    }
                    if lost {
                        tracing::info!(key = %lease.key, "our lock key was deleted (or its watch cancelled)");
                        self.own_watch = None;
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    tracing::debug!("the watch on our own key ended; opening it again");
                    self.own_watch = None;
                    self.own_watch_retry =
                        Some(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}

fn transport_reason(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_connect() && text.contains("refused") {
        "connection refused (is etcd running there?)".to_owned()
    } else {
        text
    }
}

fn server_failure(status: reqwest::StatusCode, bytes: &[u8]) -> Failure {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        code: i64,
        #[serde(default)]
        message: String,
        #[serde(default)]
        error: Value,
    }
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Failure::Server {
            code: body.code,
            message: if body.message.is_empty() {
                body.error.as_str().unwrap_or_default().to_owned()
            } else {
                body.message
            },
        },
        Err(_) => Failure::Server {
            code: 2,
            message: format!("HTTP {status}"),
        },
    }
}

/// A wait ended by a signal or by `--wait` leaves our queue key behind:
/// revoke its lease, briefly and best effort, on a thread of its own (the
/// runtime we were on is not there to await on in `drop`). A SIGKILL skips
/// this; the lease then expires after the ttl.
impl Drop for EtcdBackend {
    fn drop(&mut self) {
        let Some(queued) = self.queued.take() else {
            return;
        };
        let (Ok(http), endpoints, token) = (
            self.config.http_client(),
            (0..self.config.endpoints.len())
                .map(|i| self.base((self.current + i) % self.config.endpoints.len()))
                .collect::<Vec<_>>(),
            self.token.clone(),
        ) else {
            return;
        };
        let body = json!({ "ID": queued.lease.to_string() }).to_string();
        let revoke = move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for base in endpoints {
                    let mut request = http
                        .post(format!("{base}/v3/lease/revoke"))
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone());
                    if let Some(token) = &token {
                        request = request.header(AUTHORIZATION, token);
                    }
                    // An answer is not a revoke: a member without a leader
                    // answers 503; the next endpoint may do it.
                    if let Ok(Ok(response)) =
                        tokio::time::timeout(DROP_TIMEOUT, request.send()).await
                        && response.status().is_success()
                    {
                        tracing::debug!("revoked our queue key's lease");
                        return;
                    }
                }
            });
        };
        let _ = std::thread::spawn(revoke).join();
    }
}

impl Backend for EtcdBackend {
    type Lease = EtcdLease;

    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<EtcdLease> {
        poll_acquire(self, req, wait).await
    }

    fn renew_interval(&self, req: &LockRequest) -> Option<Duration> {
        Some(req.ttl / 3)
    }

    async fn renew(&mut self, lease: &mut EtcdLease) -> Result<Renewal> {
        let sent = BootTime::now();
        let limit = renew_timeout(lease.ttl);
        let left = self.keepalive(lease.lease, limit).await?;
        if left <= 0 {
            return Ok(Renewal::Lost(format!(
                "the etcd lease {:x} of the lock key {} expired or was revoked",
                lease.lease, lease.key
            )));
        }
        let reply: RangeResponse = self
            .post(
                "/v3/kv/range",
                &json!({ "key": b64(&lease.key), "keys_only": true }),
                limit,
                "checking the lock key",
            )
            .await?;
        match reply.kvs.first() {
            Some(kv) if kv.create_revision == lease.rev && kv.lease == lease.lease => {
                // A new own-key watch need not look further back than this.
                lease.watch_from = lease.watch_from.max(reply.header.revision + 1);
                // etcd never grants less than asked (it rounds up to its
                // minimum), so our ttl from the send is the safe bound.
                lease.expires_at = sent.saturating_add(lease.ttl);
                Ok(Renewal::Held)
            }
            _ => Ok(Renewal::Lost(format!(
                "the lock key {} was deleted from etcd (release --force, or by hand)",
                lease.key
            ))),
        }
    }

    async fn loss_hint(&mut self, lease: &mut EtcdLease) {
        self.own_key_event(lease).await;
    }

    async fn release(&mut self, lease: EtcdLease) -> Result<()> {
        // Our own revoke is no news: stop watching first.
        self.own_watch = None;
        self.revoke(lease.lease, RELEASE_TIMEOUT).await
    }
}

impl Polling for EtcdBackend {
    async fn try_acquire(&mut self, req: &LockRequest, slot: u32) -> Result<Attempt<EtcdLease>> {
        // One queue serves every slot: the first try answers for all.
        if slot > 1 {
            return Ok(Attempt::Held(self.last_holder.clone()));
        }
        let prefix = queue_prefix(&self.config.prefix, &req.name);
        let holder =
            serde_json::to_string(&req.holder).map_err(|e| Error::internal(e.to_string()))?;
        // Woken by a watch: our key exists, so only the queue ahead of it
        // needs reading, as of the event's revision, from the member that
        // sent it (it has applied that revision): a serializable read, no
        // raft round trip on the hand-off path. The state at that revision
        // is final for what matters: keys created later rank after ours,
        // and a key ahead deleted later only moves us up (the watch that
        // follows, with its gap read, covers everything after it). Any
        // error: the txn below.
        let woke = self.woke.take();
        // The only key ahead of ours is gone: we hold, with no request at
        // all. No key can rank ahead of ours later (create revisions only
        // grow), and our own key is there: its lease was renewed less than
        // two thirds of a ttl ago (else the read below decides), and a
        // deletion by hand since our last look is replayed by the own-key
        // watch, which starts at that look (`since`), and stops the command.
        if let (Some(woke), Some(queued)) = (&woke, &self.queued)
            && woke.first
            && queued.rev > 0
            && BootTime::now() < queued.renewed.saturating_add(req.ttl * 2 / 3)
        {
            let Some(queued) = self.queued.take() else {
                return Err(Error::internal("etcd: woken without a queue key"));
            };
            self.watch = None;
            self.lost_waits = 0;
            self.position = Some(1);
            return Ok(Attempt::Acquired(EtcdLease {
                key: queued.key,
                lease: queued.lease,
                rev: queued.rev,
                slot: 1,
                ttl: req.ttl,
                expires_at: queued.renewed.saturating_add(req.ttl),
                watch_from: woke.since,
            }));
        }
        if let (Some(Woke { at, .. }), Some(queued)) = (woke, &self.queued)
            && queued.rev > 0
        {
            let (lease, rev, key) = (queued.lease, queued.rev, queued.key.clone());
            let body = json!({
                "key": b64(&prefix),
                "range_end": b64_encode(&prefix_end(prefix.as_bytes())),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
                "max_create_revision": rev.to_string(),
                "revision": at.to_string(),
                "serializable": true,
            });
            let reply: std::result::Result<RangeResponse, Failure> = self
                .send("/v3/kv/range", &body, acquire_timeout(req.ttl))
                .await;
            match reply {
                Ok(reply) => {
                    let me = reply
                        .kvs
                        .iter()
                        .find(|kv| kv.key_text() == key && kv.create_revision == rev)
                        .cloned();
                    match me.filter(|me| me.lease == lease) {
                        Some(me) => {
                            return self
                                .decide(req, &prefix, &reply.kvs, &me, at + 1, None)
                                .await;
                        }
                        // Our key went with its lease: queue anew below.
                        None => self.queued = None,
                    }
                }
                Err(failure) => {
                    tracing::debug!(
                        ?failure,
                        "the read at the watch's revision failed; reading anew"
                    );
                }
            }
        }
        for _ in 0..3 {
            if self.queued.is_none() {
                let (lease, sent) = self.grant(req.ttl).await?;
                self.queued = Some(Queued {
                    lease,
                    key: if req.shared {
                        format!("{prefix}{READ_MARKER}{lease:x}")
                    } else {
                        format!("{prefix}{lease:x}")
                    },
                    rev: 0,
                    renewed: sent,
                });
            }
            let Some(queued) = &self.queued else {
                continue;
            };
            let (lease, key) = (queued.lease, b64(&queued.key));
            let owners = json!({"request_range": {
                "key": b64(&prefix),
                "range_end": b64_encode(&prefix_end(prefix.as_bytes())),
                "sort_order": "ASCEND",
                "sort_target": "CREATE",
            }});
            let mine = json!({"request_range": {"key": key}});
            let put = json!({"request_put": {"key": key, "value": b64(&holder), "lease": lease.to_string()}});
            // A shared contender needs every key ahead (the last exclusive
            // one is its predecessor); an exclusive one only a summary.
            let summary = !req.shared;
            let success = if summary {
                let [newest, oldest] = queue_summary(&prefix);
                json!([put, newest, oldest])
            } else {
                json!([put, mine, owners])
            };
            let body = json!({
                "compare": [{"target": "CREATE", "result": "EQUAL", "key": key, "create_revision": "0"}],
                "success": success,
                "failure": [mine, owners],
            });
            let reply: std::result::Result<TxnResponse, Failure> = self
                .send("/v3/kv/txn", &body, acquire_timeout(req.ttl))
                .await;
            let reply = match reply {
                Ok(reply) => reply,
                // Our lease expired before its key was made: queue anew.
                Err(Failure::Server { code: 5, .. }) => {
                    self.queued = None;
                    continue;
                }
                Err(failure) if self.config.user.is_some() && failure.is_expired_token() => {
                    self.authenticate(acquire_timeout(req.ttl)).await?;
                    continue;
                }
                // Already queued, and the cluster is between leaders or a
                // member is gone: wait for it (bounded by --wait and by
                // OUTAGE_PATIENCE), as a failed watch does.
                Err(failure @ (Failure::Transport(_) | Failure::Server { code: 4 | 14, .. }))
                    if self.queued.as_ref().is_some_and(|q| q.rev > 0) =>
                {
                    let since = *self
                        .outage_since
                        .get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() > OUTAGE_PATIENCE {
                        return Err(self.error("acquiring the lock", failure));
                    }
                    tracing::info!(?failure, "etcd did not answer; waiting for the cluster");
                    self.watch = None;
                    self.back_off = true;
                    return Ok(Attempt::Held(self.last_holder.clone()));
                }
                Err(failure) => return Err(self.error("acquiring the lock", failure)),
            };
            self.outage_since = None;
            let skip = usize::from(reply.succeeded);
            let range = |i: usize| {
                reply
                    .responses
                    .get(skip + i)
                    .and_then(|r| r.response_range.as_ref())
            };
            let (me, kvs, ahead_total) = if reply.succeeded && summary {
                // Our put is the newest key of the queue: the first of the
                // newest two is ours, the second our predecessor, and the
                // count of the range is our position.
                let newest = range(0);
                let me = newest.and_then(|r| r.kvs.first()).cloned();
                let mut kvs: Vec<Kv> = range(1).map(|r| r.kvs.clone()).unwrap_or_default();
                if let Some(predecessor) = newest.and_then(|r| r.kvs.get(1))
                    && kvs
                        .first()
                        .is_none_or(|kv| kv.create_revision < predecessor.create_revision)
                {
                    kvs.push(predecessor.clone());
                }
                let total = newest.map_or(1, |r| usize::try_from(r.count).unwrap_or(1));
                (me, kvs, Some(total.saturating_sub(1)))
            } else {
                let me = range(0).and_then(|r| r.kvs.first()).cloned();
                (
                    me,
                    range(1).map(|r| r.kvs.clone()).unwrap_or_default(),
                    None,
                )
            };
            let Some(me) = me.filter(|me| me.lease == lease && me.key == key) else {
                // The key went with its lease between our grant and now.
                self.queued = None;
                continue;
            };
            return self
                .decide(
                    req,
                    &prefix,
                    &kvs,
                    &me,
                    reply.header.revision + 1,
                    ahead_total,
                )
                .await;
        }
        Err(Error::unavailable(format!(
            "etcd at {}: our lease kept expiring before the lock could be queued for (is --ttl too short?)",
            self.cluster()
        )))
    }

    async fn wait(&mut self, req: &LockRequest, _round: u32) -> Result<WaitOutcome<EtcdLease>> {
        let Some(target) = self.watch.take() else {
            if std::mem::take(&mut self.back_off) {
                self.lost_waits += 1;
                tokio::time::sleep(backoff_delay(
                    self.lost_waits,
                    Duration::from_millis(50),
                    Duration::from_secs(1),
                ))
                .await;
            }
            return Ok(WaitOutcome::Retry);
        };
        match self.watch_for_delete(&target, req.ttl).await {
            Ok(()) => self.lost_waits = 0,
            Err(e) if matches!(e, Error::NoPermission(_)) => return Err(e),
            Err(e) => {
                // A member restarting or unreachable: a waiter waits on
                // (its `--wait` still bounds it) until the cluster answers
                // again, then tries again; a cluster gone for longer than
                // OUTAGE_PATIENCE is an error.
                tracing::info!(error = %e, "etcd watch failed; waiting for the cluster to answer");
                let since = tokio::time::Instant::now();
                loop {
                    self.lost_waits += 1;
                    tokio::time::sleep(backoff_delay(
                        self.lost_waits,
                        Duration::from_millis(50),
                        Duration::from_secs(1),
                    ))
                    .await;
                    let probe: std::result::Result<Value, Failure> = self
                        .send("/v3/maintenance/status", &json!({}), CALL_TIMEOUT)
                        .await;
                    match probe {
                        Ok(_) => break,
                        Err(failure) if since.elapsed() > OUTAGE_PATIENCE => {
                            return Err(self.error("waiting for the lock", failure));
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        Ok(WaitOutcome::Retry)
    }

    fn queue_position(&self) -> Option<u32> {
        self.position
    }
}

impl Inspect for EtcdBackend {
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>> {
        let (kvs, _) = self.queue(name).await?;
        Ok(self
            .slot_states(name, &kvs, slots)
            .await?
            .into_iter()
            .map(|(s, _)| s)
            .collect())
    }

    async fn list(&mut self) -> Result<Vec<SlotState>> {
        let prefix = self.config.prefix.clone();
        let (key, end) = if prefix.is_empty() {
            (vec![0u8], vec![0u8])
        } else {
            (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
        };
        let reply: RangeResponse = self
            .post(
                "/v3/kv/range",
                &json!({
                    "key": b64_encode(&key),
                    "range_end": b64_encode(&end),
                    "sort_order": "ASCEND",
                    "sort_target": "CREATE",
                }),
                CALL_TIMEOUT,
                "listing locks",
            )
            .await?;
        let mut names: std::collections::BTreeMap<String, Vec<Kv>> =
            std::collections::BTreeMap::default();
        for kv in reply.kvs {
            let text = kv.key_text();
            let Some((name, lease)) = text
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let lease = lease.strip_prefix(READ_MARKER).unwrap_or(lease);
            if kv.lease == 0
                || i64::from_str_radix(lease, 16).ok() != Some(kv.lease)
                || LockName::parse(std::ffi::OsStr::new(name)).is_err()
            {
                continue;
            }
            names.entry(name.to_owned()).or_default().push(kv);
        }
        let mut out = Vec::new();
        for (name, kvs) in names {
            let name = LockName::parse(std::ffi::OsStr::new(&name))?;
            out.extend(
                self.slot_states(&name, &kvs, None)
                    .await?
                    .into_iter()
                    .map(|(s, _)| s),
            );
        }
        Ok(out)
    }

    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>> {
        let (kvs, _) = self.queue(name).await?;
        let claims = self.claims(name).await?;
        let mut removed = Vec::new();
        for (state, kv) in self.slot_states(name, &kvs, slots).await? {
            let Some(kv) = kv else { continue };
            // Held shared: every shared key at the front of the queue holds.
            let holding = state.shared_by.map_or(1, |n| n as usize);
            let mut doomed: Vec<String> =
                kvs.iter().take(holding).map(|kv| kv.key.clone()).collect();
            if doomed.is_empty() {
                doomed.push(kv.key.clone());
            }
            doomed.extend(
                claims
                    .iter()
                    .filter(|(lease, _, _)| *lease == kv.lease)
                    .map(|(_, _, key)| b64(key)),
            );
            for key in doomed {
                let _: Value = self
                    .post(
                        "/v3/kv/deleterange",
                        &json!({ "key": key }),
                        CALL_TIMEOUT,
                        "breaking the lock",
                    )
                    .await?;
            }
            removed.push(state);
        }
        Ok(removed)
    }

    fn display_url(&self) -> String {
        self.config.display_url()
    }
}

/// What `lockrun doctor` asks the cluster: each member's own status.
impl EtcdBackend {
    pub(crate) fn endpoints(&self) -> &[String] {
        &self.config.endpoints
    }

    /// `/v3/maintenance/status` of one member, not failing over to another.
    pub(crate) async fn member_status(
        &self,
        endpoint: usize,
    ) -> std::result::Result<Value, String> {
        self.send_one(endpoint, "/v3/maintenance/status", &json!({}), CALL_TIMEOUT)
            .await
            .map_err(|failure| match failure {
                Failure::Transport(why) => why,
                Failure::Server { code, message } => {
                    format!("{} (code {code})", self.scrub(&message))
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = EtcdConfig::parse_url("etcd://127.0.0.1:2379,127.0.0.1:22379").unwrap();
        assert_eq!(c.endpoints, ["127.0.0.1:2379", "127.0.0.1:22379"]);
        assert_eq!(c.display_url(), "etcd://127.0.0.1:2379,127.0.0.1:22379");
        let c = EtcdConfig::parse_url("etcds://bob:s3cret@h1,[::1]:4?prefix=locks/&cacert=/ca.pem")
            .unwrap();
        assert_eq!(c.endpoints, ["h1:2379", "[::1]:4"]);
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(c.prefix, "locks/");
        assert_eq!(
            c.display_url(),
            "etcds://bob@h1:2379,[::1]:4?prefix=locks/&cacert=/ca.pem"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in [
            "etcd://",
            "etcd:h",
            "etcd://h1,,h2",
            "etcd://h/path",
            "etcd://h?cacert=/x",
            "etcd://h?nope=1",
            "etcd://h:99999",
        ] {
            assert!(EtcdConfig::parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_round_trips() {
        for text in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "a/b\u{0}\u{ff}",
        ] {
            assert_eq!(b64_decode(&b64(text)), text.as_bytes());
        }
        assert_eq!(b64("foo/"), "Zm9vLw==");
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"foo/"), b"foo0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 103]
            .map(crate::ui::ordinal)
            .to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "103rd"
            ]
        );
    }
}
