//! Backends are URLs: `file:///DIR`, `redis://…`, `cloudshell://…`, `postgres://…`, `etcd://…`.
//! One module per backend; this module only parses the URL and dispatches.

pub(crate) mod cloudshell;
pub(crate) mod etcd;
pub(crate) mod file;
pub(crate) mod postgres;
pub(crate) mod redis;
pub(crate) mod url;

use std::path::PathBuf;
#[cfg(target_arch = "x86_64")]
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::{
    Backend, Inspect, Interrupts, Lease, LockName, LockRequest, Renewal, SlotState, Wait,
    WaitDisplay,
};
use crate::os::BootTime;

#[derive(Debug, Clone)]
pub(crate) enum BackendConfig {
    File(file::FileConfig),
    Redis(redis::RedisConfig),
    CloudShell(cloudshell::CloudShellConfig),
    Postgres(postgres::PgConfig),
    Etcd(etcd::EtcdConfig),
}

const SCHEMES_HINT: &str = "use file:///DIR, redis://HOST[:PORT][/DB], rediss://…, cloudshell://HOST[:PORT]/RESERVATION, postgres://[USER@]HOST[:PORT]/DB, or etcd://HOST[:PORT][,HOST[:PORT]...]";

impl BackendConfig {
    /// Parse `--backend` / `LOCKRUN_BACKEND`. No URL means the file backend
    /// in its default directory.
    pub(crate) fn parse(url: Option<&str>) -> Result<Self> {
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
            "postgres" | "postgresql" => {
                postgres::PgConfig::parse(url).map(BackendConfig::Postgres)
            }
            "etcd" | "etcds" => etcd::EtcdConfig::parse(url).map(BackendConfig::Etcd),
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

/// Install the one TLS crypto provider built in (ring), before any HTTP
/// client is built: reqwest, built without a provider of its own, would
/// otherwise panic. An error means one is installed already.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `request`, the first a network backend sends, awaited while std's
/// CPU-feature cache is filled.
///
/// redis-rs's reply parser asks (through memchr) whether the CPU has AVX2
/// the first time it runs, and std finds out by running CPUID about a dozen
/// times. In a virtual machine each CPUID traps to the hypervisor: 9 µs
/// each on the benchmark machine, 0.12 ms in all, a fifth of what an
/// uncontended Redis run cost beyond a file run. Asked here instead, after
/// the request has gone out and before its reply is read, the traps take
/// time the process would spend waiting anyway. Two yields, because the
/// connection's task writes the request on its second turn (seen in gdb:
/// with one, the CPUIDs came before the `writev`). Should the runtime poll
/// in another order, they cost what they did before, nothing more.
/// (A reply parsed while connecting, to AUTH or SELECT, pays them there.)
#[cfg(target_arch = "x86_64")]
pub(crate) async fn with_cpu_features_detected<F: Future>(request: F) -> F::Output {
    static ASKED: AtomicBool = AtomicBool::new(false);
    if ASKED.swap(true, Ordering::Relaxed) {
        return request.await;
    }
    let detect = async {
        tokio::task::yield_now().await;
        tokio::task::yield_now().await;
        let _ = std::arch::is_x86_feature_detected!("avx2");
    };
    let ((), output) = tokio::join!(detect, request);
    output
}

/// Elsewhere there is no CPUID to hide.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) async fn with_cpu_features_detected<F: Future>(request: F) -> F::Output {
    request.await
}

/// The backend a URL names, connected. Delegates every call to the one it
/// holds, so the acquire loop, the supervisor and `status`/`list` are
/// compiled once, not once per backend.
// One per process, so the size of its largest variant costs nothing worth
// a box.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AnyBackend {
    File(file::FileBackend),
    Redis(redis::RedisBackend),
    CloudShell(cloudshell::CloudShellBackend),
    Postgres(postgres::PgBackend),
    Etcd(etcd::EtcdBackend),
}

/// A lease of one of [`AnyBackend`]'s backends.
pub(crate) enum AnyLease {
    File(file::FileLease),
    Redis(redis::RedisLease),
    CloudShell(cloudshell::CloudShellLease),
    Postgres(postgres::PgLease),
    Etcd(etcd::EtcdLease),
}

impl AnyBackend {
    /// Open or connect the backend `config` names: an unreachable server
    /// (69) or refused credentials (77) are reported here, before anything
    /// else happens.
    pub(crate) async fn connect(config: BackendConfig) -> Result<Self> {
        Ok(match config {
            BackendConfig::File(config) => AnyBackend::File(file::FileBackend::open(&config)?),
            BackendConfig::Redis(config) => {
                AnyBackend::Redis(redis::RedisBackend::connect(config).await?)
            }
            BackendConfig::CloudShell(config) => {
                AnyBackend::CloudShell(cloudshell::CloudShellBackend::connect(config).await?)
            }
            BackendConfig::Postgres(config) => {
                AnyBackend::Postgres(postgres::PgBackend::connect(config).await?)
            }
            BackendConfig::Etcd(config) => {
                AnyBackend::Etcd(etcd::EtcdBackend::connect(config).await?)
            }
        })
    }
}

/// `$call` on whichever backend `$backend` holds.
macro_rules! delegate {
    ($backend:expr, |$b:ident| $call:expr) => {
        match $backend {
            AnyBackend::File($b) => $call,
            AnyBackend::Redis($b) => $call,
            AnyBackend::CloudShell($b) => $call,
            AnyBackend::Postgres($b) => $call,
            AnyBackend::Etcd($b) => $call,
        }
    };
}

/// A lease handed to a backend it did not come from: a bug, never input.
fn foreign_lease() -> Error {
    Error::internal("a lease was handed to a backend it does not belong to")
}

impl Lease for AnyLease {
    fn slot(&self) -> u32 {
        match self {
            AnyLease::File(l) => l.slot(),
            AnyLease::Redis(l) => l.slot(),
            AnyLease::CloudShell(l) => l.slot(),
            AnyLease::Postgres(l) => l.slot(),
            AnyLease::Etcd(l) => l.slot(),
        }
    }
    fn fence(&self) -> Option<u64> {
        match self {
            AnyLease::File(l) => l.fence(),
            AnyLease::Redis(l) => l.fence(),
            AnyLease::CloudShell(l) => l.fence(),
            AnyLease::Postgres(l) => l.fence(),
            AnyLease::Etcd(l) => l.fence(),
        }
    }
    fn expires_at(&self) -> Option<BootTime> {
        match self {
            AnyLease::File(l) => l.expires_at(),
            AnyLease::Redis(l) => l.expires_at(),
            AnyLease::CloudShell(l) => l.expires_at(),
            AnyLease::Postgres(l) => l.expires_at(),
            AnyLease::Etcd(l) => l.expires_at(),
        }
    }
    fn lock_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            AnyLease::File(l) => l.lock_fd(),
            _ => None,
        }
    }
    fn env(&self) -> Vec<(String, String)> {
        match self {
            AnyLease::Etcd(l) => l.env(),
            _ => Vec::new(),
        }
    }
}

impl Backend for AnyBackend {
    type Lease = AnyLease;

    async fn acquire<I: Interrupts, D: WaitDisplay>(
        &mut self,
        req: &LockRequest,
        wait: &mut Wait<'_, I, D>,
    ) -> Result<AnyLease> {
        Ok(match self {
            AnyBackend::File(b) => AnyLease::File(b.acquire(req, wait).await?),
            AnyBackend::Redis(b) => AnyLease::Redis(b.acquire(req, wait).await?),
            AnyBackend::CloudShell(b) => AnyLease::CloudShell(b.acquire(req, wait).await?),
            AnyBackend::Postgres(b) => AnyLease::Postgres(b.acquire(req, wait).await?),
            AnyBackend::Etcd(b) => AnyLease::Etcd(b.acquire(req, wait).await?),
        })
    }

    fn renew_interval(&self, req: &LockRequest) -> Option<Duration> {
        delegate!(self, |b| b.renew_interval(req))
    }

    async fn renew(&mut self, lease: &mut AnyLease) -> Result<Renewal> {
        match (self, lease) {
            (AnyBackend::File(b), AnyLease::File(l)) => b.renew(l).await,
            (AnyBackend::Redis(b), AnyLease::Redis(l)) => b.renew(l).await,
            (AnyBackend::CloudShell(b), AnyLease::CloudShell(l)) => b.renew(l).await,
            (AnyBackend::Postgres(b), AnyLease::Postgres(l)) => b.renew(l).await,
            (AnyBackend::Etcd(b), AnyLease::Etcd(l)) => b.renew(l).await,
            _ => Err(foreign_lease()),
        }
    }

    async fn loss_hint(&mut self, lease: &mut AnyLease) {
        match (self, lease) {
            (AnyBackend::File(b), AnyLease::File(l)) => b.loss_hint(l).await,
            (AnyBackend::Redis(b), AnyLease::Redis(l)) => b.loss_hint(l).await,
            (AnyBackend::CloudShell(b), AnyLease::CloudShell(l)) => b.loss_hint(l).await,
            (AnyBackend::Postgres(b), AnyLease::Postgres(l)) => b.loss_hint(l).await,
            (AnyBackend::Etcd(b), AnyLease::Etcd(l)) => b.loss_hint(l).await,
            _ => std::future::pending().await,
        }
    }

    async fn release(&mut self, lease: AnyLease) -> Result<()> {
        match (self, lease) {
            (AnyBackend::File(b), AnyLease::File(l)) => b.release(l).await,
            (AnyBackend::Redis(b), AnyLease::Redis(l)) => b.release(l).await,
            (AnyBackend::CloudShell(b), AnyLease::CloudShell(l)) => b.release(l).await,
            (AnyBackend::Postgres(b), AnyLease::Postgres(l)) => b.release(l).await,
            (AnyBackend::Etcd(b), AnyLease::Etcd(l)) => b.release(l).await,
            _ => Err(foreign_lease()),
        }
    }

    fn release_timeout(&self) -> Duration {
        delegate!(self, |b| b.release_timeout())
    }
}

impl Inspect for AnyBackend {
    async fn status(&mut self, name: &LockName, slots: Option<u32>) -> Result<Vec<SlotState>> {
        delegate!(self, |b| b.status(name, slots).await)
    }

    async fn list(&mut self) -> Result<Vec<SlotState>> {
        delegate!(self, |b| b.list().await)
    }

    async fn note(&mut self) -> Option<String> {
        delegate!(self, |b| b.note().await)
    }

    async fn force_release(
        &mut self,
        name: &LockName,
        slots: Option<u32>,
    ) -> Result<Vec<SlotState>> {
        delegate!(self, |b| b.force_release(name, slots).await)
    }

    fn display_url(&self) -> String {
        delegate!(self, |b| b.display_url())
    }
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
