//! `cloudshell://[USER[:PASSWORD]@]HOST[:PORT]/RESERVATION[?OPTIONS]`, the
//! credentials from the environment, and the CloudShell script environment.
//!
//! Options live in the URL query so that a backend is one string (also in
//! `LOCKRUN_BACKEND`, and handed to the child without secrets):
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `model` | `Mutex Service` | service model added as the lock |
//! | `owner_attribute` | none | attribute of that model that records the holder |
//! | `domain` | `Global` | CloudShell domain to log on to (also `LOCKRUN_CLOUDSHELL_DOMAIN`) |
//! | `first_poll` | `100ms` | ceiling of the first jittered retry while the lock is busy |
//! | `max_poll` | `5s` | cap of the exponential backoff while the lock is busy |
//! | `timeout` | `10s` | per HTTP request |
//! | `retries` | `2` | extra attempts after a failed request before giving up (exit 69) |
//! | `check` | `10s` | how often a holder checks its alias is still there; `0` disables |
//! | `insecure` | `false` | with `cloudshells://`, accept any certificate (the official client always does) |
//!
//! Every duration is at most 1h ([`Bounds::BACKEND_INTERVAL`](crate::duration::Bounds::BACKEND_INTERVAL)): a larger one is a usage
//! error when the URL is parsed, never an overflow later.
//!
//! Inside a CloudShell script (`qualiConnectivityContext` and
//! `reservationContext` set), whatever the URL leaves out comes from there:
//! `cloudshell:` takes server, credentials and reservation;
//! `cloudshell://:PORT` the same with another port (the XML API is on 8029;
//! the context's `tsAPIPort` is the TCL port and is ignored, as the official
//! helper does); `cloudshell:///RESERVATION` another reservation on the
//! script's server. The default backend stays the file backend even there:
//! ambient variables never silently change which lock a NAME means.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::xml::has_forbidden_chars;
use crate::error::{Error, Result};

pub(super) const DEFAULT_PORT: u16 = 8029;
pub(super) const DEFAULT_MODEL: &str = "Mutex Service";
pub(super) const DEFAULT_DOMAIN: &str = "Global";
const DEFAULT_FIRST_POLL: Duration = Duration::from_millis(100);
const DEFAULT_MAX_POLL: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRIES: u32 = 2;
const DEFAULT_CHECK: Duration = Duration::from_secs(10);

/// The variables CloudShell sets for orchestration scripts (JSON objects).
pub(super) const CONNECTIVITY_ENV: &str = "qualiConnectivityContext";
pub(super) const RESERVATION_ENV: &str = "reservationContext";

const HINT: &str =
    "use cloudshell://HOST[:PORT]/RESERVATION_ID, or cloudshell: inside a CloudShell script";

#[derive(Clone)]
pub(crate) enum Credentials {
    Password {
        user: String,
        password: String,
        domain: String,
    },
    /// SecureLogon with an admin/auth token.
    Token { token: String, domain: String },
}

impl Credentials {
    pub(crate) fn domain(&self) -> &str {
        match self {
            Credentials::Password { domain, .. } | Credentials::Token { domain, .. } => domain,
        }
    }

    /// Who we log on as, for messages: never the secret itself.
    pub(crate) fn describe(&self) -> String {
        match self {
            Credentials::Password { user, domain, .. } => {
                format!("user {user:?} in domain {domain:?}")
            }
            Credentials::Token { domain, .. } => {
                format!("a token (SecureLogon) in domain {domain:?}")
            }
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({})", self.describe())
    }
}

#[derive(Clone)]
pub(crate) struct CloudShellConfig {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub reservation: String,
    pub credentials: Credentials,
    pub model: String,
    pub owner_attribute: Option<String>,
    pub first_poll: Duration,
    pub max_poll: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub check_interval: Option<Duration>,
    pub insecure: bool,
}

impl fmt::Debug for CloudShellConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CloudShellConfig({}, {:?})",
            self.display_url(),
            self.credentials
        )
    }
}

/// The pieces of a `cloudshell:` URL, before the environment fills the gaps.
struct UrlParts {
    tls: bool,
    user: Option<String>,
    password: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    reservation: Option<String>,
    query: Vec<(String, String)>,
}

impl CloudShellConfig {
    /// Inside a CloudShell script, `cloudshell:` (no host, no reservation)
    /// takes the server, the credentials and the reservation from the
    /// variables CloudShell sets; either part may also be given explicitly.
    /// Returns `None` for complete URLs, which [`parse`](Self::parse) handles.
    pub(crate) fn from_script_environment(url: &str) -> Result<Option<Self>> {
        Self::from_script_environment_with(url, &|key| std::env::var(key).ok())
    }

    pub(crate) fn parse(url: &str) -> Result<Self> {
        Self::parse_with(url, &|key| std::env::var(key).ok())
    }

    fn from_script_environment_with(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>> {
        match split_url(url)? {
            Some(parts) if parts.host.is_none() || parts.reservation.is_none() => {
                Self::build(parts, env).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn parse_with(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let parts =
            split_url(url)?.ok_or_else(|| Error::usage(format!("not a cloudshell URL; {HINT}")))?;
        Self::build(parts, env)
    }

    fn build(parts: UrlParts, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |key: &str| env(key).filter(|v| !v.is_empty());
        let script = if parts.host.is_none() || parts.reservation.is_none() {
            Some(ScriptContext::load(env)?)
        } else {
            // A complete URL needs no script context, but one naming the
            // script's own server (a nested lockrun, given LOCKRUN_BACKEND)
            // may still use the script's credentials.
            ScriptContext::load(env).ok()
        };
        let server_from_script = parts.host.is_none();
        // The script's credentials only ever go to the script's own server.
        let scripts_server = server_from_script
            || script.as_ref().is_some_and(|s| {
                parts
                    .host
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(&s.server))
            });
        let host = match (&parts.host, &script) {
            (Some(host), _) => host.clone(),
            (None, Some(script)) => script.server.clone(),
            (None, None) => unreachable!("script context is loaded when the host is missing"),
        };
        let reservation = match (&parts.reservation, &script) {
            (Some(id), _) => id.clone(),
            (None, Some(script)) => script.reservation.clone().ok_or_else(|| {
                Error::usage(format!("{RESERVATION_ENV} has no reservation id; {HINT}"))
            })?,
            (None, None) => {
                unreachable!("script context is loaded when the reservation is missing")
            }
        };

        let mut config = CloudShellConfig {
            tls: parts.tls
                || (server_from_script
                    && script
                        .as_ref()
                        .is_some_and(|s| s.scheme.eq_ignore_ascii_case("https"))),
            host,
            // tsAPIPort in the script context is the TCL/.NET port (8028);
            // the official helper ignores it for the XML API, and so do we.
            port: parts.port.unwrap_or(DEFAULT_PORT),
            reservation,
            credentials: Credentials::Token {
                token: String::new(),
                domain: String::new(),
            },
            model: DEFAULT_MODEL.to_owned(),
            owner_attribute: None,
            first_poll: DEFAULT_FIRST_POLL,
            max_poll: DEFAULT_MAX_POLL,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            check_interval: Some(DEFAULT_CHECK),
            insecure: false,
        };

        let mut domain = var("LOCKRUN_CLOUDSHELL_DOMAIN");
        for (key, value) in &parts.query {
            match key.as_str() {
                "model" => config.model = nonempty(key, value)?,
                "owner_attribute" => config.owner_attribute = Some(nonempty(key, value)?),
                "domain" => domain = Some(nonempty(key, value)?),
                "first_poll" => config.first_poll = duration(key, value)?,
                "max_poll" => config.max_poll = duration(key, value)?,
                "timeout" => config.timeout = duration(key, value)?,
                "retries" => {
                    config.retries = value.parse().ok().filter(|n| *n <= 20).ok_or_else(|| {
                        Error::usage(format!(
                            "cloudshell option retries={value:?}: expected a number from 0 to 20"
                        ))
                    })?;
                }
                "check" => {
                    let every = duration(key, value)?;
                    config.check_interval = (!every.is_zero()).then_some(every);
                }
                "insecure" => config.insecure = boolean(key, value)?,
                other => {
                    return Err(Error::usage(format!(
                        "unknown cloudshell option {other:?}; known: model, owner_attribute, domain, first_poll, max_poll, timeout, retries, check, insecure"
                    )));
                }
            }
        }
        if config.first_poll.is_zero() || config.max_poll.is_zero() || config.timeout.is_zero() {
            return Err(Error::usage(
                "cloudshell options first_poll, max_poll and timeout must be more than 0",
            ));
        }
        config.max_poll = config.max_poll.max(config.first_poll);
        let from_script_domain = || {
            script
                .as_ref()
                .filter(|_| scripts_server)
                .and_then(|s| s.domain.clone())
        };
        let domain = domain
            .or_else(from_script_domain)
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned());

        config.credentials = if let Some(token) = var("LOCKRUN_CLOUDSHELL_TOKEN") {
            Credentials::Token { token, domain }
        } else if let Some(user) = parts
            .user
            .clone()
            .or_else(|| var("LOCKRUN_CLOUDSHELL_USER"))
        {
            let password = parts
                .password
                .clone()
                .or_else(|| var("LOCKRUN_CLOUDSHELL_PASSWORD"))
                .ok_or_else(|| {
                    Error::usage(format!(
                        "cloudshell backend: no password for user {user:?}; set LOCKRUN_CLOUDSHELL_PASSWORD"
                    ))
                })?;
            Credentials::Password {
                user,
                password,
                domain,
            }
        } else if let Some(credentials) = script
            .as_ref()
            .filter(|_| scripts_server)
            .and_then(|s| s.credentials(&domain))
        {
            credentials
        } else {
            return Err(Error::usage(
                "cloudshell backend needs credentials: set LOCKRUN_CLOUDSHELL_USER and LOCKRUN_CLOUDSHELL_PASSWORD (and LOCKRUN_CLOUDSHELL_DOMAIN if not Global), or LOCKRUN_CLOUDSHELL_TOKEN",
            ));
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        let fields = [
            ("host", self.host.as_str()),
            ("reservation id", self.reservation.as_str()),
            ("service model", self.model.as_str()),
            (
                "owner attribute",
                self.owner_attribute.as_deref().unwrap_or_default(),
            ),
        ];
        for (what, value) in fields {
            if has_forbidden_chars(value) {
                return Err(Error::usage(format!(
                    "cloudshell {what} contains control characters"
                )));
            }
        }
        if self.host.is_empty() || self.reservation.is_empty() {
            return Err(Error::usage(format!(
                "cloudshell URL needs a host and a reservation id; {HINT}"
            )));
        }
        let secrets: Vec<&str> = match &self.credentials {
            Credentials::Password {
                user,
                password,
                domain,
            } => vec![user, password, domain],
            Credentials::Token { token, domain } => vec![token, domain],
        };
        if secrets.iter().any(|s| has_forbidden_chars(s)) {
            // Never echo the value: it may be a password.
            return Err(Error::usage(
                "cloudshell credentials contain control characters",
            ));
        }
        Ok(())
    }

    /// How long after sending a request that got no answer lockrun assumes
    /// the server may still carry it out: as long as lockrun would have
    /// waited for every attempt of one request, `timeout × (retries + 1)`
    /// (30s by default). The protocol gives no bound; this is lockrun's.
    pub(crate) fn settle(&self) -> Duration {
        self.timeout.saturating_mul(self.retries.saturating_add(1))
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// `host:port`, for messages.
    pub(crate) fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL without credentials, with the options that differ from the
    /// defaults, so that the child (and a nested lockrun) can reuse it.
    pub(crate) fn display_url(&self) -> String {
        let scheme = if self.tls {
            "cloudshells"
        } else {
            "cloudshell"
        };
        let mut url = format!(
            "{scheme}://{}:{}/{}",
            self.host,
            self.port,
            crate::backend::url::encode(&self.reservation)
        );
        let mut query = Vec::new();
        if self.model != DEFAULT_MODEL {
            query.push(("model", self.model.clone()));
        }
        if let Some(attribute) = &self.owner_attribute {
            query.push(("owner_attribute", attribute.clone()));
        }
        if self.credentials.domain() != DEFAULT_DOMAIN {
            query.push(("domain", self.credentials.domain().to_owned()));
        }
        if self.first_poll != DEFAULT_FIRST_POLL {
            query.push((
                "first_poll",
                humantime::format_duration(self.first_poll).to_string(),
            ));
        }
        if self.max_poll != DEFAULT_MAX_POLL {
            query.push((
                "max_poll",
                humantime::format_duration(self.max_poll).to_string(),
            ));
        }
        if self.timeout != DEFAULT_TIMEOUT {
            query.push((
                "timeout",
                humantime::format_duration(self.timeout).to_string(),
            ));
        }
        if self.retries != DEFAULT_RETRIES {
            query.push(("retries", self.retries.to_string()));
        }
        if self.check_interval != Some(DEFAULT_CHECK) {
            let every = self.check_interval.unwrap_or_default();
            query.push(("check", humantime::format_duration(every).to_string()));
        }
        if self.insecure {
            query.push(("insecure", "true".to_owned()));
        }
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&crate::backend::url::encode(value));
        }
        url
    }
}

/// What CloudShell hands an orchestration script (`cloudshell_scripts_helpers.py`).
struct ScriptContext {
    server: String,
    scheme: String,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    reservation: Option<String>,
    domain: Option<String>,
}

impl ScriptContext {
    fn load(env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let connectivity = env(CONNECTIVITY_ENV).ok_or_else(|| {
            Error::usage(format!(
                "cloudshell URL without a host or reservation means \"from the CloudShell script environment\", but {CONNECTIVITY_ENV} is not set; {HINT}"
            ))
        })?;
        let connectivity = json_object(CONNECTIVITY_ENV, &connectivity)?;
        let reservation = env(RESERVATION_ENV)
            .map(|text| json_object(RESERVATION_ENV, &text))
            .transpose()?;
        let text = |object: &Value, key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(ScriptContext {
            server: text(&connectivity, "serverAddress").ok_or_else(|| {
                Error::usage(format!("{CONNECTIVITY_ENV} has no serverAddress; {HINT}"))
            })?,
            scheme: text(&connectivity, "tsAPIScheme").unwrap_or_else(|| "http".into()),
            token: text(&connectivity, "adminAuthToken"),
            user: text(&connectivity, "adminUser"),
            password: text(&connectivity, "adminPass"),
            reservation: reservation.as_ref().and_then(|r| text(r, "id")),
            domain: reservation.as_ref().and_then(|r| text(r, "domain")),
        })
    }

    /// The script's own credentials, as `get_api_session()` picks them:
    /// the admin token when present, else the admin user.
    fn credentials(&self, domain: &str) -> Option<Credentials> {
        let domain = domain.to_owned();
        if let Some(token) = &self.token {
            return Some(Credentials::Token {
                token: token.clone(),
                domain,
            });
        }
        Some(Credentials::Password {
            user: self.user.clone()?,
            password: self.password.clone()?,
            domain,
        })
    }
}

/// The variables are JSON; the official helper retries with backslashes
/// doubled, for Windows paths written unescaped. The error never quotes the
/// text: it holds the admin password or token.
fn json_object(name: &str, text: &str) -> Result<Value> {
    serde_json::from_str::<Value>(text)
        .or_else(|_| serde_json::from_str::<Value>(&text.replace('\\', "\\\\")))
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| Error::usage(format!("{name} is not a JSON object")))
}

/// Split a `cloudshell[s]:` URL; `None` for other schemes.
fn split_url(url: &str) -> Result<Option<UrlParts>> {
    let tls = match crate::backend::url::scheme(url).as_deref() {
        Some("cloudshell") => false,
        Some("cloudshells") => true,
        _ => return Ok(None),
    };
    let shown = crate::backend::url::redacted(url);
    let bad = |why: &str| Error::usage(format!("invalid cloudshell URL {shown:?}: {why}; {HINT}"));
    let url = crate::backend::url::parse(url).map_err(|why| bad(&why))?;
    if !url.has_authority && !url.path.is_empty() {
        return Err(bad("expected // after the scheme"));
    }
    let path = url.path.trim_start_matches('/').trim_end_matches('/');
    if path.contains('/') {
        return Err(bad("the path must be just the reservation id"));
    }
    let reservation = crate::backend::url::decode(path).map_err(|why| bad(&why))?;
    let query = url
        .query_pairs(crate::backend::url::Plus::Space)
        .map_err(|why| bad(&why))?;
    Ok(Some(UrlParts {
        tls,
        host: url.host_bracketed(),
        user: url.user,
        password: url.password,
        port: url.port,
        reservation: Some(reservation).filter(|r| !r.is_empty()),
        query,
    }))
}

fn nonempty(key: &str, value: &str) -> Result<String> {
    if value.trim().is_empty() {
        return Err(Error::usage(format!(
            "cloudshell option {key} must not be empty"
        )));
    }
    Ok(value.to_owned())
}

/// Every duration option is at most 1h. Bounding them where they are
/// parsed keeps every later sum and product (the release budget, the
/// settle time, deadlines on `Instant`) far from overflow.
fn duration(key: &str, value: &str) -> Result<Duration> {
    crate::duration::parse(value, crate::duration::Bounds::BACKEND_INTERVAL)
        .map_err(|why| Error::usage(format!("cloudshell option {key}={:?}: {why}", value.trim())))
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::usage(format!(
            "cloudshell option {key}={value:?}: expected true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |key| map.get(key).cloned()
    }

    const CREDS: &[(&str, &str)] = &[
        ("LOCKRUN_CLOUDSHELL_USER", "admin"),
        ("LOCKRUN_CLOUDSHELL_PASSWORD", "s3cret"),
    ];

    #[test]
    fn plain_url() {
        let config =
            CloudShellConfig::parse_with("cloudshell://cs.example/077e6b4f-5e70", &env_of(CREDS))
                .unwrap();
        assert_eq!(config.server(), "cs.example:8029");
        assert_eq!(config.reservation, "077e6b4f-5e70");
        assert_eq!(config.model, "Mutex Service");
        assert_eq!(config.scheme(), "http");
        assert!(matches!(
            &config.credentials,
            Credentials::Password { user, password, domain } if user == "admin" && password == "s3cret" && domain == "Global"
        ));
        assert_eq!(
            config.display_url(),
            "cloudshell://cs.example:8029/077e6b4f-5e70"
        );
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn options_and_tls() {
        let config = CloudShellConfig::parse_with(
            "cloudshells://[::1]:9443/r1?model=My+Mutex&owner_attribute=Mutex%20Owner&max_poll=2s&first_poll=10ms&check=0&retries=0&insecure",
            &env_of(&[("LOCKRUN_CLOUDSHELL_TOKEN", "tok"), ("LOCKRUN_CLOUDSHELL_DOMAIN", "Lab")]),
        )
        .unwrap();
        assert_eq!(config.server(), "[::1]:9443");
        assert_eq!(config.scheme(), "https");
        assert_eq!(config.model, "My Mutex");
        assert_eq!(config.owner_attribute.as_deref(), Some("Mutex Owner"));
        assert_eq!(config.max_poll, Duration::from_secs(2));
        assert_eq!(config.first_poll, Duration::from_millis(10));
        assert_eq!(config.check_interval, None);
        assert_eq!(config.retries, 0);
        assert!(config.insecure);
        assert!(
            matches!(&config.credentials, Credentials::Token { domain, .. } if domain == "Lab")
        );
        let shown = config.display_url();
        assert!(shown.starts_with(
            "cloudshells://[::1]:9443/r1?model=My%20Mutex&owner_attribute=Mutex%20Owner&domain=Lab"
        ));
        assert!(!shown.contains("tok"));
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        let env = env_of(CREDS);
        for bad in [
            "cloudshell://h:99999/r",
            "cloudshell://h/r/extra",
            "cloudshell://h/r?colour=blue",
            "cloudshell://h/r?max_poll=soon",
            "cloudshell://h/r#frag",
            "cloudshell:h/r",
        ] {
            let err = CloudShellConfig::parse_with(bad, &env).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
        }
        let err = CloudShellConfig::parse_with("cloudshell://h/r", &env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("LOCKRUN_CLOUDSHELL_USER"), "{err}");
    }

    #[test]
    fn durations_are_bounded_when_parsed() {
        let env = env_of(CREDS);
        for option in ["timeout", "first_poll", "max_poll", "check"] {
            for value in [
                "1e300",
                "1e19",
                "inf",
                "NaN",
                "-1",
                "99999999999999h",
                "3601",
                "2h",
            ] {
                let url = format!("cloudshell://h/r?{option}={value}");
                let err = CloudShellConfig::parse_with(&url, &env).unwrap_err();
                assert!(matches!(err, Error::Usage(_)), "{url}: {err}");
                assert!(err.to_string().contains(option), "{url}: {err}");
            }
            let url = format!("cloudshell://h/r?{option}=1h");
            assert!(CloudShellConfig::parse_with(&url, &env).is_ok(), "{url}");
        }
        let config = CloudShellConfig::parse_with("cloudshell://h/r?timeout=1.5", &env).unwrap();
        assert_eq!(config.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn password_in_url_is_redacted() {
        let err = CloudShellConfig::parse_with("cloudshell://u:hunter2@h/r?nope=1", &env_of(&[]))
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let config =
            CloudShellConfig::parse_with("cloudshell://u:hunter2@h/r", &env_of(&[])).unwrap();
        assert!(!config.display_url().contains("hunter2"));
    }

    #[test]
    fn credentials_and_hosts_in_the_url() {
        let config = CloudShellConfig::parse_with(
            "cloudshell://ops%40lab:p%2Fw@rd@[fe80::2]:8030/res%201",
            &env_of(&[]),
        )
        .unwrap();
        assert!(matches!(
            &config.credentials,
            Credentials::Password { user, password, .. } if user == "ops@lab" && password == "p/w@rd"
        ));
        assert_eq!(config.server(), "[fe80::2]:8030");
        assert_eq!(config.reservation, "res 1");
        assert_eq!(config.display_url(), "cloudshell://[fe80::2]:8030/res%201");
        assert!(!format!("{config:?}").contains("p/w@rd"));
        let err = CloudShellConfig::parse_with("cloudshell://u:p%2Fw@h:0/r", &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("p%2Fw") && err.contains("u:***@h"), "{err}");
    }

    #[test]
    fn script_environment() {
        let env = env_of(&[
            (
                CONNECTIVITY_ENV,
                r#"{"serverAddress": "10.0.0.5", "tsAPIPort": "8028", "adminAuthToken": "adm1nT0ken", "adminUser": "", "adminPass": ""}"#,
            ),
            (
                RESERVATION_ENV,
                r#"{"id": "res-42", "domain": "Lab", "ownerUser": "bob"}"#,
            ),
        ]);
        let config = CloudShellConfig::from_script_environment_with("cloudshell:", &env)
            .unwrap()
            .unwrap();
        assert_eq!(config.server(), "10.0.0.5:8029");
        assert_eq!(config.reservation, "res-42");
        assert!(
            matches!(&config.credentials, Credentials::Token { token, domain } if token == "adm1nT0ken" && domain == "Lab")
        );
        let config = CloudShellConfig::from_script_environment_with("cloudshell:?model=M", &env)
            .unwrap()
            .unwrap();
        assert_eq!(config.model, "M");
        let config = CloudShellConfig::from_script_environment_with("cloudshell:///other", &env)
            .unwrap()
            .unwrap();
        assert_eq!(
            (config.host.as_str(), config.reservation.as_str()),
            ("10.0.0.5", "other")
        );
        // A complete URL is not the script environment's business.
        assert!(
            CloudShellConfig::from_script_environment_with("cloudshell://h/r", &env)
                .unwrap()
                .is_none()
        );
        assert!(
            CloudShellConfig::from_script_environment_with("redis://h", &env)
                .unwrap()
                .is_none()
        );
        // The script's credentials serve a complete URL naming its server
        // (a nested lockrun)...
        let config = CloudShellConfig::parse_with("cloudshell://10.0.0.5:8029/r9", &env).unwrap();
        assert!(
            matches!(&config.credentials, Credentials::Token { token, .. } if token == "adm1nT0ken")
        );
        // ...but never go to another server.
        let err = CloudShellConfig::parse_with("cloudshell://elsewhere/r9", &env).unwrap_err();
        assert!(err.to_string().contains("credentials"), "{err}");
        let err = CloudShellConfig::from_script_environment_with("cloudshell://elsewhere/", &env)
            .unwrap_err();
        assert!(err.to_string().contains("credentials"), "{err}");
        // Not in a script: a clear usage error.
        let err = CloudShellConfig::from_script_environment_with("cloudshell:", &env_of(CREDS))
            .unwrap_err();
        assert!(err.to_string().contains(CONNECTIVITY_ENV), "{err}");
    }

    #[test]
    fn script_environment_with_user_and_https() {
        let env = env_of(&[
            (
                CONNECTIVITY_ENV,
                r#"{"serverAddress": "cs", "adminUser": "admin", "adminPass": "p\w", "tsAPIScheme": "https"}"#,
            ),
            (RESERVATION_ENV, r#"{"id": "r"}"#),
        ]);
        let config = CloudShellConfig::from_script_environment_with("cloudshell:", &env)
            .unwrap()
            .unwrap();
        assert!(config.tls);
        assert!(
            matches!(&config.credentials, Credentials::Password { user, password, domain } if user == "admin" && password == "p\\w" && domain == "Global")
        );
    }
}
