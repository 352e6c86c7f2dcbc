//! TLS for the PostgreSQL backend, the way libpq does it: `sslmode` says
//! whether TLS is tried or required and how much of the server's
//! certificate is checked, `sslrootcert` names the CAs to check it against
//! (a PEM file, `~/.postgresql/root.crt` by default, or `system`).
//!
//! | sslmode | TLS | certificate checked |
//! | --- | --- | --- |
//! | disable (allow) | never | — |
//! | prefer (default) | if the server offers it | no |
//! | require | always | no; like verify-ca when a root file exists |
//! | verify-ca | always | chain to a root in sslrootcert |
//! | verify-full | always | chain, and the host name or IP in the certificate |
//!
//! Not checking at `prefer`/`require` is libpq's choice, kept so that a URL
//! means the same to lockrun and to psql; the handshake signatures are
//! still verified (the peer has the key of the certificate it showed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// libpq's `sslmode` (`allow`, "plain first, then TLS", is read as
/// `disable`: tokio-postgres has no plain-then-TLS retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "disable" | "allow" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    File(PathBuf),
    /// The system's trusted roots (libpq 16's `sslrootcert=system`).
    System,
}

impl RootCert {
    pub(crate) fn parse(text: &str) -> Self {
        if text == "system" {
            RootCert::System
        } else {
            RootCert::File(PathBuf::from(text))
        }
    }

    pub(crate) fn as_url_value(&self) -> String {
        match self {
            RootCert::File(path) => path.display().to_string(),
            RootCert::System => "system".into(),
        }
    }
}

/// libpq's default root file, `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".postgresql/root.crt"))
}

/// How much of the certificate a connection checks.
enum Check {
    Nothing,
    Chain(RootCertStore),
    Full(RootCertStore),
}

/// The connector for `mode`/`root` and the mode tokio-postgres negotiates
/// with; bad or missing root files are usage errors (64), found before
/// anything connects.
pub(crate) fn connector(
    mode: SslMode,
    root: Option<&RootCert>,
) -> Result<(MakeRustlsConnect, WireMode)> {
    let default_root = || default_root_file().filter(|p| p.is_file());
    let check = match mode {
        SslMode::Disable | SslMode::Prefer => Check::Nothing,
        // libpq: "if a root CA file exists, require behaves like verify-ca".
        SslMode::Require => match root {
            Some(root) => Check::Chain(roots(root)?),
            None => match default_root() {
                Some(file) => Check::Chain(roots(&RootCert::File(file))?),
                None => Check::Nothing,
            },
        },
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let store = match root {
                Some(root) => roots(root)?,
                None => match default_root() {
                    Some(file) => roots(&RootCert::File(file))?,
                    None => {
                        return Err(Error::usage(format!(
                            "sslmode={} checks the server's certificate, but there is no root certificate file ({}): add ?sslrootcert=/path/to/ca.pem (or sslrootcert=system) to the URL, or set PGSSLROOTCERT",
                            mode.as_str(),
                            default_root_file().map_or_else(
                                || "~/.postgresql/root.crt".into(),
                                |p| p.display().to_string()
                            )
                        )));
                    }
                },
            };
            if mode == SslMode::VerifyCa {
                Check::Chain(store)
            } else {
                Check::Full(store)
            }
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(Unchecked(provider.clone())),
        Check::Chain(store) => Arc::new(ChainOnly(webpki(store, &provider)?)),
        Check::Full(store) => webpki(store, &provider)?,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let wire = match mode {
        SslMode::Disable => WireMode::Disable,
        SslMode::Prefer => WireMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
    };
    Ok((MakeRustlsConnect::new(config), wire))
}

fn webpki(
    store: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| {
            Error::usage(format!(
                "the postgres root certificates are not usable: {e}"
            ))
        })
}

fn roots(root: &RootCert) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match root {
        RootCert::File(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::usage(format!(
                    "cannot read the postgres root certificate file {}: {e}",
                    path.display()
                ))
            })?;
            let not_pem = |why: String| {
                Error::usage(format!(
                    "the postgres root certificate file {} is not usable: {why}",
                    path.display()
                ))
            };
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| not_pem(e.to_string()))?;
                store.add(cert).map_err(|e| not_pem(e.to_string()))?;
            }
            if store.is_empty() {
                return Err(not_pem("no PEM certificate in it".into()));
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::usage(
                    "sslrootcert=system: no trusted root certificates found on this system (install ca-certificates, or name a file)",
                ));
            }
        }
    }
    Ok(store)
}

/// sslmode=verify-ca: the chain must lead to a trusted root; the name in
/// the certificate is not looked at.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means
        // the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// sslmode=prefer/require without a root file: encryption only, as libpq.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        for text in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(SslMode::parse(text).unwrap().as_str(), text);
        }
        assert_eq!(SslMode::parse("allow"), Some(SslMode::Disable));
        assert_eq!(SslMode::parse("bogus"), None);
    }

    #[test]
    fn missing_or_bad_root_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = RootCert::File(dir.path().join("nope.pem"));
        for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
            let err = connector(mode, Some(&missing)).err().unwrap();
            assert!(matches!(err, Error::Usage(_)), "{err}");
        }
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = connector(SslMode::VerifyFull, Some(&RootCert::File(junk)))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        // Nothing to check: no file is read.
        assert!(connector(SslMode::Prefer, Some(&missing)).is_ok());
    }
}
