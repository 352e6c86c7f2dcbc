//! One session with the CloudShell Automation API (XML over HTTP, port 8029):
//! `POST /ResourceManagerApiService/{Method}` with the headers the official
//! client sends, logon on first use, and one re-logon when the server
//! answers 401 (the client's `login_required`).
//!
//! Every failure is sorted by what it tells us about the request, because
//! that decides whether a retry is safe:
//! * [`Failure::Api`]: the server answered and refused (`Success="false"`);
//! * [`Failure::NotSent`]: the connection was never made, so nothing happened;
//! * [`Failure::Unclear`]: the server is done with the request but did not
//!   say whether it carried it out (HTTP 5xx, an unreadable reply, the
//!   connection closed without an answer): one look at the reservation
//!   tells, and nothing of the request can happen later;
//! * [`Failure::Pending`]: no answer in time (a timeout, or a gateway's
//!   502/504): the server may still be working on the request and may carry
//!   it out at any later moment, after any look at the reservation;
//! * [`Failure::Fatal`]: retrying cannot help (credentials, wrong server).
//!
//! The difference between the last two matters for a request that must not
//! land late (a remove): an `Unclear` one can be settled by reading, a
//! `Pending` one only by waiting (see the backend's module docs).

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};

use super::config::{CloudShellConfig, Credentials};
use super::xml::{self, Envelope};
use crate::error::{Error, Result};

const PATH: &str = "/ResourceManagerApiService/";

#[derive(Debug)]
pub(super) enum Failure {
    Api { code: String, message: String },
    NotSent(String),
    Unclear(String),
    Pending(String),
    Fatal(Error),
}

pub(super) struct Session {
    http: reqwest::Client,
    base: String,
    server: String,
    machine_name: String,
    credentials: Credentials,
    token: Option<String>,
    retries: u32,
    timeout: Duration,
}

impl Session {
    pub(super) fn new(config: &CloudShellConfig) -> Result<Self> {
        crate::backend::install_tls_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("lockrun/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .tls_danger_accept_invalid_certs(config.insecure)
            // Header names as the official clients write them (servers
            // ignore case, but there is no reason to differ).
            .http1_title_case_headers()
            // The official client (urllib3's PoolManager) ignores *_proxy
            // variables; a proxy in between would also see the Logon
            // password of a plain-HTTP server.
            .no_proxy()
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {}", chain(&e))))?;
        let local = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        Ok(Session {
            http,
            base: format!(
                "{}://{}:{}{PATH}",
                config.scheme(),
                config.host,
                config.port
            ),
            server: config.server(),
            // The official clients send *their* host name with the *server's*
            // port; the server does not check it, but it is what it expects.
            machine_name: format!("{local}:{}", config.port),
            credentials: config.credentials.clone(),
            token: None,
            retries: config.retries,
            timeout: config.timeout,
        })
    }

    pub(super) fn server(&self) -> &str {
        &self.server
    }

    pub(super) fn retries(&self) -> u32 {
        self.retries
    }

    /// Logon or SecureLogon (idempotent: retried within the budget).
    pub(super) async fn logon(&mut self) -> Result<()> {
        let (method, body) = match &self.credentials {
            Credentials::Password {
                user,
                password,
                domain,
            } => ("Logon", xml::logon(user, password, domain)),
            Credentials::Token { token, domain } => {
                ("SecureLogon", xml::secure_logon(token, domain))
            }
        };
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(retry_delay(attempt)).await;
            }
            // No token yet: the official client sends `Token=` empty here.
            let outcome = match self.post(method, &body, "").await {
                Ok((status @ (401 | 403), _)) => Err(Failure::Api {
                    code: format!("HTTP {status}"),
                    message: "unauthorized".into(),
                }),
                Ok((status, text)) => self.interpret(method, status, &text),
                Err(failure) => Err(failure),
            };
            match outcome {
                Ok(envelope) => {
                    let token = envelope.logon_token().ok_or_else(|| {
                        Error::unavailable(format!(
                            "CloudShell at {}: the {method} reply carries no token",
                            self.server
                        ))
                    })?;
                    tracing::debug!(method, "logged on");
                    self.token = Some(token);
                    return Ok(());
                }
                Err(Failure::Api { code, message }) => {
                    let what = self.credentials.describe();
                    let fix = match self.credentials {
                        Credentials::Password { .. } => {
                            "check LOCKRUN_CLOUDSHELL_USER, LOCKRUN_CLOUDSHELL_PASSWORD and LOCKRUN_CLOUDSHELL_DOMAIN"
                        }
                        Credentials::Token { .. } => {
                            "check LOCKRUN_CLOUDSHELL_TOKEN and LOCKRUN_CLOUDSHELL_DOMAIN"
                        }
                    };
                    return Err(Error::no_permission(format!(
                        "CloudShell at {} refused the logon of {what}: error {code}: {}; {fix}",
                        self.server,
                        clean(&message)
                    )));
                }
                Err(Failure::Fatal(e)) => return Err(e),
                // Safe to retry: a logon only issues another token.
                Err(Failure::NotSent(m) | Failure::Unclear(m) | Failure::Pending(m)) => {
                    tracing::debug!(method, attempt, failure = %m, "logon failed");
                    last = m;
                }
            }
        }
        Err(self.gave_up(method, &last))
    }

    /// One call, with at most one re-logon on 401. No retries: the caller
    /// decides, because only it knows whether repeating is safe.
    pub(super) async fn call_once(
        &mut self,
        method: &str,
        body: &str,
    ) -> Result<Envelope, Failure> {
        let mut logged_on_again = false;
        loop {
            if self.token.is_none() {
                self.logon().await.map_err(Failure::Fatal)?;
            }
            let token = self.token.clone().unwrap_or_default();
            let (status, text) = self.post(method, body, &token).await?;
            if status == 401 {
                if logged_on_again {
                    return Err(Failure::Fatal(Error::no_permission(format!(
                        "CloudShell at {} rejected the session token it had just issued (HTTP 401 on {method} after logging on again)",
                        self.server
                    ))));
                }
                // A 401 is answered before the method runs, so repeating is safe.
                tracing::info!(method, "HTTP 401: the session expired, logging on again");
                self.token = None;
                logged_on_again = true;
                continue;
            }
            return self.interpret(method, status, &text);
        }
    }

    /// A call that is safe to repeat (reads), retried within the budget.
    pub(super) async fn call(&mut self, method: &str, body: &str) -> Result<Envelope> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(retry_delay(attempt)).await;
            }
            match self.call_once(method, body).await {
                Ok(envelope) => return Ok(envelope),
                Err(Failure::Api { code, message }) => {
                    return Err(Error::unavailable(format!(
                        "CloudShell at {} refused {method}: error {code}: {}",
                        self.server,
                        clean(&message)
                    )));
                }
                Err(Failure::Fatal(e)) => return Err(e),
                // Safe to retry: only reads come here.
                Err(Failure::NotSent(m) | Failure::Unclear(m) | Failure::Pending(m)) => {
                    tracing::debug!(method, attempt, failure = %m, "request failed");
                    last = m;
                }
            }
        }
        Err(self.gave_up(method, &last))
    }

    /// The error once the retry budget is spent (exit 69).
    pub(super) fn gave_up(&self, method: &str, last: &str) -> Error {
        Error::unavailable(self.gave_up_text(method, last))
    }

    pub(super) fn gave_up_text(&self, method: &str, last: &str) -> String {
        let tries = self.retries + 1;
        let times = if tries == 1 {
            "once".to_owned()
        } else {
            format!("{tries} times")
        };
        format!(
            "CloudShell at {} is unreachable or failing: {method} failed {times}, last: {last}",
            self.server
        )
    }

    async fn post(&self, method: &str, body: &str, token: &str) -> Result<(u16, String), Failure> {
        let mut authorization =
            HeaderValue::from_str(&format!("MachineName={};Token={token}", self.machine_name))
                .map_err(|_| {
                    Failure::Fatal(Error::internal("session token is not a valid header value"))
                })?;
        // Keeps the token out of any Debug output of the request.
        authorization.set_sensitive(true);
        let response = self
            .http
            .post(format!("{}{method}", self.base))
            .header(CONTENT_TYPE, "text/xml")
            .header(ACCEPT, "*/*")
            .header("ClientTimeZoneId", "UTC")
            .header("DateTimeFormat", "MM/dd/yyyy HH:mm")
            .header(AUTHORIZATION, authorization)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| self.transport_failure(&e))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_failure(&e))?;
        Ok((status, decode_body(&bytes)))
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        if e.is_connect() {
            Failure::NotSent(chain(e))
        } else if e.is_timeout() {
            Failure::Pending(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            ))
        } else {
            // The server (or whatever is in between) closed the connection
            // or broke the reply off: it has stopped working on the request.
            Failure::Unclear(chain(e))
        }
    }

    fn interpret(&self, method: &str, status: u16, text: &str) -> Result<Envelope, Failure> {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        match status {
            200..=299 => {}
            403 => {
                return Err(Failure::Fatal(Error::no_permission(format!(
                    "CloudShell at {} answered HTTP 403 {reason} to {method}; check the credentials' permissions",
                    self.server
                ))));
            }
            // A gateway that gave up waiting: the server behind it may
            // still be working on the request.
            502 | 504 => {
                return Err(Failure::Pending(format!("HTTP {status} {reason}")));
            }
            408 | 429 | 500..=599 => {
                return Err(Failure::Unclear(format!("HTTP {status} {reason}")));
            }
            _ => {
                return Err(Failure::Fatal(Error::unavailable(format!(
                    "CloudShell at {} answered HTTP {status} {reason} to {method}; is this the CloudShell Automation API (XML RPC, port 8029)?",
                    self.server
                ))));
            }
        }
        let envelope = Envelope::parse(text)
            .map_err(|e| Failure::Unclear(format!("unreadable reply to {method}: {e}")))?;
        if !envelope.success {
            return Err(Failure::Api {
                code: envelope.error_code,
                message: envelope.error,
            });
        }
        Ok(envelope)
    }
}

/// Short jittered pause between attempts of one request.
pub(super) fn retry_delay(attempt: u32) -> Duration {
    crate::acquire::backoff_delay(attempt, Duration::from_millis(100), Duration::from_secs(1))
}

/// Replies are UTF-8 unless they start with a UTF-16 byte-order mark
/// (.NET's XmlSerializer can write either).
fn decode_body(bytes: &[u8]) -> String {
    let utf16 = |bytes: &[u8], from: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes.chunks_exact(2).map(|c| from([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8_lossy(rest).into_owned(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// "error sending request: client error (Connect): tcp connect error: Connection refused"
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        // "Connection refused", not "Connection refused (os error 111)".
        let part = part
            .split(" (os error")
            .next()
            .unwrap_or_default()
            .to_owned();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// Server text as one short line, bounded length; other control
/// characters are escaped by the one sanitiser, `ui::sanitize`.
pub(super) fn clean(message: &str) -> String {
    let flat = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = crate::ui::sanitize(&flat);
    if flat.chars().count() > 300 {
        format!("{}…", flat.chars().take(300).collect::<String>())
    } else if flat.is_empty() {
        "(no message)".to_owned()
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_decoded() {
        assert_eq!(decode_body(b"\xEF\xBB\xBF<a/>"), "<a/>");
        assert_eq!(decode_body(b"\xFF\xFE<\0a\0/\0>\0"), "<a/>");
        assert_eq!(decode_body(b"<a/>"), "<a/>");
    }

    #[test]
    fn messages_are_one_clean_line() {
        assert_eq!(clean("a\nb\t c\u{0}"), "a b c\\x00");
        assert_eq!(clean(""), "(no message)");
        assert!(clean(&"x".repeat(1000)).chars().count() <= 301);
    }
}
