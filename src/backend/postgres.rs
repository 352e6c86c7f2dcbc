//! PostgreSQL backend: session advisory locks on one dedicated connection.
//!
//! * The lock is `pg_try_advisory_lock(KEY)` in a session of our own that
//!   lives as long as the command. The server frees it when the session
//!   ends, so there is no lease to renew: a renewal is one statement that
//!   checks the session is still the one that took the lock and still holds
//!   it (`pg_locks`). The connection ending (dropped, `pg_terminate_backend`,
//!   a server restart) is a loss *event* ([`Backend::loss_hint`]).
//!   `--shared` is `pg_try_advisory_lock_shared` on the same key (and
//!   `pg_advisory_unlock_shared`), so it interoperates with other tools'
//!   shared and exclusive advisory locks.
//! * Keys: a NAME that is a canonical decimal `bigint` (`424242`, `-7`) is
//!   the key itself; any other NAME, and slot K of any NAME, is the first
//!   64 bits of the MD5 of `lockrun:NAME` (or `lockrun:NAME@K`), which is
//!   what the documented SQL computes, so that other tools can take the
//!   same lock ([`key_of_text`]).
//! * Waiting for a single lock queues in the server: `pg_advisory_lock`
//!   under a `lock_timeout` of at most 1 s, then a try and again. The
//!   server hands the lock to the first in its queue at the release (one
//!   wake-up, no herd), and the timeout bounds how long a queued waiter can
//!   hold up `CREATE INDEX CONCURRENTLY` (the deadlock of a blocking wait
//!   without one). `--slots N` polls `pg_try_advisory_lock` with backoff and
//!   jitter (50 ms to 1 s), woken by a NOTIFY from lockrun releasers.
//! * The dead-host bound: the session sets the server side of its TCP
//!   connection (`tcp_user_timeout`, `tcp_keepalives_*`) so that the server
//!   drops a silent client — and so frees its lock — about `--ttl` after the
//!   last packet from it, and never sooner. Our kill deadline is therefore
//!   the send time of the last successful check + ttl, like a lease.
//! * A pooler in transaction mode (PgBouncer) is refused: the backend pid
//!   is read with every statement and must never change.
//! * Fence: a row per NAME in `lockrun_fence`, bumped in the try
//!   statement itself, only when the lock was granted; the table is
//!   created on first use where the role may, otherwise there is no fence.
//! * Round trips: an uncontended run is start-up, one try statement (the
//!   session settings and the pooler check's address ride along on the
//!   first) and the release.
//! * TLS: libpq's `sslmode` and `sslrootcert` (see [`tls`]).

mod tls;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{AsyncMessage, Client};
use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) use tls::{RootCert, SslMode};

use crate::acquire::poll_acquire;
use crate::error::{Error, Result};
use crate::lock::{
    Attempt, Backend, HolderInfo, Inspect, Interrupts, Lease, LockName, LockRequest, Polling,
    Renewal, SlotState, Wait, WaitDisplay, WaitOutcome,
};
use crate::os::BootTime;

pub(crate) const DEFAULT_PORT: u16 = 5432;
pub(crate) const PASSWORD_ENV: &str = "LOCKRUN_PG_PASSWORD";
pub(crate) const LIBPQ_PASSWORD_ENV: &str = "PGPASSWORD";

/// What a derived key hashes, before the name.
pub(crate) const KEY_PREFIX: &str = "lockrun:";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const RENEW_TIMEOUT_CAP: Duration = Duration::from_secs(2);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a second session may take to show a pooler's hand.
const POOLER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL_FIRST: Duration = Duration::from_millis(50);
/// The longest wait in the server's lock queue (`lock_timeout`) before the
/// waiter steps out and in again: it bounds how long our queued
/// transaction can hold up a `CREATE INDEX CONCURRENTLY` (see DESIGN.md;
/// under the default `deadlock_timeout` of 1 s, so that the index build
/// never waits long enough to run its deadlock check), and how long a
/// waiter whose lockrun died stays queued.
const QUEUE_STEP: Duration = Duration::from_millis(500);
const POLL_CAP: Duration = Duration::from_secs(1);
/// How often a waiter looks up who holds the lock.
const HOLDER_REFRESH: Duration = Duration::from_secs(1);

/// A parsed `postgres://` / `postgresql://` URL. The password stays out of
/// `Debug` and [`display_url`](Self::display_url).
#[derive(Clone)]
pub(crate) struct PgConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
    password: Option<String>,
    /// Where the password came from, for the authentication error.
    password_from: &'static str,
    pub ssl: SslMode,
    /// `None`: libpq's default, `~/.postgresql/root.crt` if it exists.
    pub root_cert: Option<RootCert>,
    /// Keep a fence counter in `lockrun_fence` (created when missing).
    pub fence: bool,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &self.display_url())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// Where a password (and libpq's TLS settings) may come from, besides the
/// URL: read once at parse time.
struct PasswordSources {
    lockrun: Option<String>,
    libpq: Option<String>,
    pgpass: Option<PathBuf>,
    /// `PGSSLMODE`, `PGSSLROOTCERT`: the URL wins, as in libpq.
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl PasswordSources {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|p| !p.is_empty());
        let pgpass = std::env::var_os("PGPASSFILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")));
        PasswordSources {
            lockrun: var(PASSWORD_ENV),
            libpq: var(LIBPQ_PASSWORD_ENV),
            pgpass,
            sslmode: var("PGSSLMODE"),
            sslrootcert: var("PGSSLROOTCERT"),
        }
    }
}

impl PgConfig {
    /// `postgres://[user[:password]@]host[:port][/db][?sslmode=MODE&sslrootcert=FILE&fence=on|off]`.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        Self::parse_with(url, &PasswordSources::from_env())
    }

    fn parse_with(url: &str, sources: &PasswordSources) -> Result<Self> {
        let shown = super::url::redacted(url);
        let bad = |why: &str| {
            Error::usage(format!(
                "invalid postgres URL {shown:?}: {why}; use postgres://[user@]host[:port]/db[?sslmode=MODE&sslrootcert=FILE]"
            ))
        };
        let parts = super::url::parse(url).map_err(|why| bad(&why))?;
        if !matches!(parts.scheme.as_str(), "postgres" | "postgresql") {
            return Err(bad("the scheme must be postgres or postgresql"));
        }
        if !parts.has_authority {
            return Err(bad("expected postgres://"));
        }
        let host = parts.host.clone().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = parts.port.unwrap_or(DEFAULT_PORT);
        let user = match parts.user.clone() {
            Some(user) => user,
            None => std::env::var("PGUSER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| HolderInfo::for_this_process("").user),
        };
        let path = parts.path.trim_start_matches('/');
        if path.contains('/') {
            return Err(bad("the path must be one database name"));
        }
        let dbname = match super::url::decode(path).map_err(|why| bad(&why))? {
            db if db.is_empty() => user.clone(),
            db => db,
        };
        let mut sslmode = None;
        let mut sslrootcert = None;
        let mut fence = true;
        let query = parts
            .query_pairs(super::url::Plus::Literal)
            .map_err(|why| bad(&format!("{why} in the query")))?;
        for (key, value) in query {
            match (key.as_str(), value.as_str()) {
                ("sslmode", _) => sslmode = Some(value),
                ("sslrootcert", "") => return Err(bad("sslrootcert needs a file name")),
                ("sslrootcert", _) => sslrootcert = Some(value),
                ("fence", "on") => fence = true,
                ("fence", "off") => fence = false,
                ("fence", _) => return Err(bad("fence must be on or off")),
                (other, _) => {
                    return Err(bad(&format!(
                        "unknown option {other:?} (known: sslmode, sslrootcert, fence)"
                    )));
                }
            }
        }
        let (ssl, root_cert) = ssl_settings(
            sslmode.as_deref().or(sources.sslmode.as_deref()),
            sslrootcert.as_deref().or(sources.sslrootcert.as_deref()),
        )
        .map_err(|why| bad(&why))?;
        let (password, password_from) = if let Some(p) = parts.password.clone() {
            (Some(p), "the URL")
        } else if let Some(p) = sources.lockrun.clone() {
            (Some(p), PASSWORD_ENV)
        } else if let Some(p) = sources.libpq.clone() {
            (Some(p), LIBPQ_PASSWORD_ENV)
        } else {
            match sources
                .pgpass
                .as_deref()
                .and_then(|file| pgpass_lookup(file, &host, port, &dbname, &user))
            {
                Some(p) => (Some(p), "the password file"),
                None => (None, "nowhere"),
            }
        };
        Ok(PgConfig {
            host,
            port,
            user,
            dbname,
            password,
            password_from,
            ssl,
            root_cert,
            fence,
        })
    }

    /// The URL without the password, for the child's `LOCKRUN_BACKEND` and output.
    pub(crate) fn display_url(&self) -> String {
        let mut url = format!(
            "postgres://{}@{}/{}",
            super::url::encode(&self.user),
            self.address(),
            super::url::encode(&self.dbname)
        );
        let mut options = Vec::new();
        if self.ssl != SslMode::Prefer {
            options.push(format!("sslmode={}", self.ssl.as_str()));
        }
        if let Some(root) = &self.root_cert {
            options.push(format!(
                "sslrootcert={}",
                super::url::encode(&root.as_url_value())
            ));
        }
        if !self.fence {
            options.push("fence=off".into());
        }
        if !options.is_empty() {
            url.push('?');
            url.push_str(&options.join("&"));
        }
        url
    }

    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn client_config(
        &self,
        application_name: &str,
        ssl_mode: tokio_postgres::config::SslMode,
    ) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name(application_name)
            .connect_timeout(CONNECT_TIMEOUT)
            .ssl_mode(ssl_mode)
            // Our side: notice a dead server or link while idle.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        if let Some(password) = &self.password {
            c.password(password.as_bytes());
        }
        c
    }
}

/// `sslmode` and `sslrootcert` (from the URL, else libpq's environment), as
/// libpq reads them: `sslrootcert=system` means verify-full and refuses
/// weaker modes. The error is a reason.
fn ssl_settings(
    mode: Option<&str>,
    root: Option<&str>,
) -> std::result::Result<(SslMode, Option<RootCert>), String> {
    let root = root.map(RootCert::parse);
    let mode = match mode {
        Some(text) => SslMode::parse(text).ok_or_else(|| {
            format!(
                "sslmode {text:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )
        })?,
        None if root == Some(RootCert::System) => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if root == Some(RootCert::System) && mode != SslMode::VerifyFull {
        return Err(format!(
            "sslrootcert=system needs sslmode=verify-full, not the weaker {}",
            mode.as_str()
        ));
    }
    Ok((mode, root))
}

/// The first matching line of a libpq password file (`host:port:db:user:password`,
/// `*` matches anything, `\:` and `\\` are escapes), as libpq reads it: a
/// file that group or others can read is ignored, with a warning.
fn pgpass_lookup(file: &Path, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "the password file has group or world access; it is ignored (chmod 0600 it)"
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    pgpass_match(&text, host, port, db, user)
}

fn pgpass_match(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = pgpass_fields(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = |field: &str, value: &str| field == "*" || field == value;
        let host_matches =
            matches(&fields[0], host) || (fields[0] == "localhost" && host.starts_with('/'));
        if host_matches
            && matches(&fields[1], &port)
            && matches(&fields[2], db)
            && matches(&fields[3], user)
        {
            // The password is the rest of the line, colons and all.
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// The key of `key_text` (a NAME, or `NAME@K` for a slot) if it needs no
/// server: a NAME that is a bigint written the canonical way.
pub(crate) fn numeric_key(key_text: &str) -> Option<i64> {
    let key = key_text.parse::<i64>().ok()?;
    (key.to_string() == key_text).then_some(key)
}

/// The advisory key of `key_text` (a NAME, or `NAME@K` for a slot): the
/// number itself where allowed ([`numeric_key`]), else the documented SQL
/// `('x' || substr(md5('lockrun:' || KEY_TEXT), 1, 16))::bit(64)::bigint`,
/// computed here, with no round trip and no first-use
/// cost in a fresh server session: the first 8 bytes of the MD5 of the
/// text, big-endian. Names are ASCII, so the text's bytes are the same in
/// every server encoding, and the SQL gives the same key.
pub(crate) fn key_of_text(key_text: &str, numeric_allowed: bool) -> i64 {
    use md5::Digest as _;
    if numeric_allowed && let Some(key) = numeric_key(key_text) {
        return key;
    }
    let digest = md5::Md5::digest(format!("{KEY_PREFIX}{key_text}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The low and high halves of a key as `pg_locks` shows them: `classid`
/// is the high 32 bits, `objid` the low 32 bits, `objsubid` 1.
const KEY_MATCH: &str = "l.locktype = 'advisory' AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid::int8 = (($1::int8 >> 32) & 4294967295) \
     AND l.objid::int8 = ($1::int8 & 4294967295)";

pub(crate) struct PgBackend {
    config: PgConfig,
    /// TLS as `sslmode` says (never used with sslmode=disable).
    tls: MakeRustlsConnect,
    ssl_mode: tokio_postgres::config::SslMode,
    client: Option<Client>,
    /// `Some(reason)` once the connection task ended.
    closed: Option<watch::Receiver<Option<String>>>,
    /// The server process of our session; it must never change.
    backend_pid: i32,
    /// A NOTIFY on a channel we LISTEN on arrived (a lockrun released).
    wake: Arc<Notify>,
    /// Keys whose release channel this session LISTENs on, and keys
    /// found held whose channel it does not yet.
    listening: HashSet<i64>,
    to_listen: HashSet<i64>,
    /// Keys to LISTEN on, pipelined ahead of the next try.
    listen_next: HashSet<i64>,
    /// When each key's holder was last looked up: woken waiters retry
    /// together at every release, and each holder lookup (`pg_locks` ⋈
    /// `pg_stat_activity`) would cost the server as much as the try.
    holder_seen: HashMap<i64, std::time::Instant>,
    /// Whether the session settings for a lock (application_name, the
    /// server's keepalives) are in place for this connection.
    session_set: bool,
    /// Whether this connection's session was checked for a pooler: the
    /// first try does it in its own statement, so nothing else does.
    checked: bool,
    /// `None`: not tried yet; `Some(false)`: no fence on this server.
    fence_works: Option<bool>,
    lost_waits: u32,
    /// A queued lock statement (key, shared) is, or may still be, in the
    /// server: set while it runs, left set when its future was dropped.
    queued: Option<(i64, bool)>,
}

pub(crate) struct PgLease {
    key: i64,
    /// Taken with `pg_try_advisory_lock_shared`: released with its `_shared` twin.
    shared: bool,
    key_text: String,
    slot: u32,
    fence: Option<u64>,
    ttl: Duration,
    expires_at: BootTime,
    /// Waiters for it poll (a lock of several slots), so its release
    /// sends them the NOTIFY hint; a single lock's waiters queue in the
    /// server, which wakes the next one itself.
    notify: bool,
}

impl Lease for PgLease {
    fn slot(&self) -> u32 {
        self.slot
    }
    fn fence(&self) -> Option<u64> {
        self.fence
    }
    fn expires_at(&self) -> Option<BootTime> {
        Some(self.expires_at)
    }
}

/// One granted or waiting row of `pg_locks` for a key, with its session.
struct LockRow {
    pid: i32,
    granted: bool,
    /// `ShareLock` for `pg_advisory_lock_shared`, `ExclusiveLock` otherwise.
    shared: bool,
    application_name: String,
    user: String,
    client: String,
    since: u64,
}

impl LockRow {
    fn holder(&self) -> HolderInfo {
        // Ours: `lockrun NAME PID@HOST`.
        if let Some((pid, host)) = parse_application_name(&self.application_name) {
            return HolderInfo {
                host,
                pid,
                user: self.user.clone(),
                command: format!("lockrun, postgres backend {}", self.pid),
                since: self.since,
                fence: None,
                token: None,
            };
        }
        let app = if self.application_name.is_empty() {
            "unnamed client"
        } else {
            &self.application_name
        };
        HolderInfo {
            host: if self.client.is_empty() {
                "local socket".into()
            } else {
                self.client.clone()
            },
            pid: u32::try_from(self.pid).unwrap_or(0),
            user: self.user.clone(),
            command: format!("{app}, postgres backend"),
            since: self.since,
            fence: None,
            token: None,
        }
    }
}

/// `lockrun NAME PID@HOST` → (PID, HOST).
fn parse_application_name(app: &str) -> Option<(u32, String)> {
    let rest = app.strip_prefix("lockrun ")?;
    let (_, who) = rest.rsplit_once(' ')?;
    let (pid, host) = who.split_once('@')?;
    Some((pid.parse().ok()?, host.to_owned()))
}

fn application_name(name: Option<&LockName>) -> String {
    let me = HolderInfo::for_this_process("");
    match name {
        Some(name) => format!("lockrun {name} {}@{}", me.pid, me.host),
        None => format!("lockrun {}@{}", me.pid, me.host),
    }
}

impl PgBackend {
    /// Connect (69 when unreachable, 77 when refused) and check that the
    /// session is a real one, not a transaction-pooled one.
    pub(crate) async fn connect(config: PgConfig) -> Result<Self> {
        let (tls, ssl_mode) = tls::connector(config.ssl, config.root_cert.as_ref())?;
        let mut backend = PgBackend {
            config,
            tls,
            ssl_mode,
            client: None,
            closed: None,
            backend_pid: 0,
            wake: Arc::new(Notify::new()),
            listening: HashSet::new(),
            to_listen: HashSet::new(),
            listen_next: HashSet::new(),
            holder_seen: HashMap::new(),
            session_set: false,
            checked: false,
            fence_works: None,
            lost_waits: 0,
            queued: None,
        };
        backend.reconnect().await?;
        Ok(backend)
    }

    async fn reconnect(&mut self) -> Result<()> {
        self.client = None;
        self.closed = None;
        self.session_set = false;
        self.listening.clear();
        self.to_listen.clear();
        self.listen_next.clear();
        let config = self
            .config
            .client_config(&application_name(None), self.ssl_mode);
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(self.tls.clone()))
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "postgres at {}: connecting timed out after {}",
                    self.config.address(),
                    humantime::format_duration(CONNECT_TIMEOUT)
                ))
            })?;
        let (client, mut connection) = connected.map_err(|e| self.error("connecting", &e))?;
        let (tx, rx) = watch::channel(None);
        let wake = self.wake.clone();
        tokio::spawn(async move {
            let reason = loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    // Only our release channels are listened on.
                    Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        break e.as_db_error().map_or_else(
                            || e.to_string(),
                            |db| format!("{}: {}", db.severity(), db.message()),
                        );
                    }
                    None => break "the server closed the connection".to_owned(),
                }
            };
            let _ = tx.send(Some(reason));
        });
        self.client = Some(client);
        self.closed = Some(rx);
        self.checked = false;
        Ok(())
    }

    /// The pooler check, as its own statement, for a session that has not
    /// had its first try (status, list, release --force, doctor).
    async fn ensure_checked(&mut self) -> Result<()> {
        if self.checked {
            return Ok(());
        }
        // Every statement reads the backend pid, which must never change:
        // a busy transaction pooler hands statements to different server
        // sessions. An idle one hands them all to the same one, so unless
        // the server's end of our connection is the address we dialled
        // (nothing in between), ask for a second session too.
        let row = self
            .call("reading the backend pid", CALL_TIMEOUT, async |c| {
                c.query_typed_one(
                    "SELECT pg_backend_pid(), host(inet_server_addr()), inet_server_port()",
                    &[],
                )
                .await
            })
            .await?;
        self.first_pid(row.get(0), row.get(1), row.get(2)).await
    }

    /// The first statement's pid and server address: the pid every later
    /// statement must show, and the pooler probe unless we reached the
    /// server itself.
    async fn first_pid(
        &mut self,
        pid: i32,
        server_addr: Option<String>,
        server_port: Option<i32>,
    ) -> Result<()> {
        self.backend_pid = pid;
        if !self.dialled(server_addr.as_deref(), server_port).await {
            self.probe_for_pooler().await?;
        }
        self.checked = true;
        Ok(())
    }

    /// Whether the server's end of our connection is the host and port we
    /// connected to: then no pooler or proxy sits in between.
    async fn dialled(&self, server_addr: Option<&str>, server_port: Option<i32>) -> bool {
        let (Some(addr), Some(port)) = (server_addr, server_port) else {
            // A Unix socket: a pooler may listen on one too.
            return false;
        };
        let Ok(addr) = addr.parse::<std::net::IpAddr>() else {
            return false;
        };
        if port != i32::from(self.config.port) {
            return false;
        }
        if let Ok(ip) = self.config.host.parse::<std::net::IpAddr>() {
            return ip == addr;
        }
        let lookup = tokio::net::lookup_host((self.config.host.as_str(), self.config.port));
        match tokio::time::timeout(CALL_TIMEOUT, lookup).await {
            Ok(Ok(mut found)) => found.any(|a| a.ip() == addr),
            _ => false,
        }
    }

    /// Something is between us and the server (a pooler, a proxy, a port
    /// mapping): open a second session while ours lives. A server, or a
    /// pooler in session mode, gives it a server process of its own; a
    /// transaction pooler, its pool idle between our statements, hands it
    /// ours. A second session that cannot be had in time proves nothing
    /// (a full session pool waits for ours to end) and is let go.
    async fn probe_for_pooler(&mut self) -> Result<()> {
        let config = self
            .config
            .client_config(&application_name(None), self.ssl_mode);
        let probe = async {
            let (client, connection) = config.connect(self.tls.clone()).await.ok()?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            let row = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .ok()?;
            Some(row.get::<_, i32>(0))
        };
        let other = tokio::time::timeout(POOLER_PROBE_TIMEOUT, probe)
            .await
            .ok()
            .flatten();
        let again = self.pid_query().await?;
        self.check_pid(again)?;
        match other {
            Some(pid) if pid == self.backend_pid => Err(Error::unavailable(format!(
                "postgres at {}: two sessions at once were both served by backend pid {pid}: a connection pooler in transaction mode (PgBouncer?) is in the way, and a session advisory lock would be held by some other client's session; connect lockrun to PostgreSQL directly or through a session-pooling port",
                self.config.address()
            ))),
            Some(pid) => {
                tracing::debug!(
                    ours = self.backend_pid,
                    other = pid,
                    "not a transaction pooler"
                );
                Ok(())
            }
            None => {
                tracing::debug!(
                    "no second session to probe with; the per-statement pid check remains"
                );
                Ok(())
            }
        }
    }

    async fn pid_query(&mut self) -> Result<i32> {
        let row = self
            .call("reading the backend pid", CALL_TIMEOUT, async |c| {
                c.query_typed_one("SELECT pg_backend_pid()", &[]).await
            })
            .await?;
        Ok(row.get(0))
    }

    fn check_pid(&self, pid: i32) -> Result<()> {
        if pid == self.backend_pid {
            return Ok(());
        }
        Err(Error::unavailable(format!(
            "postgres at {}: the backend pid changed between statements ({} then {pid}): a connection pooler in transaction mode (PgBouncer?) is in the way, and a session advisory lock would be held by some other client's session; connect lockrun to PostgreSQL directly or through a session-pooling port",
            self.config.address(),
            self.backend_pid
        )))
    }

    fn is_closed(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
            || self.closed.as_ref().is_none_or(|rx| rx.borrow().is_some())
    }

    fn close_reason(&self) -> String {
        self.closed
            .as_ref()
            .and_then(|rx| rx.borrow().clone())
            .unwrap_or_else(|| "the connection closed".into())
    }

    async fn call<T>(
        &mut self,
        what: &str,
        limit: Duration,
        request: impl AsyncFn(&Client) -> std::result::Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let Some(client) = &self.client else {
            return Err(Error::unavailable(format!(
                "postgres at {}: {what} failed: not connected",
                self.config.address()
            )));
        };
        match tokio::time::timeout(limit, request(client)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.error(what, &e)),
            Err(_) => Err(Error::unavailable(format!(
                "postgres at {}: {what} got no answer within {}",
                self.config.address(),
                humantime::format_duration(limit)
            ))),
        }
    }

    /// 77 for refused credentials, 69 for the rest; one line, no secret.
    fn error(&self, what: &str, e: &tokio_postgres::Error) -> Error {
        let address = self.config.address();
        let user = &self.config.user;
        if let Some(code) = e.code()
            && (*code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
        {
            let reason = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            return Error::no_permission(format!(
                "postgres at {address} refused user {user:?}: {reason} (password from {})",
                self.config.password_from
            ));
        }
        let text = e.to_string();
        if text.contains("password missing") {
            return Error::no_permission(format!(
                "postgres at {address} wants a password for user {user:?}; set {PASSWORD_ENV} (or PGPASSWORD, or a ~/.pgpass line)"
            ));
        }
        let mut reason = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => {
                use std::error::Error as _;
                match e.source() {
                    Some(source) => format!("{text}: {source}"),
                    None => text,
                }
            }
        };
        if reason.contains("server does not support TLS") {
            reason.push_str(&format!(
                " (sslmode={} needs a server with ssl=on; sslmode=prefer uses TLS only where the server offers it)",
                self.config.ssl.as_str()
            ));
        } else if reason.contains("certificate") {
            let roots = self.config.root_cert.as_ref().map_or_else(
                || "~/.postgresql/root.crt".to_owned(),
                |r| format!("sslrootcert={}", r.as_url_value()),
            );
            reason.push_str(&format!(
                " (sslmode={} checks the server's certificate against {roots})",
                self.config.ssl.as_str()
            ));
        }
        Error::unavailable(format!("postgres at {address}: {what} failed: {reason}"))
    }

    fn key_of(&self, name: &LockName, slot: u32, slots: u32) -> (String, i64) {
        let text = name.slot_key(slot, slots);
        let key = key_of_text(&text, slots <= 1);
        (text, key)
    }

    /// The session settings one by one, for a server that refused them
    /// together in the first try (a setting it does not know), so that the
    /// rest apply.
    async fn prepare_session(&mut self, req: &LockRequest) -> Result<()> {
        for (name, value) in &session_settings(req) {
            let result = self
                .call("configuring the session", CALL_TIMEOUT, async |c| {
                    c.query_typed(
                        "SELECT set_config($1, $2, false)",
                        &[(name, Type::TEXT), (value, Type::TEXT)],
                    )
                    .await
                })
                .await;
            if let Err(e) = result {
                if self.is_closed() {
                    return Err(e);
                }
                tracing::warn!(setting = name, error = %e, "could not configure the session; the server's defaults apply");
            }
        }
        self.session_set = true;
        Ok(())
    }

    /// Every session holding or waiting for `key` (blocking waiters only:
    /// other tools' `pg_advisory_lock`).
    async fn lock_rows(&mut self, key: i64) -> Result<Vec<LockRow>> {
        // The functions under the pg_locks and pg_stat_activity views, not
        // the views: every waiter sends this once, in a fresh backend,
        // where the views' rewriting and joins (pg_database, pg_authid)
        // cost ~4.3 ms of server time against ~1.8 ms for this (first
        // statements of fresh sessions, bench/analysis.md).
        let sql = "SELECT l.pid, l.granted, coalesce(a.application_name, ''), \
             coalesce(pg_get_userbyid(a.usesysid)::text, ''), \
             coalesce(host(a.client_addr), ''), coalesce(extract(epoch FROM a.backend_start)::int8, 0), \
             l.mode = 'ShareLock' \
             FROM pg_lock_status() l LEFT JOIN LATERAL pg_stat_get_activity(l.pid) a ON true \
             WHERE l.locktype = 'advisory' AND l.objsubid = 1 \
             AND l.database = (SELECT d.datid FROM pg_stat_get_activity(pg_backend_pid()) d) \
             AND l.classid::int8 = (($1::int8 >> 32) & 4294967295) \
             AND l.objid::int8 = ($1::int8 & 4294967295) \
             ORDER BY l.granted DESC, l.pid";
        let rows = self
            .call("reading pg_locks", CALL_TIMEOUT, async |c| {
                c.query_typed(sql, &[(&key, Type::INT8)]).await
            })
            .await?;
        Ok(rows
            .iter()
            .map(|r| LockRow {
                pid: r.get(0),
                granted: r.get(1),
                application_name: r.get(2),
                user: r.get(3),
                client: r.get(4),
                since: u64::try_from(r.get::<_, i64>(5)).unwrap_or(0),
                shared: r.get(6),
            })
            .collect())
    }

    /// lockrun sessions waiting for NAME that `pg_locks` does not show
    /// (polling for a slot, or between two waits in the queue): named
    /// `lockrun NAME …` in `pg_stat_activity`, and not in `in_rows`.
    async fn polling_waiters(&mut self, name: &LockName, in_rows: &[i32]) -> Result<u32> {
        let prefix = format!("lockrun {name} ");
        let rows = self
            .call("reading pg_stat_activity", CALL_TIMEOUT, async |c| {
                c.query(
                    "SELECT pid FROM pg_stat_activity WHERE left(application_name, length($1)) = $1 AND pid <> pg_backend_pid()",
                    &[&prefix],
                )
                .await
            })
            .await?;
        let count = rows
            .iter()
            .filter(|r| !in_rows.contains(&r.get::<_, i32>(0)))
            .count();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    async fn slot_state(
        &mut self,
        name: &LockName,
        slot: u32,
        slots: u32,
    ) -> Result<(SlotState, Vec<i32>, Vec<i32>)> {
        let (key_text, key) = self.key_of(name, slot, slots);
        let rows = self.lock_rows(key).await?;
        let holders: Vec<i32> = rows.iter().filter(|r| r.granted).map(|r| r.pid).collect();
        let all = rows.iter().map(|r| r.pid).collect();
        let blocked = rows.iter().filter(|r| !r.granted).count();
        let holder = rows.iter().find(|r| r.granted).map(LockRow::holder);
        let shared = rows.iter().filter(|r| r.granted && r.shared).count();
        let state = SlotState {
            key: key_text,
            slot: (slots > 1).then_some(slot),
            held: holder.is_some(),
            holder,
            expires_in_ms: None,
            waiters: Some(u32::try_from(blocked).unwrap_or(u32::MAX)),
            needs_manual_release: false,
            queue: Vec::new(),
            shared_by: (shared > 0).then(|| u32::try_from(shared).unwrap_or(u32::MAX)),
        };
        Ok((state, holders, all))
    }

    /// `lockrun_fence` is missing: create it where the role may. `Ok(true)`:
    /// it exists now (a concurrent creation counts); `Ok(false)`: this role
    /// may not create it here, so there is no fence (documented). Any other
    /// failure, a timeout included, is an error: a run must never go on
    /// without its fence because the server was slow once.
    async fn create_fence_table(&mut self) -> Result<bool> {
        const CREATE: &str = "CREATE TABLE IF NOT EXISTS lockrun_fence (name text PRIMARY KEY, fence bigint NOT NULL)";
        let Some(client) = &self.client else {
            return Ok(false);
        };
        match tokio::time::timeout(CALL_TIMEOUT, client.batch_execute(CREATE)).await {
            Ok(Ok(())) => Ok(true),
            // Two first users at once: the other one made it. Which error
            // the loser gets depends on where the two meet in the catalog:
            // the table's row type ("type lockrun_fence already exists",
            // 42710), its pg_type index (23505) or the table (42P07).
            Ok(Err(e))
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::DUPLICATE_TABLE)
                    || e.code() == Some(&SqlState::DUPLICATE_OBJECT) =>
            {
                Ok(true)
            }
            Ok(Err(e)) if not_permitted(&e) => {
                tracing::info!(error = %e, "cannot create lockrun_fence: no fence (LOCKRUN_FENCE unset)");
                Ok(false)
            }
            Ok(Err(e)) => Err(self.error("creating the fence table lockrun_fence", &e)),
            Err(_) => Err(Error::unavailable(format!(
                "postgres at {}: creating the fence table lockrun_fence timed out after {}",
                self.config.address(),
                humantime::format_duration(CALL_TIMEOUT)
            ))),
        }
    }

    /// Give back `key` after a try statement failed, in case it took the
    /// lock before failing (a session lock outlives its statement's
    /// error). Unlocking a key we do not hold only warns. When even that
    /// fails the error stands, and lockrun exits, which ends the session
    /// and its locks: a lock is never held without lockrun knowing.
    async fn unlock_after_error(&mut self, key: i64, shared: bool) -> Result<()> {
        let sql = if shared {
            "SELECT pg_advisory_unlock_shared($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        self.call("unlocking after a failed try", RELEASE_TIMEOUT, async |c| {
            c.query_typed_one(sql, &[(&key, Type::INT8)]).await
        })
        .await
        .map(drop)
    }

    /// One round trip that tries the lock and, only if granted, bumps the
    /// fence; on a session's first try it also applies the session
    /// settings (before the try) and reads the server address for the
    /// pooler check. Returns (granted, pid, fence).
    async fn try_statement(
        &mut self,
        req: &LockRequest,
        key: i64,
        queue: Option<Duration>,
    ) -> Result<(bool, i32, Option<u64>)> {
        for attempt in 0..4 {
            let with_settings = !self.session_set;
            let with_check = !self.checked;
            let with_fence = self.config.fence && self.fence_works != Some(false);
            let settings = session_settings(req);
            let name = req.name.as_str().to_owned();
            let mut params: Vec<(&(dyn tokio_postgres::types::ToSql + Sync), Type)> =
                vec![(&key, Type::INT8)];
            let mut ctes = Vec::new();
            let try_fn = if req.shared {
                "pg_try_advisory_lock_shared"
            } else {
                "pg_try_advisory_lock"
            };
            let lock_timeout = queue.map(|step| step.as_millis().max(1).to_string());
            if let Some(timeout) = &lock_timeout {
                // Queued in the server's lock manager, for at most `step`
                // (`lock_timeout`, for this statement's transaction only):
                // the release wakes exactly the first in the queue and
                // hands it the lock. The setting is read from a subquery,
                // so it is in force before the lock is asked for.
                let queue_fn = if req.shared {
                    "pg_advisory_lock_shared"
                } else {
                    "pg_advisory_lock"
                };
                params.push((timeout, Type::TEXT));
                let from = if with_settings { "s, " } else { "" };
                if with_settings {
                    ctes.push(settings_cte(&settings, &mut params));
                }
                // Granted, the timeout is turned off again (left to
                // right: the target list's AND keeps its order), so a
                // timeout always means nothing was granted.
                ctes.push(format!(
                    "l AS (SELECT {queue_fn}($1)::text = '' AND set_config('lock_timeout', '0', true) = '0' AS got \
                     FROM {from}(SELECT set_config('lock_timeout', $2, true)) t)"
                ));
            } else if with_settings {
                // A CTE the try reads from, so the settings are applied
                // before the lock is taken, and an unknown one fails the
                // statement before it could take it.
                ctes.push(settings_cte(&settings, &mut params));
                ctes.push(format!("l AS (SELECT {try_fn}($1) AS got FROM s)"));
            } else {
                ctes.push(format!("l AS (SELECT {try_fn}($1) AS got)"));
            }
            let fence_col = if with_fence {
                params.push((&name, Type::TEXT));
                // `l` is read twice, so it is evaluated once (and a CTE
                // with a volatile function is never inlined).
                ctes.push(format!(
                    "f AS (INSERT INTO lockrun_fence AS t (name, fence) SELECT ${}, 1 FROM l WHERE l.got \
                     ON CONFLICT (name) DO UPDATE SET fence = t.fence + 1 RETURNING t.fence)",
                    params.len()
                ));
                "(SELECT fence FROM f)"
            } else {
                "NULL::int8"
            };
            let check_cols = if with_check {
                "host(inet_server_addr()), inet_server_port()"
            } else {
                "NULL::text, NULL::int4"
            };
            let sql = format!(
                "WITH {} SELECT l.got, pg_backend_pid(), {fence_col}, {check_cols} FROM l",
                ctes.join(", ")
            );
            let client = self.client.as_ref().ok_or_else(|| {
                Error::unavailable(format!(
                    "postgres at {}: trying the lock failed: not connected",
                    self.config.address()
                ))
            })?;
            // LISTENs due go out ahead of the try, pipelined: the server
            // runs them first (so a release after the try wakes us), and
            // it costs no round trip of its own.
            let keys: Vec<i64> = self.listen_next.drain().collect();
            let listen_sql: String = keys
                .iter()
                .map(|k| format!("LISTEN \"{}\";", release_channel(*k)))
                .collect();
            let listen = async {
                if keys.is_empty() {
                    return None;
                }
                Some(tokio::time::timeout(CALL_TIMEOUT, client.batch_execute(&listen_sql)).await)
            };
            let limit = CALL_TIMEOUT + queue.unwrap_or_default();
            let (listened, result) = tokio::join!(
                listen,
                tokio::time::timeout(limit, client.query_typed_one(&sql, &params))
            );
            drop(params);
            match listened {
                Some(Ok(Ok(()))) | None => {}
                // Polling alone still works.
                Some(Ok(Err(e))) => tracing::debug!(error = %e, "LISTEN failed; polling only"),
                Some(Err(_)) => tracing::debug!("LISTEN got no answer; polling only"),
            }
            // Not retried when it failed: the poll covers those keys.
            self.listening.extend(keys);
            let row = match result {
                Ok(Ok(row)) => row,
                // No answer: the error ends lockrun, and with it the
                // session and whatever the statement took.
                Err(_) => {
                    return Err(Error::unavailable(format!(
                        "postgres at {}: trying the lock got no answer within {}",
                        self.config.address(),
                        humantime::format_duration(CALL_TIMEOUT)
                    )));
                }
                // The session is gone, and any lock it took with it.
                Ok(Err(e)) if self.is_closed() => return Err(self.error("trying the lock", &e)),
                // `lock_timeout` ended the wait in the queue, or the
                // deadlock detector chose our queued statement (a holder
                // waiting for our transaction, see QUEUE_STEP): out of the
                // queue and in again. A grant that comes as the timeout
                // fires is kept by the server although the statement
                // fails (a session lock outlives it), so the key is given
                // back (a warning when not held): the hold count stays 1.
                Ok(Err(e))
                    if queue.is_some()
                        && (e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
                            || e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)) =>
                {
                    self.unlock_after_error(key, req.shared).await?;
                    return Ok((false, self.backend_pid, None));
                }
                Ok(Err(e)) => {
                    self.unlock_after_error(key, req.shared).await?;
                    let code = e.code().cloned();
                    if with_fence && code == Some(SqlState::UNDEFINED_TABLE) && attempt == 0 {
                        if !self.create_fence_table().await? {
                            self.fence_works = Some(false);
                        }
                    } else if with_settings {
                        // A setting this server does not know: one by one.
                        self.prepare_session(req).await?;
                    } else if with_fence && code == Some(SqlState::UNIQUE_VIOLATION) && attempt < 3
                    {
                    } else if with_fence && not_permitted(&e) {
                        tracing::info!(error = %e, "cannot keep a fence in lockrun_fence: no fence (LOCKRUN_FENCE unset)");
                        self.fence_works = Some(false);
                    } else {
                        return Err(self.error("trying the lock", &e));
                    }
                    continue;
                }
            };
            self.session_set = true;
            let got: bool = row.get(0);
            let pid: i32 = row.get(1);
            let fence: Option<i64> = row.get(2);
            let checked = if with_check {
                self.first_pid(pid, row.get(3), row.get(4)).await
            } else {
                self.check_pid(pid)
            };
            if let Err(e) = checked {
                if got {
                    // Some pooled session holds it now: give it back there if we can.
                    let _ = self.unlock_after_error(key, req.shared).await;
                }
                return Err(e);
            }
            if got && with_fence {
                self.fence_works = Some(fence.is_some());
            }
            return Ok((got, pid, fence.and_then(|f| u64::try_from(f).ok())));
        }
        Err(Error::unavailable(format!(
            "postgres at {}: trying the lock kept failing",
            self.config.address()
        )))
    }
}

/// The session settings for a lock: its name in `pg_stat_activity`, and
/// the server side of the TCP connection set to give up on a silent
/// client after about `ttl` (never sooner).
/// The CTE `s` that applies the session settings, their values appended
/// to `params` as the next `$N`s.
fn settings_cte<'a>(
    settings: &'a [(&'static str, String)],
    params: &mut Vec<(&'a (dyn tokio_postgres::types::ToSql + Sync), Type)>,
) -> String {
    let calls: Vec<String> = settings
        .iter()
        .map(|(setting, value)| {
            params.push((value, Type::TEXT));
            format!("set_config('{setting}', ${}, false)", params.len())
        })
        .collect();
    format!("s AS (SELECT {})", calls.join(", "))
}

fn session_settings(req: &LockRequest) -> [(&'static str, String); 5] {
    let app = application_name(Some(&req.name));
    let ttl_s = req.ttl.as_secs().max(1);
    let idle = (ttl_s / 3).max(1);
    let interval = (ttl_s / 6).max(1);
    // idle + count × interval ≥ ttl where tcp_user_timeout is not honoured.
    let count = ttl_s.saturating_sub(idle).div_ceil(interval).max(1);
    let user_timeout_ms = u64::try_from(req.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .min(i32::MAX as u64);
    [
        ("application_name", app),
        ("tcp_keepalives_idle", idle.to_string()),
        ("tcp_keepalives_interval", interval.to_string()),
        ("tcp_keepalives_count", count.to_string()),
        ("tcp_user_timeout", user_timeout_ms.to_string()),
    ]
}

/// The NOTIFY channel a lockrun holder of `key` signals on release.
fn release_channel(key: i64) -> String {
    format!("lockrun:{key}")
}

/// Equal jitter: half the capped exponential step, plus up to as much again.
fn poll_delay(round: u32) -> Duration {
    let step = POLL_FIRST
        .saturating_mul(1u32 << round.min(16))
        .min(POLL_CAP);
    let half = step / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(crate::os::random_up_to(nanos))
}

/// Waiting in the server's lock queue (a single lock, not `--slots`).
impl PgBackend {
    /// Try; when held, queue in the server for at most [`QUEUE_STEP`] (or
    /// what `--wait` leaves) and try again when that runs out. The server
    /// grants the lock to the first queued session at the release, so a
    /// hand-off is the release statement and the grant, and a release
    /// wakes one waiter, not all of them.
    async fn queue_acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<PgLease> {
        let mut round = 0;
        let mut try_first = true;
        loop {
            if try_first {
                match self.try_acquire(req, 1).await? {
                    Attempt::Acquired(lease) => return Ok(lease),
                    Attempt::Held(holder) => wait.saw(holder),
                }
                wait.check_signals()?;
            }
            wait.give_up_if_over()?;
            let remaining = wait.remaining();
            try_first = true;
            match wait.until(self.queue_wait(req, round, remaining)).await? {
                Some(WaitOutcome::Acquired(lease)) => return Ok(lease),
                Some(WaitOutcome::Retry) => {
                    round += 1;
                    // Straight back into the queue (its statement takes a
                    // free lock too), unless the waiting line's holder is
                    // due a look-up or the connection is to be remade.
                    let key = self.key_of(&req.name, 1, 1).1;
                    try_first = self.is_closed()
                        || self
                            .holder_seen
                            .get(&key)
                            .is_none_or(|at| at.elapsed() >= HOLDER_REFRESH);
                }
                // The deadline came first and dropped the queued statement,
                // which may still be granted: step out, then one last try.
                None => {
                    self.leave_queue().await?;
                    round += 1;
                }
            }
            // A signal (`until`'s error) ends lockrun, and with it the
            // session: a queued statement still in the server is ended by
            // its lock_timeout, or granted and freed as the backend finds
            // the connection closed.
        }
    }

    /// One wait in the lock queue, ended by the grant or by
    /// `lock_timeout`; a lost connection waits as a poll would before the
    /// next try reconnects.
    async fn queue_wait(
        &mut self,
        req: &LockRequest,
        round: u32,
        remaining: Option<Duration>,
    ) -> Result<WaitOutcome<PgLease>> {
        if self.is_closed() {
            return Polling::wait(self, req, round).await;
        }
        let step = remaining.map_or(QUEUE_STEP, |r| r.min(QUEUE_STEP));
        let (key_text, key) = self.key_of(&req.name, 1, 1);
        let sent = BootTime::now();
        self.queued = Some((key, req.shared));
        let (got, _pid, fence) = self.try_statement(req, key, Some(step)).await?;
        self.queued = None;
        if !got {
            return Ok(WaitOutcome::Retry);
        }
        self.lost_waits = 0;
        Ok(WaitOutcome::Acquired(PgLease {
            key,
            shared: req.shared,
            key_text,
            slot: 1,
            fence,
            ttl: req.ttl,
            expires_at: sent.saturating_add(req.ttl),
            notify: false,
        }))
    }

    /// A queued statement was dropped (the `--wait` deadline): the server
    /// runs our statements in order, so an unlock of everything sent now
    /// runs after it, whether it was granted or timed out. A lockrun
    /// session holds no other advisory lock while it waits.
    async fn leave_queue(&mut self) -> Result<()> {
        if self.queued.take().is_none() || self.is_closed() {
            return Ok(());
        }
        self.call(
            "leaving the lock queue",
            CALL_TIMEOUT + QUEUE_STEP,
            async |c| c.query_typed("SELECT pg_advisory_unlock_all()", &[]).await,
        )
        .await
        .map(drop)
    }
}

impl Backend for PgBackend {
    type Lease = PgLease;

    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<PgLease> {
        if req.slots > 1 {
            // No statement waits for the first free one of several keys.
            return poll_acquire(self, req, wait).await;
        }
        self.queue_acquire(req, wait).await
    }

    fn renew_interval(&self, req: &LockRequest) -> Option<Duration> {
        Some(req.ttl / 3)
    }

    async fn renew(&mut self, lease: &mut PgLease) -> Result<Renewal> {
        if self.is_closed() {
            return Ok(Renewal::Lost(format!(
                "the postgres session holding {} ended ({}); the server has freed the lock",
                lease.key_text,
                self.close_reason()
            )));
        }
        let check = format!(
            "SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks l WHERE {KEY_MATCH} AND l.granted AND l.pid = pg_backend_pid())"
        );
        let key = lease.key;
        let sent = BootTime::now();
        let limit = (lease.ttl / 3).min(RENEW_TIMEOUT_CAP);
        let result = self
            .call("checking the lock", limit, async |c| {
                c.query_typed_one(&check, &[(&key, Type::INT8)]).await
            })
            .await;
        let row = match result {
            Ok(row) => row,
            Err(_) if self.is_closed() => {
                return Ok(Renewal::Lost(format!(
                    "the postgres session holding {} ended ({}); the server has freed the lock",
                    lease.key_text,
                    self.close_reason()
                )));
            }
            Err(e) => return Err(e),
        };
        let pid: i32 = row.get(0);
        let held: bool = row.get(1);
        if pid != self.backend_pid {
            return Ok(Renewal::Lost(format!(
                "the backend pid changed from {} to {pid}: a pooler moved our session, so the lock on {} is not ours",
                self.backend_pid, lease.key_text
            )));
        }
        if !held {
            return Ok(Renewal::Lost(format!(
                "our postgres session no longer holds the advisory lock {} (key {})",
                lease.key_text, lease.key
            )));
        }
        lease.expires_at = sent.saturating_add(lease.ttl);
        Ok(Renewal::Held)
    }

    async fn loss_hint(&mut self, _lease: &mut PgLease) {
        match &mut self.closed {
            Some(rx) => {
                // Resolves when the connection task ends (or its sender is gone).
                let _ = rx.wait_for(Option::is_some).await;
            }
            None => std::future::pending().await,
        }
    }

    async fn release(&mut self, lease: PgLease) -> Result<()> {
        if self.is_closed() {
            // The session is over, and its locks with it.
            return Ok(());
        }
        let key = lease.key;
        // The wake-up hint for lockrun waiters (they LISTEN on it); sent
        // when this statement's implicit transaction commits, after the
        // unlock, which is not transactional.
        let channel = release_channel(key);
        // NOTIFY gives the statement a transaction id, so its commit
        // would wait for a WAL flush; nothing in it needs to survive a
        // crash (the unlock is not transactional, and a crash ends every
        // session), so this one transaction commits asynchronously.
        let sql = match (lease.shared, lease.notify) {
            (true, true) => {
                "SELECT pg_advisory_unlock_shared($1), pg_notify($2, ''), set_config('synchronous_commit', 'off', true)"
            }
            (false, true) => {
                "SELECT pg_advisory_unlock($1), pg_notify($2, ''), set_config('synchronous_commit', 'off', true)"
            }
            // Nobody to notify: a read-only statement, no transaction id.
            (true, false) => "SELECT pg_advisory_unlock_shared($1)",
            (false, false) => "SELECT pg_advisory_unlock($1)",
        };
        let released: bool = self
            .call("releasing the lock", RELEASE_TIMEOUT, async |c| {
                if lease.notify {
                    c.query_typed_one(sql, &[(&key, Type::INT8), (&channel, Type::TEXT)])
                        .await
                } else {
                    c.query_typed_one(sql, &[(&key, Type::INT8)]).await
                }
            })
            .await?
            .get(0);
        if !released {
            tracing::info!(key = %lease.key_text, "the lock was no longer ours; left it alone");
        }
        Ok(())
    }

    fn release_timeout(&self) -> Duration {
        RELEASE_TIMEOUT + Duration::from_secs(1)
    }
}

impl Polling for PgBackend {
    async fn try_acquire(&mut self, req: &LockRequest, slot: u32) -> Result<Attempt<PgLease>> {
        if self.is_closed() {
            tracing::info!(reason = %self.close_reason(), "the postgres connection is gone; reconnecting");
            self.reconnect().await?;
        }
        let (key_text, key) = self.key_of(&req.name, slot, req.slots);
        let sent = BootTime::now();
        let (got, _pid, fence) = self.try_statement(req, key, None).await?;
        if !got {
            if !self.listening.contains(&key) {
                self.to_listen.insert(key);
            }
            // The holder shown while waiting may be up to a second old.
            let fresh = self
                .holder_seen
                .get(&key)
                .is_some_and(|at| at.elapsed() < HOLDER_REFRESH);
            if fresh {
                return Ok(Attempt::Held(None));
            }
            let holder = self
                .lock_rows(key)
                .await?
                .iter()
                .find(|r| r.granted)
                .map(LockRow::holder);
            self.holder_seen.insert(key, std::time::Instant::now());
            return Ok(Attempt::Held(holder));
        }
        self.lost_waits = 0;
        Ok(Attempt::Acquired(PgLease {
            key,
            shared: req.shared,
            key_text,
            slot,
            fence,
            ttl: req.ttl,
            expires_at: sent.saturating_add(req.ttl),
            notify: req.slots > 1,
        }))
    }

    async fn wait(&mut self, _req: &LockRequest, round: u32) -> Result<WaitOutcome<PgLease>> {
        let mut delay = poll_delay(round);
        if self.is_closed() {
            // The next try reconnects; a restarting server gets a moment.
            self.lost_waits += 1;
            delay = delay.max(poll_delay(self.lost_waits.min(5)));
        } else if !self.to_listen.is_empty() {
            // First wait on these keys: try again at once with the LISTEN
            // sent ahead of the try in the same round trip, so that a
            // release between our last try and the LISTEN is not missed.
            self.listen_next.extend(self.to_listen.drain());
            return Ok(WaitOutcome::Retry);
        }
        // A lockrun holder's release wakes us at once; any other holder's
        // (psql, a migration tool) is seen by the poll.
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = self.wake.notified() => {}
        }
        Ok(WaitOutcome::Retry)
    }
}

impl Inspect for PgBackend {
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>> {
        self.ensure_checked().await?;
        let slots = slots.unwrap_or(1).max(1);
        let mut out = Vec::new();
        let mut holders = Vec::new();
        for slot in 1..=slots {
            // Queued lockrun waiters are rows too: not counted twice.
            let (state, _, pids) = self.slot_state(name, slot, slots).await?;
            holders.extend(pids);
            out.push(state);
        }
        let polling = self.polling_waiters(name, &holders).await?;
        if let Some(first) = out.first_mut() {
            first.waiters = Some(first.waiters.unwrap_or(0).saturating_add(polling));
        }
        Ok(out)
    }

    async fn list(&mut self) -> Result<Vec<SlotState>> {
        self.ensure_checked().await?;
        let sql = "SELECT (l.classid::int8 << 32) | l.objid::int8, l.pid, l.granted, \
             coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
             coalesce(host(a.client_addr), ''), coalesce(extract(epoch FROM a.backend_start)::int8, 0), \
             l.mode = 'ShareLock' \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY 1, l.pid";
        let rows = self
            .call("reading pg_locks", CALL_TIMEOUT, async |c| {
                c.query(sql, &[]).await
            })
            .await?;
        let mut out: Vec<SlotState> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut shared: HashMap<i64, u32> = HashMap::new();
        for r in &rows {
            if r.get::<_, bool>(7) {
                *shared.entry(r.get(0)).or_default() += 1;
            }
        }
        for r in &rows {
            let key: i64 = r.get(0);
            if !seen.insert(key) {
                continue;
            }
            let row = LockRow {
                pid: r.get(1),
                granted: r.get(2),
                application_name: r.get(3),
                user: r.get(4),
                client: r.get(5),
                since: u64::try_from(r.get::<_, i64>(6)).unwrap_or(0),
                shared: r.get(7),
            };
            // A lockrun holder names its lock; any other is shown by key.
            let label = row
                .application_name
                .strip_prefix("lockrun ")
                .and_then(|rest| rest.rsplit_once(' '))
                .map(|(name, _)| name.to_owned())
                .filter(|name| LockName::parse(std::ffi::OsStr::new(name)).is_ok())
                .unwrap_or_else(|| key.to_string());
            out.push(SlotState {
                key: label,
                slot: None,
                held: row.granted,
                holder: Some(row.holder()),
                expires_in_ms: None,
                waiters: None,
                needs_manual_release: false,
                shared_by: shared.get(&key).copied(),
                queue: Vec::new(),
            });
        }
        Ok(out)
    }

    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>> {
        self.ensure_checked().await?;
        let slots = slots.unwrap_or(1).max(1);
        let mut ended = Vec::new();
        for slot in 1..=slots {
            let (state, pids, _) = self.slot_state(name, slot, slots).await?;
            if !state.held {
                continue;
            }
            for pid in pids {
                let done: bool = self
                    .call("ending the holder's session", CALL_TIMEOUT, async |c| {
                        c.query_one("SELECT pg_terminate_backend($1)", &[&pid])
                            .await
                    })
                    .await?
                    .get(0);
                tracing::info!(pid, done, "pg_terminate_backend");
            }
            ended.push(state);
        }
        Ok(ended)
    }

    fn display_url(&self) -> String {
        self.config.display_url()
    }
}

/// What `lockrun doctor` asks the server: read-only questions.
impl PgBackend {
    /// The server's clock, as Unix seconds.
    pub(crate) async fn doctor_clock(&mut self) -> Result<f64> {
        self.ensure_checked().await?;
        let row = self
            .call("reading the server clock", CALL_TIMEOUT, async |c| {
                c.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
                    .await
            })
            .await?;
        Ok(row.get(0))
    }

    pub(crate) fn server_address(&self) -> String {
        self.config.address()
    }
}

/// The role may not create or write `lockrun_fence` here (privileges, a
/// read-only server): a lasting condition, under which lockrun runs
/// without a fence as documented. Every other error is reported.
fn not_permitted(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        code == &SqlState::INSUFFICIENT_PRIVILEGE || code == &SqlState::READ_ONLY_SQL_TRANSACTION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_sources() -> PasswordSources {
        PasswordSources {
            lockrun: None,
            libpq: None,
            pgpass: None,
            sslmode: None,
            sslrootcert: None,
        }
    }

    fn parse(url: &str) -> Result<PgConfig> {
        PgConfig::parse_with(url, &no_sources())
    }

    #[test]
    fn urls() {
        let c = parse("postgres://app@db.example/prod").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()),
            ("db.example", 5432, "app", "prod")
        );
        assert_eq!(c.display_url(), "postgres://app@db.example:5432/prod");
        let c = parse("postgresql://u:s3cret@127.0.0.1:6543/d?sslmode=disable&fence=off").unwrap();
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!((c.ssl, c.fence), (SslMode::Disable, false));
        assert_eq!(
            c.display_url(),
            "postgres://u@127.0.0.1:6543/d?sslmode=disable&fence=off"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = parse("postgres://u@h").unwrap();
        assert_eq!(
            c.dbname, "u",
            "the database defaults to the user, as in libpq"
        );
    }

    #[test]
    fn bad_urls_are_usage_errors_without_the_password() {
        for url in [
            "postgres://",
            "postgres://u:secret@",
            "postgres://u:secret@h/a/b",
            "postgres://u:secret@h?sslmode=bogus",
            "postgres://u:secret@h?sslrootcert=",
            "postgres://u:secret@h?sslmode=require&sslrootcert=system",
            "postgres://u:secret@h?what=1",
            "postgres:h",
        ] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{url}: {err}");
            assert!(!err.to_string().contains("secret"), "{url}: {err}");
        }
        let err = parse("postgres://h?sslmode=require&sslrootcert=system")
            .unwrap_err()
            .to_string();
        assert!(err.contains("verify-full"), "{err}");
    }

    #[test]
    fn tls_settings_as_libpq_reads_them() {
        let c = parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem").unwrap();
        assert_eq!(c.ssl, SslMode::VerifyFull);
        assert_eq!(c.root_cert, Some(RootCert::File("/etc/ca x.pem".into())));
        assert_eq!(
            c.display_url(),
            "postgres://u@h:5432/d?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem"
        );
        // sslrootcert=system alone means verify-full.
        let c = parse("postgres://u@h/d?sslrootcert=system").unwrap();
        assert_eq!(
            (c.ssl, c.root_cert),
            (SslMode::VerifyFull, Some(RootCert::System))
        );
        // The environment applies where the URL says nothing.
        let env = PasswordSources {
            sslmode: Some("require".into()),
            sslrootcert: Some("/ca.pem".into()),
            ..no_sources()
        };
        let c = PgConfig::parse_with("postgres://u@h/d", &env).unwrap();
        assert_eq!(
            (c.ssl, c.root_cert),
            (SslMode::Require, Some(RootCert::File("/ca.pem".into())))
        );
        let c = PgConfig::parse_with("postgres://u@h/d?sslmode=disable", &env).unwrap();
        assert_eq!(c.ssl, SslMode::Disable);
        let bad = PasswordSources {
            sslmode: Some("on".into()),
            ..no_sources()
        };
        assert!(PgConfig::parse_with("postgres://u@h/d", &bad).is_err());
    }

    #[test]
    fn password_precedence() {
        let sources = PasswordSources {
            lockrun: Some("ours".into()),
            libpq: Some("libpq".into()),
            ..no_sources()
        };
        let c = PgConfig::parse_with("postgres://u@h/d", &sources).unwrap();
        assert_eq!(c.password.as_deref(), Some("ours"));
        let c = PgConfig::parse_with("postgres://u:url@h/d", &sources).unwrap();
        assert_eq!(c.password.as_deref(), Some("url"));
        let sources = PasswordSources {
            lockrun: None,
            ..sources
        };
        let c = PgConfig::parse_with("postgres://u@h/d", &sources).unwrap();
        assert_eq!(c.password.as_deref(), Some("libpq"));
    }

    #[test]
    fn pgpass_lines() {
        let text = "# comment\n\
                    other:5432:*:*:nope\n\
                    h:5433:*:u:wrong-port\n\
                    h:5432:d:u:p\\:w\\\\x:tail\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pgpass_match(text, "h", 5432, "d", "u").as_deref(),
            Some("p:w\\x:tail")
        );
        assert_eq!(
            pgpass_match(text, "z", 1, "d", "u").as_deref(),
            Some("fallback")
        );
        assert_eq!(pgpass_match("h:*:*:u:x\n", "h", 5432, "d", "v"), None);
    }

    #[test]
    fn pgpass_with_open_permissions_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:pw\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(pgpass_lookup(&file, "h", 1, "d", "u"), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            pgpass_lookup(&file, "h", 1, "d", "u").as_deref(),
            Some("pw")
        );
    }

    #[test]
    fn numeric_names_are_keys_only_when_canonical() {
        assert_eq!(numeric_key("424242"), Some(424_242));
        assert_eq!(numeric_key("-7"), Some(-7));
        assert_eq!(numeric_key("9223372036854775807"), Some(i64::MAX));
        for text in ["007", "-0", "9223372036854775808", "1e3", "12a", "12@2"] {
            assert_eq!(numeric_key(text), None, "{text}");
        }
    }

    #[test]
    fn derived_keys_are_what_the_documented_sql_computes() {
        // Both from psql: SELECT ('x' || substr(md5('lockrun:deploy'), 1, 16))::bit(64)::bigint
        assert_eq!(key_of_text("deploy", true), 7_204_244_605_055_272_036);
        assert_eq!(key_of_text("pool@1", false), -4_680_013_064_253_613_195);
        assert_eq!(key_of_text("424242", true), 424_242);
        assert_ne!(
            key_of_text("424242", false),
            424_242,
            "slots never use the number"
        );
    }

    #[test]
    fn application_names_round_trip() {
        assert_eq!(
            parse_application_name("lockrun deploy 4123@ci-7"),
            Some((4123, "ci-7".into()))
        );
        assert_eq!(parse_application_name("psql"), None);
        assert_eq!(parse_application_name("lockrun 4123@ci-7"), None);
    }

    #[test]
    fn polls_stay_within_bounds() {
        for round in 0..40 {
            let d = poll_delay(round);
            assert!(d >= Duration::from_millis(25) && d <= POLL_CAP, "{d:?}");
        }
        assert!(poll_delay(0) <= POLL_FIRST);
    }
}
