//! TLS for pgsub's own connections: `sslmode` semantics as libpq defines them, on rustls
//! with the `ring` provider, and the `tls-server-end-point` hash SCRAM channel binding
//! needs.
//!
//! | sslmode       | TLS                     | certificate checks                          |
//! |---------------|-------------------------|---------------------------------------------|
//! | `disable`     | never                   | –                                           |
//! | `allow`/`prefer` | if the server agrees | none (as libpq without a root certificate)  |
//! | `require`     | always                  | none, unless a root certificate is present: then as `verify-ca` |
//! | `verify-ca`   | always                  | chain to `sslrootcert`                      |
//! | `verify-full` | always                  | chain to `sslrootcert` and host name        |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`; `sslrootcert=system` uses the
//! operating system's roots. A client certificate is presented when `sslcert`/`sslkey`
//! are given (or `~/.postgresql/postgresql.crt`/`.key` exist).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::conninfo::{Conninfo, SslMode};

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// Verification was asked for and there is no root certificate.
    #[error(
        "sslmode={mode} needs a root certificate to check the server against, and {path} does not exist: set sslrootcert=/path/to/ca.crt (or sslrootcert=system for the operating system's roots)"
    )]
    MissingRootCert {
        /// The sslmode in use.
        mode: String,
        /// Where pgsub looked.
        path: String,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read {what} from {path}: {detail}")]
    BadFile {
        /// Root certificate, client certificate or client key.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn home_postgresql(file: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql").join(file))
}

/// How certificates are checked, after resolving defaults and files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

fn load_roots(path: &str) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(TlsConfigError::BadFile {
                what: "the system root certificates",
                path: "system".into(),
                detail: "none found".into(),
            });
        }
        return Ok(roots);
    }
    let bad = |detail: String| TlsConfigError::BadFile {
        what: "the root certificate",
        path: path.to_owned(),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

/// Builds the rustls configuration for `info`, or `None` when TLS is not to be used.
pub fn client_config(info: &Conninfo) -> Result<Option<Arc<ClientConfig>>, TlsConfigError> {
    let explicit_root = info.sslrootcert.clone();
    let default_root = home_postgresql("root.crt").map(|p| p.display().to_string());
    let root_path = explicit_root.clone().or(default_root);
    let root_exists = |p: &Option<String>| {
        p.as_deref()
            .is_some_and(|p| p == "system" || Path::new(p).exists())
    };
    let verify = match info.sslmode {
        SslMode::Disable => return Ok(None),
        SslMode::Allow | SslMode::Prefer => Verify::Nothing,
        SslMode::Require if root_exists(&root_path) => Verify::Chain,
        SslMode::Require => Verify::Nothing,
        SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::ChainAndName,
    };
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if verify == Verify::Nothing {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        let path = root_path.unwrap_or_else(|| "~/.postgresql/root.crt".into());
        if !root_exists(&Some(path.clone())) {
            return Err(TlsConfigError::MissingRootCert {
                mode: info.sslmode.to_string(),
                path,
            });
        }
        let roots = load_roots(&path)?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsConfigError::BadFile {
                what: "the root certificate",
                path: path.clone(),
                detail: e.to_string(),
            })?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainVerifier {
                inner,
                check_name: verify == Verify::ChainAndName,
            }))
    };
    let cert = info
        .sslcert
        .clone()
        .or_else(|| home_postgresql("postgresql.crt").map(|p| p.display().to_string()))
        .filter(|p| Path::new(p).exists());
    let key = info
        .sslkey
        .clone()
        .or_else(|| home_postgresql("postgresql.key").map(|p| p.display().to_string()))
        .filter(|p| Path::new(p).exists());
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsConfigError::BadFile {
                    what: "the client certificate",
                    path: cert.clone(),
                    detail: e.to_string(),
                })?;
            let key_der =
                PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsConfigError::BadFile {
                    what: "the client key",
                    path: key.clone(),
                    detail: e.to_string(),
                })?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        _ => builder.with_no_client_auth(),
    };
    // PostgreSQL 17 direct TLS requires ALPN "postgresql"; for the SSLRequest flow it is
    // optional and harmless.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// The name rustls checks the certificate against (an IP address or a DNS name).
pub fn server_name(host: &str) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// `sslmode=require` without a root certificate: encryption without authentication of
/// the server, as libpq does. Handshake signatures are still verified.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

/// `verify-ca` (chain only) and `verify-full` (chain and host name).
#[derive(Debug)]
struct ChainVerifier {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The `tls-server-end-point` channel binding data of RFC 5929: a hash of the server's
/// certificate with the hash function of its signature algorithm, SHA-256 for MD5 and
/// SHA-1 signatures (and for algorithms the RFC does not cover).
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    let alg = match signature_algorithm_oid(cert_der) {
        Some(oid) if SHA384_OIDS.contains(&oid) => &ring::digest::SHA384,
        Some(oid) if SHA512_OIDS.contains(&oid) => &ring::digest::SHA512,
        _ => &ring::digest::SHA256,
    };
    ring::digest::digest(alg, cert_der).as_ref().to_vec()
}

// DER-encoded OID contents of signature algorithms hashing with SHA-384 / SHA-512.
const SHA384_OIDS: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
];
const SHA512_OIDS: [&[u8]; 2] = [
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
];

/// One DER element: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, … }, … }`
fn signature_algorithm_oid(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = der_element(cert)? else {
        return None;
    };
    let (_, _tbs, rest) = der_element(cert)?;
    let (0x30, alg, _) = der_element(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der_element(alg)? else {
        return None;
    };
    Some(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walk_never_panics_on_garbage() {
        for input in [
            &b""[..],
            b"\x30",
            b"\x30\x85",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x02\x30\x00",
        ] {
            assert_eq!(signature_algorithm_oid(input), None);
        }
    }

    #[test]
    fn sha256_is_the_default_hash() {
        assert_eq!(tls_server_end_point(b"not a certificate").len(), 32);
    }

    #[test]
    fn sha384_signed_certificate_uses_sha384() {
        // SEQUENCE { SEQUENCE {} , SEQUENCE { OID ecdsa-with-SHA384 } }
        let mut cert = vec![0x30, 14, 0x30, 0x00, 0x30, 10, 0x06, 8];
        cert.extend_from_slice(SHA384_OIDS[1]);
        assert_eq!(signature_algorithm_oid(&cert), Some(SHA384_OIDS[1]));
        assert_eq!(tls_server_end_point(&cert).len(), 48);
    }

    #[test]
    fn server_name_accepts_ip_and_dns() {
        assert!(matches!(server_name("127.0.0.1"), ServerName::IpAddress(_)));
        assert!(matches!(
            server_name("db.example.com"),
            ServerName::DnsName(_)
        ));
    }
}
