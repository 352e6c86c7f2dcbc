//! Redis backend: leases that renew, fence, wake waiters on release, and fail safe.
//!
//! Key layout (prefix `lockrun:` by default, `?prefix=` in the URL). Every key
//! of one lock carries the hash tag `{NAME}`, so a Redis Cluster would keep
//! them in one slot and the Lua scripts below never go cross-slot:
//!
//! | key | type | what |
//! |---|---|---|
//! | `P{NAME}:lock` | hash, PX ttl | the plain lock: `token`, `holder` (JSON), `fence` |
//! | `P{NAME}:slot:K` | hash, PX ttl | slot K of a `--slots N` lock, same fields |
//! | `P{NAME}:fence` | string | fencing counter, never expires |
//! | `P{NAME}:wake` | list, PX 2s | wake-up tokens: one pushed per release, at most N |
//! | `P{NAME}:readers` | sorted set | shared leases (`--shared`): token → expiry (server ms) |
//! | `P{NAME}:rinfo` | hash | shared leases' records: token → `FENCE HOLDER-JSON` |
//! | `P{NAME}:wwait` | sorted set | exclusive waiters refused by shared leases: token → expiry |
//! | `P{NAME}:rwake` | list, PX 2s | wake-up tokens for shared waiters |
//!
//! The sorted sets and `:rinfo` expire with their longest-lived member.
//! Writer preference: see [`ACQUIRE_SHARED`] and docs/DESIGN.md, "Shared locks".
//!
//! * Acquire, renew and release are single Lua scripts, so each is atomic
//!   and one round trip. A release or renewal compares the random 128-bit
//!   token first and never touches a lock that is no longer ours. A forced
//!   release reads the tokens, then deletes only those: every request is
//!   safe to send twice (see `call`).
//! * The fence is `max(counter + 1, server time in µs)`: it strictly
//!   increases even when Redis lost the counter (restart without persistence,
//!   AOF that missed the last second), which a bare INCR would repeat.
//! * No lock is granted while the server has been up for less than the TTL
//!   ("delayed restart", from the Redis docs on Redlock): a server that lost
//!   its data cannot tell us about a holder from before the restart, whose
//!   child is only guaranteed to be stopped by then.
//! * Waking one waiter, not all: a release (or `release --force`) pushes a
//!   token onto the lock's wake list in the same script as the DEL, and
//!   waiters sleep in `BLPOP` on that list. Redis hands each token to exactly
//!   one blocked client, the one blocked longest, so a hand-off costs the same
//!   few commands however many wait. The list holds at most N tokens for N
//!   slots and expires [`WAKE_LIFE`] after the last push, so nothing piles up,
//!   and a BLPOP that dies with its connection (signal, `--wait`, SIGKILL)
//!   leaves nothing behind: a waiter stores nothing in Redis.
//! * No lost wake-ups: a release between a waiter's failed try and its BLPOP
//!   leaves its token in the list, and the BLPOP returns at once. A waiter
//!   blocks only if its BLPOP reaches the server within `WAKE_LIFE / 2` of its
//!   try, well inside the token's life; later, it tries again instead. A woken
//!   waiter that loses the race to a newcomer needs no new token: the
//!   newcomer holds the lock and its release pushes one. A waiter that gives
//!   up with its BLPOP still queued on the server would take a token meant
//!   for another, so it undoes the BLPOP with `CLIENT UNBLOCK` first: when
//!   `--wait` runs out, before its last try (which covers a token it took
//!   already: it gets the lock or finds a holder, who will push one); on a
//!   signal, before it exits, and then it pushes a token if it may have taken
//!   one. (A user without `CLIENT UNBLOCK`, an `@admin` command, closes the
//!   connection instead, which leaves a short race.) A woken waiter whose
//!   try then fails (an error, so it exits) pushes its token on as it goes.
//!   Only a waiter SIGKILLed just as it was handed a token loses one; the
//!   fallback below covers that.
//! * A plain lock's waiter sends its next try right behind its BLPOP, on
//!   the same connection: the server runs it as soon as the BLPOP returns, in the
//!   same pass as the release that woke it, so a hand-off has no round
//!   trip of the waiter's between wake-up and grant. Such a lease counts
//!   from the BLPOP's send (the supervisor renews it first when that was
//!   long ago, and ahead of its TERM instant); a try behind an undone BLPOP runs
//!   when it is undone, so the last try after `--wait` finds the lock its
//!   own (same token) and `Drop` gives back what it took.
//! * The only polling is the fallback, as the BLPOP's own timeout: one try
//!   when the busy lease would expire by itself (a holder that died without
//!   releasing), capped at [`MAX_FALLBACK`] and jittered. Commands per waiter
//!   do not grow with the time spent waiting: a sleeping waiter sends
//!   nothing but that one look per lease period of the holder.
//! * Every call has a deadline, so a paused or half-dead server cannot hang
//!   the supervisor past its self-fencing deadline.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, RedisResult,
};

use crate::acquire::{backoff_delay, poll_acquire};
use crate::error::{Error, Result};
use crate::lock::{
    Attempt, Backend, HolderInfo, Inspect, Interrupts, Lease, LockName, LockRequest, Polling,
    Renewal, SlotState, Wait, WaitDisplay, WaitOutcome,
};
use crate::os::BootTime;

mod script;
use script::{Invocation, LuaScript};

pub(crate) const DEFAULT_PORT: u16 = 6379;
pub(crate) const DEFAULT_PREFIX: &str = "lockrun:";
pub(crate) const PASSWORD_ENV: &str = "LOCKRUN_REDIS_PASSWORD";

/// Establishing a connection (TCP, TLS, AUTH, SELECT).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest any single request may take; renewals use less (see `renew_timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const RENEW_TIMEOUT_CAP: Duration = Duration::from_secs(2);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);
/// Waiters re-check at least this often even if the busy lease claims to
/// live longer, in case a wake-up was lost (a waiter SIGKILLed as it was
/// handed one, a lock key deleted by hand).
const MAX_FALLBACK: Duration = Duration::from_secs(60);
/// How long a wake-up token stays in the wake list when nobody is blocked
/// on it. A waiter blocks only within half of this after its try (see the
/// module docs), so a token pushed after the try is still there.
const WAKE_LIFE: Duration = Duration::from_secs(2);
/// The best-effort clean-up in `Drop` (a signal ended a wait) gets this long.
const DROP_TIMEOUT: Duration = Duration::from_millis(300);
const SCAN_COUNT: u32 = 1000;

/// A parsed `redis://` / `rediss://` URL. The password is kept out of
/// `Debug` and out of [`display_url`](Self::display_url).
#[derive(Clone)]
pub(crate) struct RedisConfig {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    password: Option<String>,
    pub prefix: String,
    /// PEM file with the CA(s) to trust instead of the system store (`rediss` only).
    pub ca_file: Option<PathBuf>,
    /// The longest `--ttl` any lockrun using this server may hold a lease
    /// for: a server up for less than this grants no lock (the restart
    /// guard), and a longer `--ttl` is refused. A deployment setting that
    /// every client must agree on, so it lives in the URL.
    pub max_ttl: Duration,
}

/// The default `max-ttl`: the default `--ttl`.
pub(crate) const DEFAULT_MAX_TTL: Duration = Duration::from_secs(30);

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.display_url())
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db][?prefix=P&cacert=FILE]`;
    /// the password may instead come from `LOCKRUN_REDIS_PASSWORD`.
    pub(crate) fn parse(url: &str) -> Result<Self> {
        let env_password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        Self::parse_with(url, env_password)
    }

    fn parse_with(url: &str, env_password: Option<String>) -> Result<Self> {
        let shown = super::url::redacted(url);
        let bad = |why: &str| {
            Error::usage(format!(
                "invalid redis URL {shown:?}: {why}; use redis://[user@]host[:port][/db][?prefix=P] or rediss://… for TLS, with the password in LOCKRUN_REDIS_PASSWORD"
            ))
        };
        let parts = super::url::parse(url).map_err(|why| bad(&why))?;
        let tls = match parts.scheme.as_str() {
            "redis" => false,
            "rediss" => true,
            _ => return Err(bad("the scheme must be redis or rediss")),
        };
        if !parts.has_authority {
            return Err(bad("expected redis://"));
        }
        let host = parts.host.clone().unwrap_or_default();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['/', '@', '?']) {
            return Err(bad("bad host or port"));
        }
        let port = parts.port.unwrap_or(DEFAULT_PORT);
        let db = match parts.path.trim_start_matches('/') {
            "" => 0,
            db => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| bad("the path must be a database number such as /0"))?,
        };
        let mut prefix = DEFAULT_PREFIX.to_owned();
        let mut ca_file = None;
        let mut max_ttl = DEFAULT_MAX_TTL;
        let query = parts
            .query_pairs(super::url::Plus::Literal)
            .map_err(|why| bad(&format!("{why} in the query")))?;
        for (key, value) in query {
            match key.as_str() {
                "prefix" => {
                    if value
                        .chars()
                        .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
                    {
                        return Err(bad(
                            "the prefix must not contain braces, spaces or control characters",
                        ));
                    }
                    prefix = value;
                }
                "cacert" if tls => {
                    if value.is_empty() {
                        return Err(bad("cacert needs a file name"));
                    }
                    ca_file = Some(PathBuf::from(value));
                }
                "cacert" => return Err(bad("cacert only applies to rediss:// (TLS)")),
                "max-ttl" => {
                    max_ttl = crate::duration::parse(&value, crate::duration::Bounds::TTL)
                        .map_err(|_| bad("max-ttl must be a duration from 1s to 24h"))?;
                }
                other => {
                    return Err(bad(&format!(
                        "unknown option {other:?} (known: prefix, cacert, max-ttl)"
                    )));
                }
            }
        }
        Ok(RedisConfig {
            tls,
            host,
            port,
            db,
            username: parts.user,
            password: parts.password.or(env_password),
            prefix,
            ca_file,
            max_ttl,
        })
    }

    /// The URL without the password, for the child's `LOCKRUN_BACKEND` and output.
    pub(crate) fn display_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let user = self
            .username
            .as_ref()
            .map(|u| format!("{}@", super::url::encode(u)))
            .unwrap_or_default();
        let mut url = format!("{scheme}://{user}{}/{}", self.address(), self.db);
        let mut options = Vec::new();
        if self.prefix != DEFAULT_PREFIX {
            options.push(format!(
                "prefix={}",
                super::url::encode_query_value(&self.prefix)
            ));
        }
        if let Some(ca) = &self.ca_file {
            options.push(format!(
                "cacert={}",
                super::url::encode_query_value(&ca.to_string_lossy())
            ));
        }
        if self.max_ttl != DEFAULT_MAX_TTL {
            options.push(format!(
                "max-ttl={}",
                humantime::format_duration(self.max_ttl)
            ));
        }
        if !options.is_empty() {
            url.push('?');
            url.push_str(&options.join("&"));
        }
        url
    }

    /// `host:port`, with brackets around IPv6 literals.
    fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn client(&self) -> Result<Client> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        // No `CLIENT SETINFO LIB-NAME/LIB-VER`: redis-rs sends it as a set-up
        // pipeline and waits for the reply before the first command, one
        // round trip on every run's path to the lock, for a label in
        // `CLIENT LIST` (that Redis < 7.2 refuses anyway); the holder record
        // already says who holds the lock.
        let mut settings = RedisConnectionInfo::default()
            .set_db(self.db)
            .set_skip_set_lib_name();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| Error::usage(format!("invalid redis address {}: {e}", self.address())))?
            .set_redis_settings(settings);
        let built = match &self.ca_file {
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    Error::usage(format!("cannot read the CA file {}: {e}", ca.display()))
                })?;
                Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
            None => Client::open(info),
        };
        built.map_err(|e| {
            Error::usage(format!(
                "invalid redis settings for {}: {e}",
                self.display_url()
            ))
        })
    }
}

/// Take the lock if free. Replies (all strings):
/// `{"1", fence, other}` acquired, where `other` is "1" when the last key
/// (the other kind of lock of the same NAME: slot 1 of a semaphore for a
/// plain lock, the plain lock for a semaphore) exists, i.e. is held;
/// `{"0", holder, fence, pttl}` held;
/// `{"2", ms}` refused because the server started less than max-ttl
/// (ARGV[4]) ago: a holder from before a restart may still be running.
/// A key that is ours already (a retry whose first reply was lost) counts
/// as acquired. A key of another type (someone else's `SET`) counts as held
/// and is never overwritten.
///
/// A plain lock (not a slot) also passes KEYS[3..5] before that last key,
/// the shared holders
/// (`:readers`, `:rinfo`) and the waiting exclusive holders (`:wwait`):
/// it is then held while any shared lease is live, and a try refused by
/// shared holders (reply field 5 `shared`) records ARGV[1] in `:wwait` for
/// ARGV[2] ms, which keeps new shared holders out until we are in (writer
/// preference, see [`ACQUIRE_SHARED`]). A try refused by an exclusive
/// holder records nothing: shared holders are kept out by that holder, and
/// exclusive waiters then cost what they always did.
const ACQUIRE: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local rw = #KEYS >= 6
-- PTTL answers both questions of a held key: whether it exists (not -2)
-- and for how long; TYPE would cost a call more on the free path.
local pttl = redis.call('PTTL', KEYS[1])
if pttl ~= -2 then
  -- HMGET of a key of another type is an error: held, never overwritten.
  local cur = redis.pcall('HMGET', KEYS[1], 'token', 'holder', 'fence')
  if cur.err then return {'0', '', '', tostring(pttl)} end
  if cur[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {'1', cur[3] or '0'}
  end
  return {'0', cur[2] or '', cur[3] or '', tostring(pttl)}
end
-- One TIME for both clocks: exact in a double (< 2^53 us).
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- A plain lock asks in one EXISTS whether any shared holder, exclusive
-- waiter or the other kind of lock is there; usually none is, and nothing
-- more is read.
local busy, other = false, 0
if rw then
  busy = redis.call('EXISTS', KEYS[3], KEYS[4], KEYS[#KEYS]) > 0
else
  other = redis.call('EXISTS', KEYS[#KEYS])
end
if busy then
  local now = math.floor(now_us / 1000)
  -- The soonest expiry first: only a past one needs pruning.
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #first > 0 and tonumber(first[2]) <= now then
    prune(KEYS[3], KEYS[5], now)
    first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  end
  if #first > 0 then
    intend(KEYS[4], ARGV[1], tonumber(ARGV[2]))
    local fence, holder = split_info(redis.call('HGET', KEYS[5], first[1]))
    return {'0', holder, fence, string.format('%d', tonumber(first[2]) - now), 'shared'}
  end
end
local left = guard_left(tonumber(ARGV[4]), math.floor(now_us / 1000))
if left then return {'2', string.format('%d', left)} end
local f = next_fence(KEYS[2], now_us)
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'holder', ARGV[3], 'fence', f)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if busy then
  redis.call('ZREM', KEYS[4], ARGV[1])
  other = redis.call('EXISTS', KEYS[#KEYS])
end
return {'1', f, tostring(other)}
";

/// The next fence in the counter KEY, as an exact decimal string: the
/// clock in µs, or one past the last fence where that is not behind the
/// clock (a clock set back, a counter copied from elsewhere), so that fences
/// only increase. Shared by the exclusive and the shared grant.
const FENCE_FN: &str = r"
local function next_fence(key, now_us)
  local f = string.format('%d', now_us)
  -- SET .. GET reads and writes in one call. An error (a server before
  -- 6.2 refuses GET) falls through to INCR, which raises any other error.
  local last = redis.pcall('SET', key, f, 'GET')
  if not last then return f end
  if type(last) == 'string' then
    if string.match(last, '^%d+$') and tonumber(last) < now_us then return f end
    -- Put it back for INCR: its 64-bit arithmetic is exact where a Lua
    -- double is not (2^53 and up), and it refuses what is not an integer.
    redis.call('SET', key, last)
  end
  local n = redis.call('INCR', key)
  if n < now_us then
    redis.call('SET', key, f)
    return f
  end
  -- The counter as the server keeps it: exact past 2^53, where n is not.
  return redis.call('GET', key)
end
";

/// The server's uptime for the restart guard, in ms, or nil when INFO
/// does not say. INFO's uptime is the difference of two whole-second
/// clock readings, so it is up to a second off either way: a grant takes a
/// second off (the guard looks longer, nothing is granted early), a
/// renewal adds one (the guard never looks longer than it is to a holder
/// deciding how long to go on).
const UPTIME_FN: &str = r"
local function uptime_ms(round_up)
  local info = redis.pcall('INFO', 'server')
  if type(info) ~= 'string' then return nil end
  -- A plain find, then a match anchored there: a pattern search would try
  -- the pattern at every offset of the whole section.
  local at = string.find(info, 'uptime_in_seconds:', 1, true)
  if not at then return nil end
  local up = tonumber(string.match(info, '^%d+', at + 18))
  if not up then return nil end
  if round_up then up = up + 1 else up = up - 1 end
  return up * 1000
end
";

/// The restart guard of a grant (the exclusive and the shared one); needs
/// [`UPTIME_FN`].
const GUARD_FN: &str = r"
-- How much longer (ms) the restart guard refuses a grant, or nil. Redis
-- sets LASTSAVE (whole seconds) when it starts, in its start's second or
-- the one before, and at every save since, so now - LASTSAVE - 2 s is less
-- than the time since the start (with a clock set back and a save since,
-- that time is longer still). Once that alone is past the guard, INFO, the
-- dearest call of an uncontended grant, is not needed. A LASTSAVE of 0 (a
-- server that does not say) settles nothing.
local function guard_left(guard, now_ms)
  local saved = redis.pcall('LASTSAVE')
  if type(saved) == 'number' and saved > 0 and now_ms - (saved + 2) * 1000 >= guard then
    return nil
  end
  local up = uptime_ms(false)
  if up and up < guard then return guard - up end
  return nil
end
";

/// Lua shared by the readers/writer scripts. Shared leases are members of
/// the sorted set `:readers` (score: expiry, server ms), their records
/// `FENCE HOLDER-JSON` in the hash `:rinfo`; waiting exclusive holders are
/// members of `:wwait` (score: expiry). Every set expires with its
/// longest-lived member, so nothing outlives its leases.
const RW_FN: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep(set, info, now)
  local last = redis.call('ZRANGE', set, -1, -1, 'WITHSCORES')
  if #last > 0 then
    local ms = math.max(1, tonumber(last[2]) - now)
    redis.call('PEXPIRE', set, ms)
    if info then redis.call('PEXPIRE', info, ms) end
  end
end
local function prune(set, info, now)
  local gone = redis.call('ZRANGEBYSCORE', set, '-inf', now)
  for _, member in ipairs(gone) do
    if info then redis.call('HDEL', info, member) end
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', set, '-inf', now) end
end
local function intend(wwait, token, ttl)
  local now = now_ms()
  prune(wwait, nil, now)
  redis.call('ZADD', wwait, now + ttl, token)
  keep(wwait, nil, now)
end
local function split_info(info)
  if not info then return '', '' end
  local fence, holder = string.match(info, '^(%S*) (.*)$')
  return fence or '', holder or ''
end
";

/// Take a shared lease. KEYS: lock, fence, readers, wwait, rinfo, rwake;
/// ARGV: token, ttl ms, holder JSON, max-ttl ms. Replies as [`ACQUIRE`],
/// plus `{"3", ms, holder, fence}`: refused because an exclusive holder
/// waits (for at most MS more, unless it renews its wait).
///
/// The fairness rule is writer preference: no new shared lease is granted
/// while an exclusive holder waits, so a stream of shared holders cannot
/// starve it; shared holders already in keep their leases. A granted shared
/// lease pushes a wake-up onto `:rwake`, so the shared waiters woken by a
/// release come in one after another, each waking the next.
const ACQUIRE_SHARED: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then
  local cur = redis.call('HMGET', KEYS[1], 'holder', 'fence')
  return {'0', cur[1] or '', cur[2] or '', tostring(redis.call('PTTL', KEYS[1]))}
elseif kind ~= 'none' then
  return {'0', '', '', tostring(redis.call('PTTL', KEYS[1]))}
end
-- One TIME for both clocks, as in ACQUIRE: ms for the leases, µs for the
-- fence.
local t = redis.call('TIME')
local micros = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(micros / 1000)
local ttl = tonumber(ARGV[2])
prune(KEYS[3], KEYS[5], now)
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
  keep(KEYS[3], KEYS[5], now)
  local fence = split_info(redis.call('HGET', KEYS[5], ARGV[1]))
  return {'1', fence}
end
local left = guard_left(tonumber(ARGV[4]), now)
if left then return {'2', string.format('%d', left)} end
prune(KEYS[4], nil, now)
local writer = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if #writer > 0 then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0)
  local fence, holder = '', ''
  if #first > 0 then fence, holder = split_info(redis.call('HGET', KEYS[5], first[1])) end
  return {'3', string.format('%d', tonumber(writer[2]) - now), holder, fence}
end
local f = next_fence(KEYS[2], micros)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], f .. ' ' .. ARGV[3])
keep(KEYS[3], KEYS[5], now)
wake(KEYS[6], 1, 1, ARGV[5])
return {'1', f}
";

/// Extend a shared lease: 1 extended, 0 gone (expired or removed), -2 - MS
/// gone but the restart guard grants nothing for MS more. KEYS: readers,
/// rinfo; ARGV: token, ttl ms, max-ttl ms.
const RENEW_SHARED: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  local up, guard = uptime_ms(true), tonumber(ARGV[3])
  if up and up < guard then return -2 - (guard - up) end
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
keep(KEYS[1], KEYS[2], now)
return 1
";

/// Give a shared lease back; the last live one wakes an exclusive waiter.
/// KEYS: readers, rinfo, wake; ARGV: token, wake life. 1 released, 0 not ours.
const RELEASE_SHARED: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf') == 0 then
  wake(KEYS[3], 1, 1, ARGV[2])
end
return 1
";

/// An exclusive waiter gives up: withdraw its wait from `:wwait`, and wake a
/// shared waiter it may have kept out. KEYS: wwait, rwake; ARGV: token, wake life.
const WITHDRAW: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then wake(KEYS[2], 1, 1, ARGV[2]) end
return 1
";

/// `release --force` of shared holders: remove exactly the shared leases
/// read (ARGV[2..]: their tokens), so a retry removes nothing new, and wake
/// an exclusive waiter. KEYS: readers, rinfo, wake; ARGV[1]: wake life.
const FORCE_RELEASE_SHARED: &str = r"
local removed = 0
for i = 2, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
if removed > 0 then wake(KEYS[3], 1, 1, ARGV[1]) end
return removed
";

/// The live shared leases of a lock: `{count, holder, fence, soonest pttl}`.
/// KEYS: readers, rinfo. Read-only.
const INSPECT_SHARED: &str = r"
local now = now_ms()
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
if #live == 0 then return {'0', '', '', ''} end
local fence, holder = split_info(redis.call('HGET', KEYS[2], live[1]))
return {string.format('%d', #live / 2), holder, fence, string.format('%d', tonumber(live[2]) - now)}
";

/// Compare-and-extend: 1 extended, -1 it is someone else's, 0 the key is
/// gone and may be granted to anyone at once, -2 - MS the key is gone but
/// the restart guard (ARGV[3] = max-ttl) grants it to nobody for MS more.
const RENEW: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
  local up, guard = uptime_ms(true), tonumber(ARGV[3])
  if up and up < guard then return -2 - (guard - up) end
  return 0
end
if kind ~= 'hash' or redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Lua shared by the scripts that wake waiters: push `n` tokens onto the
/// wake list, keep at most `cap` (one per slot), and let them expire `life`
/// ms after the last push. A wake key of another type (someone else's) is
/// left alone: waiters then fall back to their poll.
const WAKE_FN: &str = r"
local function wake(key, n, cap, life)
  local len = 0
  for _ = 1, n do
    len = redis.pcall('LPUSH', key, '1')
    if type(len) ~= 'number' then return end
  end
  if len > cap then redis.call('LTRIM', key, 0, cap - 1) end
  redis.call('PEXPIRE', key, life)
end
";

/// Compare-and-delete, then wake one waiter: 1 released, 0 not ours (left
/// alone, nobody woken). KEYS: lock, wake list, and for a plain lock the
/// shared waiters' wake list; ARGV: token, slots, wake life.
const RELEASE: &str = r"
-- HGET of a key of another type is an error (a table), never our token.
if redis.pcall('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  wake(KEYS[2], 1, tonumber(ARGV[2]), ARGV[3])
  if KEYS[3] then
    -- The shared waiters' list holds at most one wake-up, and nobody pops
    -- it while nobody waits: one already there only needs its life renewed.
    local queued = redis.pcall('LLEN', KEYS[3])
    if queued == 0 then
      wake(KEYS[3], 1, 1, ARGV[3])
    elseif type(queued) == 'number' then
      redis.call('PEXPIRE', KEYS[3], ARGV[3])
    end
  end
  return 1
end
return 0
";

/// `{type, holder, fence, pttl, token}` for each lock key (KEYS[1..]).
/// Read-only.
const INSPECT: &str = r"
local out = {}
for i = 1, #KEYS do
  local key = KEYS[i]
  local kind = redis.call('TYPE', key)['ok']
  local holder, fence, token = '', '', ''
  if kind == 'hash' then
    local v = redis.call('HMGET', key, 'holder', 'fence', 'token')
    holder, fence, token = v[1] or '', v[2] or '', v[3] or ''
  end
  out[i] = {kind, holder, fence, tostring(redis.call('PTTL', key)), token}
end
return out
";

/// `release --force`, second half: delete exactly the leases an INSPECT
/// just read, and wake one waiter per deleted key through the wake list
/// KEYS[1]. KEYS[2..]: lock keys; ARGV[1] = 'delete', ARGV[2]: wake life,
/// then per key the type and the token read (empty for a key of another
/// type, which is deleted only if it still is of that type). A key that
/// has changed hands since is left alone, so a retry of this script after
/// a lost reply deletes nothing new: the next holder keeps its lock.
/// Replies with the number of keys deleted.
const FORCE_RELEASE: &str = r"
local deleted = 0
for i = 2, #KEYS do
  local key = KEYS[i]
  local want_kind, want_token = ARGV[2 * i - 1], ARGV[2 * i]
  local kind = redis.call('TYPE', key)['ok']
  local match = false
  if kind == 'hash' then
    match = want_kind == 'hash' and redis.call('HGET', key, 'token') == want_token
  elseif kind ~= 'none' then
    match = kind == want_kind
  end
  if match then
    redis.call('DEL', key)
    deleted = deleted + 1
  end
end
if deleted > 0 then wake(KEYS[1], deleted, #KEYS - 1, ARGV[2]) end
return deleted
";

/// Pass a wake-up on (a waiter gave up holding one, or may have):
/// KEYS: wake list; ARGV: slots, wake life.
const WAKE: &str = r"
wake(KEYS[1], 1, tonumber(ARGV[1]), ARGV[2])
return 1
";

// Each named by the SHA1 of its parts joined, written out (`redis/script.rs`).
static ACQUIRE_SCRIPT: LuaScript = LuaScript::new(
    &[UPTIME_FN, GUARD_FN, FENCE_FN, RW_FN, ACQUIRE],
    "080f5cb203dbfc7be9a2ef460756da1280cc602e",
);
static ACQUIRE_SHARED_SCRIPT: LuaScript = LuaScript::new(
    &[
        UPTIME_FN,
        GUARD_FN,
        FENCE_FN,
        WAKE_FN,
        RW_FN,
        ACQUIRE_SHARED,
    ],
    "8247350c6ff2ec66552dbcb2e4375ab818e56758",
);
static RENEW_SHARED_SCRIPT: LuaScript = LuaScript::new(
    &[UPTIME_FN, RW_FN, RENEW_SHARED],
    "686c2a0a1468076ae155802d3d541a19b991848b",
);
static RELEASE_SHARED_SCRIPT: LuaScript = LuaScript::new(
    &[WAKE_FN, RW_FN, RELEASE_SHARED],
    "3aa84fe757bf558371a89d1df75af8dd48ef6259",
);
static WITHDRAW_SCRIPT: LuaScript = LuaScript::new(
    &[WAKE_FN, WITHDRAW],
    "602f94ce2a3040f6b2f64d1b0a305206ea3a0521",
);
static FORCE_RELEASE_SHARED_SCRIPT: LuaScript = LuaScript::new(
    &[WAKE_FN, FORCE_RELEASE_SHARED],
    "08b08fb76113ae05c7cb041bbad75d7da829d525",
);
static INSPECT_SHARED_SCRIPT: LuaScript = LuaScript::new(
    &[RW_FN, INSPECT_SHARED],
    "961ca6d7a778fcb5d1dee9a864d8dd4bfd4d2dc7",
);
static RENEW_SCRIPT: LuaScript = LuaScript::new(
    &[UPTIME_FN, RENEW],
    "327df49d6800abefb4f26ff9ce1fb008f48b35df",
);
static RELEASE_SCRIPT: LuaScript = LuaScript::new(
    &[WAKE_FN, RELEASE],
    "acf73c9dd477cb145db41f9d558312edc051dbd8",
);
static INSPECT_SCRIPT: LuaScript =
    LuaScript::new(&[INSPECT], "d8c12109f9dde1f6aa4b4555d6c0f22a3dab190b");
static FORCE_RELEASE_SCRIPT: LuaScript = LuaScript::new(
    &[WAKE_FN, FORCE_RELEASE],
    "50beb0dd9fd626c2b7cac2bd3c29345df8a28ec2",
);
static WAKE_SCRIPT: LuaScript =
    LuaScript::new(&[WAKE_FN, WAKE], "358d26d03945103eb9aa9a6ea137177ef7261f23");

pub(crate) struct RedisBackend {
    config: RedisConfig,
    client: Client,
    conn: Option<MultiplexedConnection>,
    /// `CLIENT ID` of `conn`, learnt when we first wait on it (`None`: not
    /// asked yet, or the server would not say).
    conn_id: Option<i64>,
    /// Set while a BLPOP is queued on `conn`. Still set after a wait that
    /// was abandoned (`--wait` ran out, a signal): the BLPOP is then still
    /// blocked on the server and must be undone before anything else.
    blocked: Option<Blocked>,
    /// A wake-up token we took and have not yet answered with a completed
    /// try: passed on in `Drop` if we exit without one.
    woken: Option<Blocked>,
    /// When the current round of tries began: the fallback and the wake
    /// token's life count from here.
    round_started: Instant,
    /// Shortest remaining lease among the slots found busy in the last round
    /// (`None`: a lease without expiry, or not known).
    soonest_expiry: Option<Duration>,
    /// Consecutive waits that lost their connection, for backoff.
    lost_waits: u32,
    /// The server takes BLPOP timeouts in whole seconds only (Redis < 6).
    integer_timeouts: bool,
    /// Whether this user may run CLIENT UNBLOCK, learnt with `conn_id`
    /// (`None`: not asked yet on `conn`): only then does a try go out
    /// behind a BLPOP, and only then is one undone.
    can_unblock: Option<bool>,
    told_about_restart: bool,
    /// The token of the current acquisition, the same for all its tries, so
    /// that an exclusive waiter's entry in `:wwait` is one entry.
    attempt_token: Option<String>,
    /// Set while an exclusive waiter may have an entry in `:wwait`: what
    /// [`WITHDRAW`] needs if it gives up (`Drop`).
    waiting_writer: Option<Withdraw>,
    /// Set when the last try was refused by the restart guard: why.
    restart_reason: Option<String>,
}

/// An exclusive waiter's entry in `:wwait`, to withdraw on giving up.
struct Withdraw {
    wwait_key: String,
    rwake_key: String,
    token: String,
}

struct RwKeys {
    readers: String,
    rinfo: String,
    wwait: String,
    rwake: String,
}

/// A BLPOP on the wake list that may still be blocked on the server (or
/// that took a token).
struct Blocked {
    wake_key: String,
    client_id: Option<i64>,
    slots: u32,
    /// The try sent behind the BLPOP, if one was: once the BLPOP returns
    /// (or is unblocked) the server runs it, and it may take the lock.
    pending_try: Option<PendingTry>,
}

pub(crate) struct RedisLease {
    key: String,
    /// `Some` for a shared lease: `(readers, rinfo)`, where it lives.
    shared: Option<(String, String)>,
    /// A plain exclusive lock's shared waiters' wake list, woken on release.
    rwake_key: Option<String>,
    token: String,
    slot: u32,
    slots: u32,
    fence: u64,
    ttl: Duration,
    wake_key: String,
    expires_at: BootTime,
}

impl Lease for RedisLease {
    fn slot(&self) -> u32 {
        self.slot
    }
    fn fence(&self) -> Option<u64> {
        Some(self.fence)
    }
    fn expires_at(&self) -> Option<BootTime> {
        Some(self.expires_at)
    }
}

/// What one inspected key looks like.
struct KeyState {
    kind: String,
    /// The lease's token (empty for a key lockrun did not write).
    token: String,
    holder: Option<HolderInfo>,
    pttl_ms: Option<u64>,
}

impl RedisBackend {
    /// Connect at once, so that an unreachable server (69) or refused
    /// credentials (77) are reported before anything else happens.
    pub(crate) async fn connect(config: RedisConfig) -> Result<Self> {
        let client = config.client()?;
        let mut backend = RedisBackend {
            config,
            client,
            conn: None,
            conn_id: None,
            blocked: None,
            woken: None,
            round_started: Instant::now(),
            soonest_expiry: None,
            lost_waits: 0,
            integer_timeouts: false,
            can_unblock: None,
            told_about_restart: false,
            attempt_token: None,
            waiting_writer: None,
            restart_reason: None,
        };
        backend.connection(CONNECT_TIMEOUT).await?;
        Ok(backend)
    }

    fn key_base(&self, name: &LockName) -> String {
        format!("{}{{{name}}}", self.config.prefix)
    }

    fn lock_key(&self, name: &LockName, slot: u32, slots: u32) -> String {
        if slots <= 1 {
            format!("{}:lock", self.key_base(name))
        } else {
            format!("{}:slot:{slot}", self.key_base(name))
        }
    }

    fn fence_key(&self, name: &LockName) -> String {
        format!("{}:fence", self.key_base(name))
    }

    fn wake_key(&self, name: &LockName) -> String {
        format!("{}:wake", self.key_base(name))
    }

    /// The readers/writer keys of a plain lock: shared leases, their
    /// records, waiting exclusive holders, the shared waiters' wake list.
    fn rw_keys(&self, name: &LockName) -> RwKeys {
        let base = self.key_base(name);
        RwKeys {
            readers: format!("{base}:readers"),
            rinfo: format!("{base}:rinfo"),
            wwait: format!("{base}:wwait"),
            rwake: format!("{base}:rwake"),
        }
    }

    /// The live shared leases of a plain lock: how many, one holder, the
    /// soonest expiry.
    async fn shared_state(
        &mut self,
        name: &LockName,
    ) -> Result<(u32, Option<HolderInfo>, Option<u64>)> {
        let keys = self.rw_keys(name);
        let mut invocation = INSPECT_SHARED_SCRIPT.key(&keys.readers);
        invocation.key(&keys.rinfo);
        let row: Vec<String> = self
            .call("reading the shared holders", CALL_TIMEOUT, async |conn| {
                invocation.invoke_async(conn).await
            })
            .await?;
        let field = |i: usize| row.get(i).map_or("", String::as_str);
        Ok((
            field(0).parse().unwrap_or(0),
            parse_holder(field(1), field(2)),
            field(3).parse().ok(),
        ))
    }

    /// The cached connection, or a new one.
    async fn connection(&mut self, limit: Duration) -> Result<MultiplexedConnection> {
        if let Some(conn) = &self.conn {
            return Ok(conn.clone());
        }
        let limit = limit.min(CONNECT_TIMEOUT);
        // Our own deadlines bound every call; the library's default 500 ms
        // response timeout would turn a slow renewal into a spurious error.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(limit))
            .set_response_timeout(None);
        let conn = match tokio::time::timeout(
            limit,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.error("connecting", &e)),
            Err(_) => return Err(self.timeout_error("connecting", limit)),
        };
        self.conn = Some(conn.clone());
        self.conn_id = None;
        self.can_unblock = None;
        Ok(conn)
    }

    /// Run one request with a deadline. A cached connection that turns out
    /// to be dead (the server restarted, an idle timeout) is replaced and the
    /// request sent once more, so it may run twice on the server.
    async fn call<T>(
        &mut self,
        what: &str,
        limit: Duration,
        request: impl AsyncFn(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        let outcome = tokio::time::timeout_at(deadline, async {
            let reused = self.conn.is_some();
            let mut conn = self.connection(limit).await?;
            match super::with_cpu_features_detected(request(&mut conn)).await {
                Ok(value) => Ok(value),
                // Safe to send again: every request made through `call` has
                // the same effect run twice as once. Acquire recognises its
                // own token; renew and release compare the token; INSPECT
                // and SCAN only read; FORCE_RELEASE deletes only the tokens
                // it was given, which a first run already removed.
                Err(e) if reused && is_transport_error(&e) => {
                    tracing::debug!(error = %e, "redis connection lost; reconnecting");
                    self.conn = None;
                    let mut conn = self.connection(limit).await?;
                    request(&mut conn).await.map_err(|e| self.error(what, &e))
                }
                Err(e) => Err(self.error(what, &e)),
            }
        })
        .await;
        let result = outcome.unwrap_or_else(|_| Err(self.timeout_error(what, limit)));
        if result.is_err() {
            // After a timeout the request may still be queued on the server
            // (CLIENT PAUSE): closing the connection lets the server drop it.
            self.conn = None;
        }
        result
    }

    fn error(&self, what: &str, e: &RedisError) -> Error {
        let address = self.config.address();
        let code = e.code().unwrap_or_default();
        let detail = e.detail().map_or_else(|| e.to_string(), str::to_owned);
        // "Protocol error: unauthenticated multibulk length": a server that
        // wants a password refuses long requests (our scripts' calls) from a
        // client that has not authenticated.
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(code, "WRONGPASS" | "NOAUTH")
            || e.to_string().contains("unauthenticated")
        {
            let hint = if self.config.password.is_some() {
                "check the user name and password"
            } else {
                "the server wants a password: set LOCKRUN_REDIS_PASSWORD (a USER:PASSWORD@ in the URL works too, but ps(1) shows it)"
            };
            return Error::no_permission(format!(
                "redis at {address} refused our credentials while {what}: {detail}; {hint}"
            ));
        }
        if code == "NOPERM" {
            return Error::no_permission(format!(
                "redis at {address} does not allow this user to run lockrun's commands ({what}): {detail}; it needs EVALSHA, EVAL, SCRIPT, BLPOP, SCAN, INFO and CLIENT ID (and CLIENT UNBLOCK, to cancel a wait cleanly) on the keys {}*",
                self.config.prefix
            ));
        }
        let text = e.to_string();
        let reason = if e.is_connection_refusal() {
            "connection refused (is redis-server running there?)".to_owned()
        } else if e.is_timeout() {
            "timed out".to_owned()
        } else if text.contains("certificate") && self.config.ca_file.is_none() {
            format!(
                "{text} (for a server certificate from a private CA, add ?cacert=/path/to/ca.pem to the URL)"
            )
        } else {
            text
        };
        Error::unavailable(format!("redis at {address}: {what} failed: {reason}"))
    }

    fn timeout_error(&self, what: &str, limit: Duration) -> Error {
        Error::unavailable(format!(
            "redis at {} did not answer within {} while {what}",
            self.config.address(),
            humantime::format_duration(limit)
        ))
    }

    async fn inspect(&mut self, keys: &[String]) -> Result<Vec<KeyState>> {
        let mut invocation = INSPECT_SCRIPT.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        let rows: Vec<Vec<String>> = self
            .call("reading the lock", CALL_TIMEOUT, async |conn| {
                invocation.invoke_async(conn).await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let field = |i: usize| row.get(i).cloned().unwrap_or_default();
                KeyState {
                    holder: parse_holder(&field(1), &field(2)),
                    pttl_ms: field(3)
                        .parse::<i64>()
                        .ok()
                        .and_then(|ms| u64::try_from(ms).ok()),
                    token: field(4),
                    kind: field(0),
                }
            })
            .collect())
    }

    /// The keys of `name`: all `slots` of them when given, else the ones
    /// that exist (SCAN), else the plain lock.
    async fn keys_of(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<(String, Option<u32>)>> {
        if let Some(slots) = slots {
            return Ok((1..=slots)
                .map(|slot| {
                    (
                        self.lock_key(name, slot, slots),
                        (slots > 1).then_some(slot),
                    )
                })
                .collect());
        }
        let base = self.key_base(name);
        let pattern = format!("{}:*", glob_escape(&base));
        let mut found: Vec<(String, Option<u32>)> = self
            .scan(&pattern)
            .await?
            .into_iter()
            .filter_map(|key| {
                let rest = key.strip_prefix(&base)?.to_owned();
                match rest.as_str() {
                    ":lock" => Some((key, None)),
                    _ => {
                        let slot = rest.strip_prefix(":slot:")?.parse().ok()?;
                        Some((key, Some(slot)))
                    }
                }
            })
            .collect();
        found.sort_by_key(|(_, slot)| *slot);
        if found.is_empty() {
            found.push((self.lock_key(name, 1, 1), None));
        }
        Ok(found)
    }

    async fn scan(&mut self, pattern: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = self
                .call("listing keys", CALL_TIMEOUT, async |conn| {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(conn)
                        .await
                })
                .await?;
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn states(
        &mut self,
        name: &LockName,
        keys: &[(String, Option<u32>)],
    ) -> Result<Vec<(SlotState, KeyState)>> {
        let redis_keys: Vec<String> = keys.iter().map(|(key, _)| key.clone()).collect();
        let states = self.inspect(&redis_keys).await?;
        let mut out: Vec<(SlotState, KeyState)> = keys
            .iter()
            .zip(states)
            .map(|((_, slot), state)| {
                let slot_state = SlotState {
                    key: match slot {
                        Some(slot) => format!("{name}@{slot}"),
                        None => name.as_str().to_owned(),
                    },
                    slot: *slot,
                    held: state.kind != "none",
                    holder: state.holder.clone(),
                    expires_in_ms: state.pttl_ms,
                    needs_manual_release: false,
                    queue: Vec::new(),
                    shared_by: None,
                    waiters: None,
                };
                (slot_state, state)
            })
            .collect();
        // A plain lock without an exclusive holder may have shared ones.
        for (slot, state) in &mut out {
            if slot.slot.is_none() && state.kind == "none" {
                let (count, holder, pttl) = self.shared_state(name).await?;
                if count > 0 {
                    slot.held = true;
                    slot.shared_by = Some(count);
                    slot.holder = holder;
                    slot.expires_in_ms = pttl;
                }
            }
        }
        Ok(out)
    }

    async fn slot_states(
        &mut self,
        name: &LockName,
        keys: &[(String, Option<u32>)],
    ) -> Result<Vec<SlotState>> {
        Ok(self
            .states(name, keys)
            .await?
            .into_iter()
            .map(|(slot, _)| slot)
            .collect())
    }

    /// Block in BLPOP on the wake list for at most `timeout` (server side;
    /// our own deadline adds [`CALL_TIMEOUT`] for a server that stops
    /// answering). `Ok(true)`: a wake-up token; `Ok(false)`: the timeout.
    /// Runs on the ordinary connection: a waiter sends nothing else while
    /// it blocks, and an abandoned BLPOP is undone by [`unblock`](Self::unblock)
    /// before the next request.
    ///
    /// `then_try`, where the BLPOP can be undone (`CLIENT ID` known, CLIENT
    /// UNBLOCK allowed), goes out right behind the BLPOP on the same
    /// connection: the server runs it as soon
    /// as the BLPOP returns, in the same pass as the release that woke us,
    /// so a hand-off needs no round trip of ours after the wake-up. Its
    /// reply lands in `tried` (`None`: it was not sent, or not answered).
    async fn block_for_wake(
        &mut self,
        wake_key: &str,
        slots: u32,
        timeout: Duration,
        then_try: Option<&AcquireCall>,
        acquire_timeout: Duration,
        tried: &mut Option<redis::RedisResult<Vec<String>>>,
    ) -> std::result::Result<bool, BlockError> {
        let mut conn = self
            .connection(CONNECT_TIMEOUT)
            .await
            .map_err(BlockError::Fatal)?;
        if self.can_unblock.is_none() {
            self.can_unblock = Some(false);
            // For CLIENT UNBLOCK, should the wait be abandoned. A server or
            // ACL that will not say costs only that clean-up. In the same
            // round trip, whether this user may run CLIENT UNBLOCK at all
            // (of a client that does not exist: 0, or NOPERM): a try sent
            // behind the BLPOP needs it.
            let id = tokio::time::timeout(
                CALL_TIMEOUT,
                client_probe().query_async::<(RedisResult<i64>, RedisResult<i64>)>(&mut conn),
            )
            .await;
            match id {
                Ok(Ok((id, unblock))) => self.learn_client_id(id, &unblock),
                Ok(Err(e)) if is_transport_error(&e) => return Err(BlockError::Lost(e)),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "no CLIENT ID; a cancelled wait is undone by closing the connection");
                }
                Err(_) => {
                    self.conn = None;
                    return Err(BlockError::Silent);
                }
            }
        }
        loop {
            let mut blpop = redis::cmd("BLPOP");
            blpop.arg(wake_key);
            if self.integer_timeouts {
                blpop.arg(timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0));
            } else {
                // Seconds with millisecond precision (Redis >= 6); never 0, which is forever.
                let ms = u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1);
                blpop.arg(format!("{}.{:03}", ms / 1000, ms % 1000));
            }
            // Only where the BLPOP can be undone: else an abandoned wait
            // could leave a try behind it that takes the lock for nobody.
            let can_unblock = self.conn_id.is_some() && self.can_unblock == Some(true);
            let then_try = then_try.filter(|_| can_unblock);
            *tried = None;
            self.blocked = Some(Blocked {
                wake_key: wake_key.to_owned(),
                // Known and allowed, or the BLPOP is undone by closing
                // the connection (no doomed CLIENT UNBLOCK).
                client_id: self.conn_id.filter(|_| can_unblock),
                slots,
                pending_try: then_try.map(|call| PendingTry {
                    key: call.key.clone(),
                    token: call.token.clone(),
                    wwait_key: call.rw.wwait.clone(),
                    rwake_key: call.rw.rwake.clone(),
                }),
            });
            let mut conn_for_try = conn.clone();
            let mut blocking = std::pin::pin!(tokio::time::timeout(
                timeout + CALL_TIMEOUT,
                blpop.query_async::<Option<(String, String)>>(&mut conn),
            ));
            let mut trying = std::pin::pin!(async {
                match then_try {
                    Some(call) => Some(
                        call.invocation
                            .invoke_async::<Vec<String>>(&mut conn_for_try)
                            .await,
                    ),
                    None => None,
                }
            });
            // Polled in this order, so sent in this order: the try waits
            // behind the BLPOP on the server.
            let mut try_reply = None;
            let reply = loop {
                tokio::select! {
                    biased;
                    reply = &mut blocking => break reply,
                    answered = &mut trying, if try_reply.is_none() => try_reply = Some(answered),
                }
            };
            let Ok(reply) = reply else {
                // Left `blocked`: the next try unblocks it first.
                return Err(BlockError::Silent);
            };
            // The BLPOP has returned: from here the try has what any try
            // has. Until it answers, `blocked` stays (with the pending try),
            // so that an exit meanwhile gives back what the try may take.
            let try_reply = match try_reply {
                Some(answered) => answered,
                None => tokio::time::timeout(acquire_timeout, &mut trying)
                    .await
                    .map_err(|_| BlockError::TryTimedOut)?,
            };
            self.blocked = None;
            let granted = try_reply.as_ref().is_some_and(|r| {
                r.as_ref()
                    .is_ok_and(|r| r.first().is_some_and(|f| f == "1"))
            });
            *tried = try_reply;
            if granted {
                // Ours, whatever the BLPOP said.
                return Ok(reply.is_ok_and(|token| token.is_some()));
            }
            return match reply {
                Ok(token) => Ok(token.is_some()),
                Err(e)
                    if !self.integer_timeouts
                        && e.to_string().contains("timeout is not an integer") =>
                {
                    tracing::debug!("redis takes whole-second BLPOP timeouts only");
                    self.integer_timeouts = true;
                    continue;
                }
                Err(e) if is_transport_error(&e) => Err(BlockError::Lost(e)),
                Err(e) if e.code() == Some("WRONGTYPE") => {
                    // Someone else's key where the wake list belongs: no
                    // release can wake us, so poll at the fallback.
                    tracing::warn!(
                        "{wake_key} is not a list; waiting without wake-ups (delete that key to restore them)"
                    );
                    tokio::time::sleep(timeout).await;
                    Ok(false)
                }
                Err(e) => Err(BlockError::Fatal(self.error("waiting for a release", &e))),
            };
        }
    }

    /// What the [`client_probe`] said about `conn`.
    fn learn_client_id(&mut self, id: RedisResult<i64>, unblock: &RedisResult<i64>) {
        match id {
            Ok(id) => {
                self.conn_id = Some(id);
                self.can_unblock = Some(unblock.is_ok());
            }
            Err(e) => {
                self.can_unblock = Some(false);
                tracing::debug!(error = %e, "no CLIENT ID; a cancelled wait is undone by closing the connection");
            }
        }
    }

    /// Undo a BLPOP that an abandoned wait left blocked on the server, so
    /// that it cannot take a wake-up meant for another waiter. The caller
    /// is a try (the only request `lock::acquire` makes after a wait), which
    /// covers a token the BLPOP may already have taken: it either gets the
    /// lock or finds a holder, whose release will push a new token. The
    /// connection is stuck behind the BLPOP, so this uses a new one, and
    /// keeps it. Returns whether a try was queued behind the BLPOP: the
    /// server has run it by the time CLIENT UNBLOCK answers, and it may
    /// have taken the lock, under the token the next try uses again.
    async fn unblock(&mut self, limit: Duration) -> bool {
        let Some(blocked) = self.blocked.take() else {
            return false;
        };
        // Closed only after CLIENT UNBLOCK answered: closing first would
        // leave the BLPOP blocked until the server noticed.
        let stuck = self.conn.take();
        let unblocked = match (self.connection(limit).await, blocked.client_id) {
            (Ok(mut conn), Some(id)) => tokio::time::timeout(
                limit,
                redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async::<i64>(&mut conn),
            )
            .await
            .map_err(|_| "timed out".to_owned())
            .and_then(|r| r.map_err(|e| e.to_string())),
            (Ok(_), None) => Err("client id unknown".to_owned()),
            (Err(e), _) => Err(e.to_string()),
        };
        match unblocked {
            Ok(1) => tracing::debug!("unblocked our abandoned BLPOP"),
            Ok(_) => tracing::debug!("our abandoned BLPOP had returned already"),
            Err(e) => {
                tracing::debug!(error = %e, "could not unblock our abandoned BLPOP; closing its connection");
            }
        }
        drop(stuck);
        // Its reply is never read; the try that follows, with the same
        // token, sees what it did (our lease, or our `:wwait` entry kept
        // fresh when shared holders refuse us again). Until that try
        // answers, `Drop` gives back what it may have taken.
        if blocked.pending_try.is_none() {
            return false;
        }
        self.woken = Some(Blocked {
            client_id: None,
            ..blocked
        });
        true
    }

    /// When to look again without a wake-up: just after the
    /// shortest busy lease would expire by itself, jittered so the waiters
    /// of a holder that died do not all arrive at once.
    /// "the Redis server at H started 3s ago; locks are granted from T …":
    /// the restart guard, `wait` before it ends. One text for the busy
    /// message, the log and `status`.
    fn restart_guard(&self, wait: Duration) -> String {
        let up = self.config.max_ttl.saturating_sub(wait);
        let from = crate::lock::unix_now() + wait.as_millis().div_ceil(1000) as u64;
        format!(
            "the Redis server at {} started {} ago; locks are granted from {} (max-ttl {} after its start, so that a holder from before a restart has run out)",
            self.config.address(),
            crate::lock::compact_duration(up),
            crate::lock::rfc3339(from),
            humantime::format_duration(self.config.max_ttl),
        )
    }

    fn fallback_delay(&self, req: &LockRequest) -> Duration {
        let base = self
            .soonest_expiry
            .unwrap_or_else(|| req.ttl.min(MAX_FALLBACK))
            .min(MAX_FALLBACK);
        let spread = (base / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let jitter = crate::os::random_up_to(u64::try_from(spread.as_micros()).unwrap_or(u64::MAX));
        base + Duration::from_micros(jitter) + Duration::from_millis(1)
    }
}

/// A signal ended a wait with our BLPOP still blocked on the server (the
/// `--wait` case is handled by the last try, see `unblock`). Until the
/// process has exited and the server has noticed, that BLPOP could take a
/// wake-up meant for another waiter, who would then sleep until its
/// fallback. So, best effort and briefly (blocking: there is no runtime to
/// await on in `drop`, and the process is about to exit): unblock it, and if
/// it had returned already, maybe with a token we never read, push one.
///
/// Likewise when we were woken but exit before a try was answered (the try
/// failed with an error): the token is pushed on.
///
/// An exclusive waiter that gives up also withdraws its entry in `:wwait`,
/// which would otherwise keep new shared holders out until it expired.
impl Drop for RedisBackend {
    fn drop(&mut self) {
        let blocked = self.blocked.take().or_else(|| self.woken.take());
        // A try behind the BLPOP may put us in `:wwait` as it runs: so the
        // entry is withdrawn after that, even if no earlier try made one.
        let withdraw = self.waiting_writer.take().or_else(|| {
            let pending = blocked.as_ref()?.pending_try.as_ref()?;
            Some(Withdraw {
                wwait_key: pending.wwait_key.clone(),
                rwake_key: pending.rwake_key.clone(),
                token: pending.token.clone(),
            })
        });
        if withdraw.is_none() && blocked.is_none() {
            return;
        }
        let Ok(mut conn) = self.client.get_connection_with_timeout(DROP_TIMEOUT) else {
            return;
        };
        if conn.set_read_timeout(Some(DROP_TIMEOUT)).is_err()
            || conn.set_write_timeout(Some(DROP_TIMEOUT)).is_err()
        {
            return;
        }
        if let Some(blocked) = blocked {
            hand_on(&mut conn, &blocked);
        }
        if let Some(w) = withdraw {
            let withdrawn: redis::RedisResult<i64> = WITHDRAW_SCRIPT
                .key(&w.wwait_key)
                .key(&w.rwake_key)
                .arg(&w.token)
                .arg(wake_life_ms())
                .invoke(&mut conn);
            tracing::debug!(ok = withdrawn.is_ok(), "withdrew our exclusive wait");
        }
    }
}

/// For `Drop`: undo an abandoned BLPOP, give back what the try behind it
/// took, and pass on a wake-up it may have taken.
fn hand_on(conn: &mut redis::Connection, blocked: &Blocked) {
    // (`woken` has no client id: nothing to unblock, a token to pass on.)
    // `None`: the unblock failed, and the BLPOP may still be blocked.
    let unblocked = blocked.client_id.map_or(Some(false), |id| {
        redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(id)
            .query::<i64>(conn)
            .ok()
            .map(|n| n == 1)
    });
    // The try behind the BLPOP has run by now (the server runs an
    // unblocked client's next command before it answers anyone) and may
    // have taken the lock for us: give it back, which wakes the next.
    let given_back = blocked.pending_try.as_ref().is_some_and(|pending| {
        RELEASE_SCRIPT
            .key(&pending.key)
            .key(&blocked.wake_key)
            .key(&pending.rwake_key)
            .arg(&pending.token)
            .arg(1)
            .arg(wake_life_ms())
            .invoke::<i64>(conn)
            .is_ok_and(|n| n == 1)
    });
    // A token pushed while our own BLPOP may still be blocked could wake
    // that BLPOP, and the try behind it take the lock for nobody.
    let may_pass_on = match unblocked {
        Some(was_blocked) => !was_blocked,
        None => blocked.pending_try.is_none(),
    };
    if given_back {
        tracing::debug!("gave back the lock a try behind our BLPOP took");
    } else if may_pass_on {
        let passed_on: redis::RedisResult<i64> = WAKE_SCRIPT
            .key(&blocked.wake_key)
            .arg(blocked.slots.max(1))
            .arg(wake_life_ms())
            .invoke(conn);
        tracing::debug!(ok = passed_on.is_ok(), "passed a wake-up on");
    }
}

/// Why a BLPOP on the wake list ended without a reply.
enum BlockError {
    /// The connection died (server restart, idle kill): back off, try again.
    Lost(RedisError),
    /// No answer within the BLPOP's own timeout plus [`CALL_TIMEOUT`].
    Silent,
    /// An error the next try would not fix (no permission, wrong type).
    Fatal(Error),
    /// The BLPOP returned, but the try behind it got no answer within
    /// [`acquire_timeout`], as a try of its own would not have.
    TryTimedOut,
}

/// `CLIENT ID`, and whether this user may run `CLIENT UNBLOCK` (of a
/// client that does not exist: 0, or NOPERM), errors kept per command:
/// what a waiter needs before a try may ride behind its BLPOP.
fn client_probe() -> redis::Pipeline {
    let mut probe = redis::pipe();
    probe
        .ignore_errors()
        .cmd("CLIENT")
        .arg("ID")
        .cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(0);
    probe
}

fn wake_life_ms() -> u64 {
    u64::try_from(WAKE_LIFE.as_millis()).unwrap_or(u64::MAX)
}

fn is_transport_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn parse_holder(json: &str, fence: &str) -> Option<HolderInfo> {
    let mut holder: HolderInfo = serde_json::from_str(json).ok()?;
    holder.fence = fence.parse().ok();
    Some(holder)
}

/// Escape SCAN's glob characters in a literal.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn renew_timeout(ttl: Duration) -> Duration {
    (ttl / 3).min(RENEW_TIMEOUT_CAP)
}

/// An acquire answered later than this would leave too little of the lease
/// to be worth starting the command on; it fails as unavailable instead.
fn acquire_timeout(ttl: Duration) -> Duration {
    (ttl / 3).min(CALL_TIMEOUT)
}

impl Backend for RedisBackend {
    type Lease = RedisLease;

    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<RedisLease> {
        poll_acquire(self, req, wait).await
    }

    fn renew_interval(&self, req: &LockRequest) -> Option<Duration> {
        Some(req.ttl / 3)
    }

    async fn renew(&mut self, lease: &mut RedisLease) -> Result<Renewal> {
        let ttl_ms = u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = match &lease.shared {
            Some((readers, rinfo)) => {
                let mut invocation = RENEW_SHARED_SCRIPT.key(readers);
                invocation.key(rinfo);
                invocation
            }
            None => RENEW_SCRIPT.key(&lease.key),
        };
        invocation
            .arg(&lease.token)
            .arg(ttl_ms)
            .arg(duration_ms(self.config.max_ttl));
        let sent = BootTime::now();
        let verdict: i64 = self
            .call(
                "renewing the lease",
                renew_timeout(lease.ttl),
                async |conn| invocation.invoke_async(conn).await,
            )
            .await?;
        Ok(match verdict {
            1 => {
                lease.expires_at = sent.saturating_add(lease.ttl);
                Renewal::Held
            }
            guarded if guarded <= -2 => Renewal::LostUntil {
                reason: format!(
                    "the lock key {} is gone: the redis server restarted and lost it",
                    lease.key
                ),
                others_from: sent.saturating_add(Duration::from_millis(
                    u64::try_from(-2 - guarded).unwrap_or(0),
                )),
            },
            0 => Renewal::Lost(format!(
                "the lock key {} is gone from redis (it expired, was deleted, or the server lost its data)",
                lease.key
            )),
            _ => Renewal::Lost(format!(
                "the lock key {} now belongs to someone else (overwritten or taken over)",
                lease.key
            )),
        })
    }

    async fn release(&mut self, lease: RedisLease) -> Result<()> {
        let invocation = if let Some((readers, rinfo)) = &lease.shared {
            let mut invocation = RELEASE_SHARED_SCRIPT.key(readers);
            invocation
                .key(rinfo)
                .key(&lease.wake_key)
                .arg(&lease.token)
                .arg(wake_life_ms());
            invocation
        } else {
            let mut invocation = RELEASE_SCRIPT.key(&lease.key);
            invocation.key(&lease.wake_key);
            if let Some(rwake) = &lease.rwake_key {
                invocation.key(rwake);
            }
            invocation
                .arg(&lease.token)
                .arg(lease.slots.max(1))
                .arg(wake_life_ms());
            invocation
        };
        let released: i64 = self
            .call("releasing the lock", RELEASE_TIMEOUT, async |conn| {
                invocation.invoke_async(conn).await
            })
            .await?;
        if released == 0 {
            tracing::info!(key = %lease.key, "the lock was no longer ours; left it alone");
        }
        Ok(())
    }
}

/// One call of the acquire script, ready to send.
struct AcquireCall {
    invocation: Invocation,
    key: String,
    token: String,
    rw: RwKeys,
    plain: bool,
}

/// A try sent behind a BLPOP, not answered yet: what undoing it needs.
struct PendingTry {
    key: String,
    token: String,
    wwait_key: String,
    rwake_key: String,
}

impl RedisBackend {
    /// The acquire script's call for `slot` of `req`, with the token of
    /// this acquisition.
    fn acquire_call(&mut self, req: &LockRequest, slot: u32) -> Result<AcquireCall> {
        let key = self.lock_key(&req.name, slot, req.slots);
        let fence_key = self.fence_key(&req.name);
        let token = self
            .attempt_token
            .get_or_insert_with(crate::reentry::new_token)
            .clone();
        let holder =
            serde_json::to_string(&req.holder).map_err(|e| Error::internal(e.to_string()))?;
        let ttl_ms = u64::try_from(req.ttl.as_millis()).unwrap_or(u64::MAX);
        let plain = req.slots <= 1;
        let rw = self.rw_keys(&req.name);
        let mut invocation = if req.shared {
            ACQUIRE_SHARED_SCRIPT.key(&key)
        } else {
            ACQUIRE_SCRIPT.key(&key)
        };
        invocation.key(&fence_key);
        if plain {
            invocation.key(&rw.readers).key(&rw.wwait).key(&rw.rinfo);
        }
        if req.shared {
            invocation.key(&rw.rwake);
        } else {
            // The other kind of lock of this NAME (same hash tag), last, for
            // the warning that a plain lock and a semaphore do not exclude
            // each other.
            invocation.key(self.lock_key(&req.name, 1, if req.slots > 1 { 1 } else { 2 }));
        }
        invocation
            .arg(&token)
            .arg(ttl_ms)
            .arg(&holder)
            .arg(duration_ms(self.config.max_ttl))
            .arg(wake_life_ms());
        Ok(AcquireCall {
            invocation,
            key,
            token,
            rw,
            plain,
        })
    }

    /// What the acquire script's `reply` to `call` means; `sent`: when the
    /// call went out.
    fn acquire_outcome(
        &mut self,
        req: &LockRequest,
        slot: u32,
        call: AcquireCall,
        sent: BootTime,
        reply: &[String],
    ) -> Result<Attempt<RedisLease>> {
        let AcquireCall {
            key,
            token,
            rw,
            plain,
            ..
        } = call;
        // Answered: a token we were woken with has done its work (we hold
        // the lock, or someone does whose release pushes the next).
        self.woken = None;
        let field = |i: usize| reply.get(i).map_or("", String::as_str);
        match field(0) {
            "1" => {
                let fence = field(1).parse().map_err(|_| {
                    Error::unavailable(format!("redis returned a bad fence {:?}", field(1)))
                })?;
                self.lost_waits = 0;
                self.attempt_token = None;
                self.waiting_writer = None;
                if field(2) == "1" {
                    let (ours, theirs) = if req.slots > 1 {
                        ("a semaphore (--slots)", "a plain lock")
                    } else {
                        ("a plain lock", "a semaphore (--slots)")
                    };
                    tracing::warn!(
                        "{name} is also used as {theirs} and {other} is held now; {ours} of {name} does not exclude it: use the same --slots everywhere {name} is used",
                        name = req.name,
                        other = if req.slots > 1 {
                            req.name.to_string()
                        } else {
                            req.name.slot_key(1, 2)
                        },
                    );
                }
                Ok(Attempt::Acquired(RedisLease {
                    key,
                    shared: req.shared.then(|| (rw.readers.clone(), rw.rinfo.clone())),
                    rwake_key: (plain && !req.shared).then(|| rw.rwake.clone()),
                    token,
                    slot,
                    slots: req.slots,
                    fence,
                    ttl: req.ttl,
                    wake_key: self.wake_key(&req.name),
                    expires_at: sent.saturating_add(req.ttl),
                }))
            }
            "0" => {
                let pttl = field(3).parse::<i64>().ok();
                let remaining = pttl
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Duration::from_millis);
                self.soonest_expiry = match (self.soonest_expiry, remaining) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if plain && !req.shared && field(4) == "shared" {
                    // The refusal put us in `:wwait`.
                    self.waiting_writer = Some(Withdraw {
                        wwait_key: rw.wwait.clone(),
                        rwake_key: rw.rwake.clone(),
                        token,
                    });
                }
                Ok(Attempt::Held(parse_holder(field(1), field(2))))
            }
            "3" => {
                // An exclusive holder waits: shared ones wait behind it.
                let wait = Duration::from_millis(field(1).parse().unwrap_or(0));
                self.soonest_expiry = Some(self.soonest_expiry.map_or(wait, |s| s.min(wait)));
                Ok(Attempt::Held(parse_holder(field(2), field(3))))
            }
            "2" => {
                let wait = Duration::from_millis(field(1).parse().unwrap_or(0));
                let reason = self.restart_guard(wait);
                if !self.told_about_restart {
                    self.told_about_restart = true;
                    tracing::info!("{reason}");
                }
                self.restart_reason = Some(reason);
                self.soonest_expiry = Some(self.soonest_expiry.map_or(wait, |s| s.min(wait)));
                Ok(Attempt::Held(None))
            }
            other => Err(Error::unavailable(format!(
                "redis returned an unexpected reply {other:?} to the acquire script"
            ))),
        }
    }
}

impl Polling for RedisBackend {
    async fn try_acquire(&mut self, req: &LockRequest, slot: u32) -> Result<Attempt<RedisLease>> {
        // After an abandoned wait (`--wait` ran out): see `unblock`.
        self.unblock(acquire_timeout(req.ttl)).await;
        let call = self.acquire_call(req, slot)?;
        // Taken before sending: the server's lease starts later than this,
        // so our idea of when it expires errs on the safe side.
        let sent = BootTime::now();
        if slot == 1 {
            self.restart_reason = None;
            self.soonest_expiry = None;
            self.round_started = Instant::now();
        }
        // A plain lock's waiter needs CLIENT ID and leave to run CLIENT
        // UNBLOCK before its first BLPOP (see `block_for_wake`): asked
        // here, behind the first try, they cost no round trip of their own.
        // (`can_unblock` describes `conn`; a new connection asks again.)
        let probe =
            (self.conn.is_none() || self.can_unblock.is_none()) && !req.shared && req.slots <= 1;
        let (reply, probed) = self
            .call(
                "acquiring the lock",
                acquire_timeout(req.ttl),
                async |conn| {
                    if !probe {
                        return Ok((call.invocation.invoke_async(conn).await?, None));
                    }
                    // The try last: a server that wants AUTH answers a
                    // long unauthenticated command with a protocol error
                    // and hangs up, and that error is the one to report.
                    let mut pipe = client_probe();
                    pipe.add_command(call.invocation.eval_cmd());
                    type Probed = (RedisResult<i64>, RedisResult<i64>, RedisResult<Vec<String>>);
                    let (id, unblock, tried): Probed = pipe.query_async(conn).await?;
                    let reply = match tried {
                        Err(e) if Invocation::is_no_script(&e) => {
                            call.invocation.load_then_invoke_async(conn).await?
                        }
                        tried => tried?,
                    };
                    Ok((reply, Some((id, unblock))))
                },
            )
            .await?;
        if let Some((id, unblock)) = probed {
            self.learn_client_id(id, &unblock);
        }
        self.acquire_outcome(req, slot, call, sent, &reply)
    }

    fn busy_reason(&self) -> Option<String> {
        self.restart_reason.clone()
    }

    async fn wait(&mut self, req: &LockRequest, _round: u32) -> Result<WaitOutcome<RedisLease>> {
        // Not expected (every wait is followed by a try), but never block
        // twice, and never while a try left behind may have taken the lock.
        if self.unblock(CONNECT_TIMEOUT).await {
            return Ok(WaitOutcome::Retry);
        }
        let fallback_at = self.round_started + self.fallback_delay(req);
        let since_try = self.round_started.elapsed();
        if since_try > WAKE_LIFE / 2 {
            // A wake-up pushed just after our try may have expired by the
            // time this BLPOP reached the server: look again instead.
            tracing::debug!(?since_try, "slow round; trying again before blocking");
            return Ok(WaitOutcome::Retry);
        }
        let Some(mut timeout) = fallback_at.checked_duration_since(Instant::now()) else {
            return Ok(WaitOutcome::Retry);
        };
        if self.waiting_writer.is_some() {
            // Our entry in `:wwait` lasts one ttl from the last try: try
            // (and so renew it) well before that.
            timeout = timeout.min(req.ttl / 3);
        }
        // Shared waiters sleep on their own wake list: woken by an exclusive
        // release, then by each other (see `ACQUIRE_SHARED`).
        let (wake_key, slots) = if req.shared {
            (self.rw_keys(&req.name).rwake, 1)
        } else {
            (self.wake_key(&req.name), req.slots)
        };
        // A plain exclusive lock's next try rides behind the BLPOP.
        let then_try = if req.shared || req.slots > 1 {
            None
        } else {
            Some(self.acquire_call(req, 1)?)
        };
        let mut tried = None;
        let sent = BootTime::now();
        let blocked = self
            .block_for_wake(
                &wake_key,
                slots,
                timeout,
                then_try.as_ref(),
                acquire_timeout(req.ttl),
                &mut tried,
            )
            .await;
        // The try behind the BLPOP answered: a grant is ours whatever the
        // BLPOP said; a refusal answers a wake-up token as any try does.
        let mut answered = false;
        if let (Some(call), Some(Ok(reply))) = (then_try, tried) {
            if let Attempt::Acquired(lease) = self.acquire_outcome(req, 1, call, sent, &reply)? {
                self.lost_waits = 0;
                // Dated from the BLPOP's send: after a long wait, the
                // supervisor renews it before the command starts.
                return Ok(WaitOutcome::Acquired(lease));
            }
            answered = true;
        }
        match blocked {
            Ok(true) => {
                if !answered {
                    self.woken = Some(Blocked {
                        wake_key,
                        client_id: None,
                        slots,
                        pending_try: None,
                    });
                }
                self.lost_waits = 0;
                tracing::debug!("woken by a release: trying again");
            }
            Ok(false) => tracing::debug!(?timeout, "no wake-up; checking for an expired lease"),
            Err(BlockError::Fatal(e)) => return Err(e),
            Err(BlockError::TryTimedOut) => {
                // As in `call`: closing the connection lets the server drop
                // the try should it still come to it.
                self.conn = None;
                return Err(self.timeout_error("acquiring the lock", acquire_timeout(req.ttl)));
            }
            Err(BlockError::Lost(e)) => {
                // The connection died (server restart, idle kill): the next
                // try reconnects and tells whether the server is back.
                self.conn = None;
                self.lost_waits += 1;
                tracing::info!(error = %e, "lost the redis connection while waiting; trying again");
                tokio::time::sleep(backoff_delay(
                    self.lost_waits,
                    Duration::from_millis(50),
                    Duration::from_secs(2),
                ))
                .await;
            }
            Err(BlockError::Silent) => {
                // Not answered by its own timeout: a paused or half-dead
                // server. The try judges it, after undoing the BLPOP.
                tracing::info!("redis did not end our BLPOP in time; trying again");
            }
        }
        Ok(WaitOutcome::Retry)
    }
}

impl Inspect for RedisBackend {
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>> {
        let keys = self.keys_of(name, slots).await?;
        self.slot_states(name, &keys).await
    }

    async fn list(&mut self) -> Result<Vec<SlotState>> {
        let pattern = format!("{}{{*}}:*", glob_escape(&self.config.prefix));
        let keys = self.scan(&pattern).await?;
        // name -> its lock keys. The fence counter never expires (an expired
        // one would restart low and the fence would go backwards), so a name
        // with only a fence counter is not listed: else `list` would show
        // every name ever used.
        let mut names: std::collections::BTreeMap<String, Vec<(String, Option<u32>)>> =
            std::collections::BTreeMap::default();
        for key in keys {
            let Some(rest) = key
                .strip_prefix(&self.config.prefix)
                .and_then(|r| r.strip_prefix('{'))
            else {
                continue;
            };
            let Some((name, suffix)) = rest.split_once('}') else {
                continue;
            };
            if LockName::parse(std::ffi::OsStr::new(name)).is_err() {
                continue;
            }
            let slot = match suffix {
                ":lock" => None,
                // Shared holders: shown as the plain lock.
                ":readers" => {
                    let Ok(lock_name) = LockName::parse(std::ffi::OsStr::new(name)) else {
                        continue;
                    };
                    let lock_key = self.lock_key(&lock_name, 1, 1);
                    let entry = names.entry(name.to_owned()).or_default();
                    if !entry.iter().any(|(k, _)| *k == lock_key) {
                        entry.push((lock_key, None));
                    }
                    continue;
                }
                // A name with only a fence counter is not a lock any more.
                ":fence" => continue,
                _ => match suffix.strip_prefix(":slot:").and_then(|s| s.parse().ok()) {
                    Some(slot) => Some(slot),
                    // The wake list (and anything else) is not a lock.
                    None => continue,
                },
            };
            let entry = names.entry(name.to_owned()).or_default();
            if !entry.iter().any(|(k, _)| *k == key) {
                entry.push((key, slot));
            }
        }
        let mut out = Vec::new();
        for (name, mut keys) in names {
            let name = LockName::parse(std::ffi::OsStr::new(&name))?;
            keys.sort_by_key(|(_, slot)| *slot);
            out.extend(self.slot_states(&name, &keys).await?);
        }
        Ok(out)
    }

    async fn note(&mut self) -> Option<String> {
        let info: String = self
            .call(
                "reading the server's uptime",
                CONNECT_TIMEOUT,
                async |conn| redis::cmd("INFO").arg("server").query_async(conn).await,
            )
            .await
            .ok()?;
        let up: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("uptime_in_seconds:"))?
            .trim()
            .parse()
            .ok()?;
        // The acquire script's rule: whole seconds, counted one up.
        let guard = duration_ms(self.config.max_ttl);
        let up_ms = (up + 1).saturating_mul(1000);
        (up_ms < guard).then(|| self.restart_guard(Duration::from_millis(guard - up_ms)))
    }

    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>> {
        // Read, then compare-and-delete exactly what was read: the delete
        // is then safe to retry (see `FORCE_RELEASE`), where a blind delete
        // retried after a lost reply would break the next holder's lock.
        let keys = self.keys_of(name, slots).await?;
        let held: Vec<(SlotState, KeyState, String)> = self
            .states(name, &keys)
            .await?
            .into_iter()
            .zip(keys)
            .filter(|((slot, _), _)| slot.held)
            .map(|((slot, state), (key, _))| (slot, state, key))
            .collect();
        let (shared, held): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|(slot, _, _)| slot.shared_by.is_some());
        let mut removed: Vec<SlotState> = Vec::new();
        if let Some((slot, _, _)) = shared.into_iter().next() {
            let rw = self.rw_keys(name);
            let tokens: Vec<String> = self
                .call("reading the shared holders", CALL_TIMEOUT, async |conn| {
                    redis::cmd("ZRANGE")
                        .arg(&rw.readers)
                        .arg(0)
                        .arg(-1)
                        .query_async(conn)
                        .await
                })
                .await?;
            let mut invocation = FORCE_RELEASE_SHARED_SCRIPT.key(&rw.readers);
            invocation
                .key(&rw.rinfo)
                .key(self.wake_key(name))
                .arg(wake_life_ms());
            for token in &tokens {
                invocation.arg(token);
            }
            let deleted: i64 = self
                .call("force-releasing", CALL_TIMEOUT, async |conn| {
                    invocation.invoke_async(conn).await
                })
                .await?;
            tracing::debug!(deleted, "force-released shared holders");
            removed.push(slot);
        }
        if held.is_empty() {
            return Ok(removed);
        }
        let mut invocation = FORCE_RELEASE_SCRIPT.key(self.wake_key(name));
        for (_, _, key) in &held {
            invocation.key(key);
        }
        invocation.arg("delete").arg(wake_life_ms());
        for (_, state, _) in &held {
            invocation.arg(&state.kind).arg(&state.token);
        }
        let deleted: i64 = self
            .call("force-releasing", CALL_TIMEOUT, async |conn| {
                invocation.invoke_async(conn).await
            })
            .await?;
        tracing::debug!(deleted, read = held.len(), "force-released");
        removed.extend(held.into_iter().map(|(slot, _, _)| slot));
        Ok(removed)
    }

    fn display_url(&self) -> String {
        self.config.display_url()
    }
}

/// What `lockrun doctor` asks the server: read-only questions.
impl RedisBackend {
    pub(crate) async fn doctor_query<T: redis::FromRedisValue>(
        &mut self,
        what: &str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.call(what, CALL_TIMEOUT, async |c| cmd.query_async(c).await)
            .await
    }

    pub(crate) fn max_ttl(&self) -> Duration {
        self.config.max_ttl
    }

    pub(crate) fn server_address(&self) -> String {
        self.config.address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<RedisConfig> {
        RedisConfig::parse_with(url, None)
    }

    /// The SHA1 each script is called by (see `redis/script.rs`) is that
    /// of its text: edit a script, and this names the value to write.
    #[test]
    fn every_script_is_named_by_its_sha1() {
        let scripts: [(&str, &LuaScript); 12] = [
            ("ACQUIRE_SCRIPT", &ACQUIRE_SCRIPT),
            ("ACQUIRE_SHARED_SCRIPT", &ACQUIRE_SHARED_SCRIPT),
            ("RENEW_SHARED_SCRIPT", &RENEW_SHARED_SCRIPT),
            ("RELEASE_SHARED_SCRIPT", &RELEASE_SHARED_SCRIPT),
            ("WITHDRAW_SCRIPT", &WITHDRAW_SCRIPT),
            ("FORCE_RELEASE_SHARED_SCRIPT", &FORCE_RELEASE_SHARED_SCRIPT),
            ("INSPECT_SHARED_SCRIPT", &INSPECT_SHARED_SCRIPT),
            ("RENEW_SCRIPT", &RENEW_SCRIPT),
            ("RELEASE_SCRIPT", &RELEASE_SCRIPT),
            ("INSPECT_SCRIPT", &INSPECT_SCRIPT),
            ("FORCE_RELEASE_SCRIPT", &FORCE_RELEASE_SCRIPT),
            ("WAKE_SCRIPT", &WAKE_SCRIPT),
        ];
        let stale: Vec<String> = scripts
            .iter()
            .filter_map(|(name, script)| {
                let actual = redis::Script::new(&script.code()).get_hash().to_owned();
                (actual != script.sha1()).then(|| format!("{name}: {actual}"))
            })
            .collect();
        assert!(stale.is_empty(), "stale SHA1s, write these: {stale:#?}");
    }

    #[test]
    fn urls() {
        let c = parse("redis://localhost").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.db, c.tls),
            ("localhost", 6379, 0, false)
        );
        assert_eq!(c.display_url(), "redis://localhost:6379/0");

        let c = parse("rediss://bob:s%40cret@cache.example:6380/3?prefix=app%3A").unwrap();
        assert_eq!((c.port, c.db, c.tls), (6380, 3, true));
        assert_eq!(c.username.as_deref(), Some("bob"));
        assert_eq!(c.password.as_deref(), Some("s@cret"));
        assert_eq!(c.prefix, "app:");
        assert_eq!(
            c.display_url(),
            "rediss://bob@cache.example:6380/3?prefix=app:"
        );

        let c = parse("redis://:pw@[::1]:7000").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 7000));
        assert_eq!(c.display_url(), "redis://[::1]:7000/0");
        assert!(c.username.is_none());
    }

    #[test]
    fn bad_urls_are_usage_errors_without_the_password() {
        for url in [
            "redis://",
            "redis://:secret@",
            "redis://h:notaport",
            "redis://h:0",
            "redis://h/x",
            "redis://h/-1",
            "redis://:secret@h?what=1",
            "redis://:sec/ret@h",
            "redis://:secret@h:1:2",
            "redis://h?prefix=a{b}",
            "redis://h?cacert=/x",
            "redis://h#insecure",
            "http://h",
        ] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{url}: {err}");
            let text = err.to_string();
            assert!(
                !text.contains("secret") && !text.contains("sec/ret"),
                "{url}: {text}"
            );
        }
    }

    #[test]
    fn passwords_with_slashes_and_at_signs_and_ipv6_hosts() {
        let c = parse("redis://bob:a%2Fb@c@[2001:db8::7]:7001/2").unwrap();
        assert_eq!(c.password.as_deref(), Some("a/b@c"));
        assert_eq!((c.host.as_str(), c.port, c.db), ("2001:db8::7", 7001, 2));
        assert_eq!(c.display_url(), "redis://bob@[2001:db8::7]:7001/2");
        let c = parse("redis://:p%20w@h?prefix=a+b:").unwrap();
        assert_eq!(c.password.as_deref(), Some("p w"));
        assert_eq!(c.prefix, "a+b:");
        for url in [
            "redis://[::1",
            "redis://[::1]:x",
            "redis://u:%zz@h",
            "redis://u:x%2@h",
        ] {
            let err = parse(url).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{url}: {err}");
        }
        let err = parse("redis://u:a%2Fb%40c@h:99999")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("a%2Fb") && err.contains("u:***@"), "{err}");
    }

    #[test]
    fn password_from_env_unless_in_url() {
        let c = RedisConfig::parse_with("redis://h", Some("envpw".into())).unwrap();
        assert_eq!(c.password.as_deref(), Some("envpw"));
        let c = RedisConfig::parse_with("redis://:urlpw@h", Some("envpw".into())).unwrap();
        assert_eq!(c.password.as_deref(), Some("urlpw"));
        assert!(!format!("{c:?}").contains("urlpw"));
        assert!(!c.display_url().contains("urlpw"));
    }

    #[test]
    fn glob_escaping() {
        assert_eq!(glob_escape("a*b?[c]\\{d}"), "a\\*b\\?\\[c\\]\\\\{d}");
    }
}
