//! TLS to PostgreSQL with rustls, configured as libpq reads it: `sslmode` (`disable`, `prefer`, `require`,
//! `verify-ca`, `verify-full`) and `sslrootcert` in the connection string.
//!
//! What each mode checks, as libpq does: `prefer` tries TLS and falls back to plain TCP; `require` insists on TLS but
//! trusts any certificate; `verify-ca` also checks that a trusted authority signed the server's certificate;
//! `verify-full` also checks that the certificate names the host connected to. The authorities are those of the
//! `sslrootcert` file (PEM), or the system's when it is not given.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use sundial_store::StoreError;

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS settings of a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
}

/// Splits `sslmode`, `sslrootcert` and Sundial's `pool_mode` out of a connection string (a `postgres://` URL or
/// `key=value` words), which tokio-postgres reads only in part: answers the rest of the string, the TLS settings
/// (`prefer` by default) and whether the connection goes through a pooler in transaction mode (`pool_mode=transaction`,
/// as PgBouncer calls it; `session`, the default, is a plain connection).
pub(crate) fn split_settings(url: &str) -> Result<(String, TlsSettings, bool), StoreError> {
    let mut settings = TlsSettings { mode: SslMode::Prefer, root_cert: None };
    let mut transaction_pooling = false;
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "pool_mode" => {
                transaction_pooling = match value {
                    "session" => false,
                    "transaction" => true,
                    other => {
                        return Err(StoreError::Database(format!(
                            "bad PostgreSQL URL: pool_mode {other:?} is not one of session, transaction"
                        )))
                    }
                };
                Ok(true)
            }
            "sslmode" => {
                settings.mode = match value {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(StoreError::Database(format!(
                            "bad PostgreSQL URL: sslmode {other:?} is not one of disable, prefer, require, verify-ca, \
                             verify-full"
                        )))
                    }
                };
                Ok(true)
            }
            "sslrootcert" => {
                settings.root_cert = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if let Some((base, query)) = url.split_once('?').filter(|_| url.contains("://")) {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, &percent_decode(value))? {
                kept.push(pair);
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if url.contains("://") {
        url.to_owned()
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if !take(key.trim(), value.trim().trim_matches('\'').trim_matches('"'))? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    Ok((rest, settings, transaction_pooling))
}

/// Decodes `%XX` escapes (a path in a URL).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|hex| std::str::from_utf8(hex).ok());
        match (bytes[at], hex.and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                at += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

impl TlsSettings {
    /// tokio-postgres's own mode: whether it asks for TLS and whether it may go without.
    pub(crate) fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The connector: rustls with the verification the mode asks for.
    pub(crate) fn connector(&self) -> Result<RustlsConnect, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| StoreError::Database(format!("cannot set up TLS: {error}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(AnyCertificate(provider)),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = self.roots()?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|error| StoreError::Database(format!("cannot set up TLS: {error}")))?;
                if self.mode == SslMode::VerifyCa {
                    Arc::new(AuthorityOnly(webpki))
                } else {
                    webpki
                }
            }
        };
        let config = builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth();
        Ok(RustlsConnect { config: Arc::new(config) })
    }

    /// The trusted authorities: the `sslrootcert` file, or the system's.
    fn roots(&self) -> Result<RootCertStore, StoreError> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                let unreadable = |error: &dyn std::fmt::Display| {
                    StoreError::Database(format!("sslrootcert {}: {error}", path.display()))
                };
                for certificate in CertificateDer::pem_file_iter(path).map_err(|error| unreadable(&error))? {
                    let certificate = certificate.map_err(|error| unreadable(&error))?;
                    roots.add(certificate).map_err(|error| unreadable(&error))?;
                }
                if roots.is_empty() {
                    return Err(unreadable(&"holds no certificate"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for certificate in found.certs {
                    let _ = roots.add(certificate);
                }
                if roots.is_empty() {
                    return Err(StoreError::Database(
                        "sslmode verify-ca and verify-full need sslrootcert (no system certificates found)".into(),
                    ));
                }
            }
        }
        Ok(roots)
    }
}

/// `require` (and `prefer`): encryption without checking who answers, as libpq does without a root certificate. The
/// handshake's signatures are still checked, so the session is with the holder of the certificate shown.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the certificate must chain to a trusted authority; the name in it is not compared with the host.
#[derive(Debug)]
struct AuthorityOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AuthorityOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Makes rustls connections for tokio-postgres.
#[derive(Clone)]
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnector, Self::Error> {
        let name = ServerName::try_from(domain.to_owned())?;
        Ok(RustlsConnector { config: self.config.clone(), name })
    }
}

/// Connects one stream.
pub(crate) struct RustlsConnector {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            Ok(RustlsStream(connector.connect(self.name, stream).await?))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_settings_are_split_out_of_urls_and_key_value_strings() {
        let (rest, settings, pooled) = split_settings(
            "postgres://u@db:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .expect("split");
        assert_eq!(rest, "postgres://u@db:5432/app?connect_timeout=3");
        assert_eq!(settings, TlsSettings { mode: SslMode::VerifyFull, root_cert: Some("/etc/ca.pem".into()) });
        assert!(!pooled);
        let (rest, settings, _) = split_settings("postgres://u@db/app").expect("split");
        assert_eq!((rest.as_str(), settings.mode), ("postgres://u@db/app", SslMode::Prefer));
        let (rest, settings, pooled) =
            split_settings("host=db user=u sslmode=require dbname=app pool_mode=transaction").expect("split");
        assert_eq!((rest.as_str(), settings.mode, pooled), ("host=db user=u dbname=app", SslMode::Require, true));
        let (rest, _, pooled) = split_settings("postgres://u@db:6432/app?pool_mode=transaction").expect("split");
        assert_eq!((rest.as_str(), pooled), ("postgres://u@db:6432/app", true));
        let error = split_settings("postgres://u@db/app?sslmode=verify").expect_err("unknown mode");
        assert!(error.to_string().contains("sslmode \"verify\""), "{error}");
        let error = split_settings("postgres://u@db/app?pool_mode=statement").expect_err("statement pooling");
        assert!(error.to_string().contains("pool_mode \"statement\""), "{error}");
    }
}
