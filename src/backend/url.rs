//! The one URL parser of the remote backends, on [`url::Url`]: it splits a
//! backend URL into scheme, user, password, host, port, path and query, all
//! percent-decoded with the same strict rules, and says in a few words what
//! is wrong with a malformed one. It never puts the URL (or its password)
//! in an error: each backend writes its own message around the reason, with
//! the URL shown through [`redacted`], and checks its own options.

use std::fmt;

use ::url::{Host, Url};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Stands in for an empty host (`cloudshell://:8030`, `redis://:pw@`),
/// which `url` refuses for these schemes; reported as no host.
const NO_HOST: &str = "lockrun-no-host.invalid";

/// How a `+` in the query is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plus {
    /// As itself (RFC 3986): Redis prefixes and CA file names.
    Literal,
    /// As a space (HTML forms): CloudShell model and attribute names.
    Space,
}

/// A backend URL taken apart. The password stays out of `Debug`.
pub(crate) struct UrlParts {
    /// Lower case.
    pub scheme: String,
    /// `scheme://…` rather than `scheme:…`.
    pub has_authority: bool,
    /// `None` when empty.
    pub user: Option<String>,
    /// `None` when absent or empty.
    pub password: Option<String>,
    /// `None` when empty; an IPv6 literal without its brackets.
    pub host: Option<String>,
    pub ipv6: bool,
    pub port: Option<u16>,
    /// Still percent-encoded, so that a backend can split it on `/` first;
    /// see [`decode`].
    pub path: String,
    query: String,
}

impl fmt::Debug for UrlParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlParts")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

impl UrlParts {
    /// The host as it goes in a URL or `host:port`: IPv6 in brackets.
    pub(crate) fn host_bracketed(&self) -> Option<String> {
        self.host.as_ref().map(|h| {
            if self.ipv6 {
                format!("[{h}]")
            } else {
                h.clone()
            }
        })
    }

    /// The query as decoded `key=value` pairs, in order (`key` alone has an
    /// empty value). Unknown keys are the backend's to report.
    pub(crate) fn query_pairs(&self, plus: Plus) -> Result<Vec<(String, String)>, String> {
        let decode = |s: &str| match plus {
            Plus::Literal => decode(s),
            Plus::Space => decode(&s.replace('+', " ")),
        };
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                Ok((decode(key)?, decode(value)?))
            })
            .collect()
    }
}

/// The scheme of `text`, lower case, if it starts with one.
pub(crate) fn scheme(text: &str) -> Option<String> {
    let (scheme, _) = text.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then(|| scheme.to_ascii_lowercase())
}

/// Take `text` apart; the error is a reason without the URL in it.
pub(crate) fn parse(text: &str) -> Result<UrlParts, String> {
    let Some(scheme) = scheme(text) else {
        return Err("no scheme".into());
    };
    let rest = &text[scheme.len() + 1..];
    if rest.contains('#') {
        return Err("fragments (#…) are not allowed".into());
    }
    let has_authority = rest.starts_with("//");
    let mut filled = None;
    if has_authority {
        let after = &rest[2..];
        let authority = &after[..after.find(['/', '?']).unwrap_or(after.len())];
        let host_at = authority.rfind('@').map_or(0, |at| at + 1);
        let host = &authority[host_at..];
        if host.is_empty() || host.starts_with(':') {
            let at = scheme.len() + 3 + host_at;
            filled = Some(format!("{}{NO_HOST}{}", &text[..at], &text[at..]));
        }
    }
    let url = Url::parse(filled.as_deref().unwrap_or(text)).map_err(|e| e.to_string())?;
    let (host, ipv6) = match url.host() {
        None => (None, false),
        Some(Host::Domain(NO_HOST)) if filled.is_some() => (None, false),
        Some(Host::Domain(name)) => (Some(decode(name)?), false),
        Some(Host::Ipv4(addr)) => (Some(addr.to_string()), false),
        Some(Host::Ipv6(addr)) => (Some(addr.to_string()), true),
    };
    if url.port() == Some(0) {
        return Err("bad port 0".into());
    }
    Ok(UrlParts {
        scheme,
        has_authority,
        user: Some(decode(url.username())?).filter(|u| !u.is_empty()),
        password: url
            .password()
            .map(decode)
            .transpose()?
            .filter(|p| !p.is_empty()),
        host,
        ipv6,
        port: url.port(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or_default().to_owned(),
    })
}

/// Percent-decode one field; a `%` must start a two-digit hex escape, and
/// the result must be UTF-8.
pub(crate) fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
        if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err("bad %-escape".into());
        }
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| "%-escapes that are not UTF-8".into())
}

/// Everything but the unreserved characters of RFC 3986 is escaped.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a user name, path segment or query value for a URL
/// lockrun writes (the child's `LOCKRUN_BACKEND`): only unreserved
/// characters stay as they are.
pub(crate) fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// Like [`encode`], but `:` and `/` stay readable: for query values that
/// are key prefixes or file names (they mean nothing special there).
pub(crate) fn encode_query_value(text: &str) -> String {
    const QUERY_VALUE: &AsciiSet = &COMPONENT.remove(b':').remove(b'/');
    utf8_percent_encode(text, QUERY_VALUE).to_string()
}

/// `text` as it may appear in a message: the password of any
/// `user:password@`, however malformed the rest, replaced by `***`.
pub(crate) fn redacted(text: &str) -> String {
    crate::ui::redact_url(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let u = parse("REDISS://bob:s%40c%2Fret@Cache.example:6380/3?prefix=a%3A&x").unwrap();
        assert_eq!(u.scheme, "rediss");
        assert!(u.has_authority);
        assert_eq!(u.user.as_deref(), Some("bob"));
        assert_eq!(u.password.as_deref(), Some("s@c/ret"));
        assert_eq!(u.host.as_deref(), Some("Cache.example"));
        assert_eq!(u.port, Some(6380));
        assert_eq!(u.path, "/3");
        assert_eq!(
            u.query_pairs(Plus::Literal).unwrap(),
            [("prefix".into(), "a:".into()), ("x".into(), String::new())]
        );
        assert!(!format!("{u:?}").contains("s@c/ret"));
    }

    #[test]
    fn an_at_sign_in_the_password() {
        let u = parse("redis://u:p@ss@h").unwrap();
        assert_eq!(u.password.as_deref(), Some("p@ss"));
        assert_eq!(u.host.as_deref(), Some("h"));
    }

    #[test]
    fn ipv6_literals() {
        let u = parse("cloudshells://[::1]:9443/r1").unwrap();
        assert_eq!((u.host.as_deref(), u.ipv6), (Some("::1"), true));
        assert_eq!(u.host_bracketed().as_deref(), Some("[::1]"));
        assert_eq!(u.port, Some(9443));
        assert!(parse("redis://[::1/0").is_err());
        assert!(parse("redis://[::1]x").is_err());
    }

    #[test]
    fn empty_hosts_and_no_authority() {
        let u = parse("cloudshell://:8030/r").unwrap();
        assert_eq!((u.host, u.port), (None, Some(8030)));
        let u = parse("redis://:pw@").unwrap();
        assert_eq!((u.host, u.password.as_deref()), (None, Some("pw")));
        let u = parse("cloudshell:?model=My+Mutex").unwrap();
        assert!(!u.has_authority);
        assert_eq!(
            u.query_pairs(Plus::Space).unwrap(),
            [("model".into(), "My Mutex".into())]
        );
        let u = parse("cloudshell:///other").unwrap();
        assert_eq!((u.host, u.path.as_str()), (None, "/other"));
    }

    #[test]
    fn encoding_round_trips() {
        for text in ["a b", "p@ss:w/rd%", "ünï+code", "x&y=z"] {
            assert_eq!(decode(&encode(text)).unwrap(), text);
            assert_eq!(decode(&encode_query_value(text)).unwrap(), text);
        }
        assert_eq!(encode("a:b/c d"), "a%3Ab%2Fc%20d");
        assert_eq!(encode_query_value("a:b/c d"), "a:b/c%20d");
    }

    #[test]
    fn malformed() {
        for bad in [
            "localhost",
            "redis://h:99999",
            "redis://h:0",
            "redis://h:1:2",
            "redis://h#f",
            "redis://u:%zz@h",
            "redis://u:%ff@h",
            "redis://h/?prefix=%4",
        ] {
            let result = parse(bad).and_then(|u| u.query_pairs(Plus::Literal));
            assert!(result.is_err(), "{bad}");
        }
    }
}
