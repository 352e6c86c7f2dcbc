//! Backends are URLs: `file:///DIR`, `redis://…`, `cloudshell://…`.
//! One module per backend; this module only parses the URL and dispatches.

pub mod cloudshell;
pub mod file;
pub mod redis;
pub mod url;

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub enum BackendConfig {
    File(file::FileConfig),
    Redis(redis::RedisConfig),
    CloudShell(cloudshell::CloudShellConfig),
}

const SCHEMES_HINT: &str = "use file:///DIR, redis://HOST[:PORT][/DB], rediss://…, or cloudshell://HOST[:PORT]/RESERVATION";

impl BackendConfig {
    /// Parse `--backend` / `LOCKRUN_BACKEND`. No URL means the file backend
    /// in its default directory.
    pub fn parse(url: Option<&str>) -> Result<Self> {
        let url = url.map(str::trim).unwrap_or_default();
        if url.is_empty() || url == "file:" || url == "file://" {
            return Ok(BackendConfig::File(file::FileConfig { dir: None }));
        }
        if let Some(cloudshell) = cloudshell::CloudShellConfig::from_script_environment(url)? {
            return Ok(BackendConfig::CloudShell(cloudshell));
        }
        let Some(scheme) = self::url::scheme(url) else {
            return Err(Error::usage(format!(
                "invalid backend URL {:?}: no scheme; {SCHEMES_HINT}",
                self::url::redacted(url)
            )));
        };
        match scheme.as_str() {
            "file" => parse_file_url(url).map(BackendConfig::File),
            "redis" | "rediss" => redis::RedisConfig::parse(url).map(BackendConfig::Redis),
            "cloudshell" | "cloudshells" => {
                cloudshell::CloudShellConfig::parse(url).map(BackendConfig::CloudShell)
            }
            other => Err(Error::usage(format!(
                "unknown backend scheme {other:?}; {SCHEMES_HINT}"
            ))),
        }
    }
}

/// `file:///DIR`. The directory is taken literally, not percent-decoded:
/// that is how the file backend has always read it and writes it back for
/// the child (`LOCKRUN_BACKEND=file:///DIR`), and a local path needs no
/// host, user or query, so nothing else of a URL applies.
fn parse_file_url(url: &str) -> Result<file::FileConfig> {
    let path = url
        .strip_prefix("file://")
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| {
            Error::usage(format!(
                "invalid file backend URL {:?}: use file:///absolute/dir (three slashes)",
                self::url::redacted(url)
            ))
        })?;
    if path.contains('\0') {
        return Err(Error::usage("invalid file backend URL: NUL byte in path"));
    }
    Ok(file::FileConfig {
        dir: Some(PathBuf::from(path)),
    })
}

/// Run `$body` with `$backend` bound to the concrete backend for `$config`.
/// Keeps the code generic (no `dyn`), one instantiation per backend.
#[macro_export]
macro_rules! with_backend {
    ($config:expr, |$backend:ident| $body:expr) => {
        match $config {
            $crate::backend::BackendConfig::File(config) => {
                let mut $backend = $crate::backend::file::FileBackend::open(&config)?;
                $body
            }
            $crate::backend::BackendConfig::Redis(config) => {
                let mut $backend = $crate::backend::redis::RedisBackend::connect(config).await?;
                $body
            }
            $crate::backend::BackendConfig::CloudShell(config) => {
                let mut $backend =
                    $crate::backend::cloudshell::CloudShellBackend::connect(config).await?;
                $body
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls() {
        assert!(matches!(
            BackendConfig::parse(None),
            Ok(BackendConfig::File(file::FileConfig { dir: None }))
        ));
        assert!(BackendConfig::parse(Some("file:relative")).is_err());
        assert!(BackendConfig::parse(Some("nope://x")).is_err());
        assert!(BackendConfig::parse(Some("no-scheme")).is_err());
    }
}
