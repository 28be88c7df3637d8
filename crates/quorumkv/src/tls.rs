//! TLS configuration from PEM files (rustls with ring; no system OpenSSL):
//! a server config for each listener and the client config peers present.
//!
//! - Client listener: `--cert`/`--key`, and with `--client-ca` every client
//!   must present a certificate that CA signed.
//! - Peer listener and peer client: `--peer-cert`/`--peer-key`/`--peer-ca`,
//!   mutual: a node accepts only peers whose certificate `--peer-ca` signed
//!   and calls only peers whose certificate it signed (for the host in their
//!   peer URL). A peer without such a certificate fails the handshake.
//!
//! Both speak HTTP/1.1 only (ALPN `http/1.1`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// A certificate chain and its private key, read from PEM files.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Identity {
    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_error(&self.cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(&self.cert, e))?;
        if chain.is_empty() {
            return Err(file_error(&self.cert, "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_error(&self.key, e))?;
        Ok((chain, key))
    }
}

/// The trust anchors in a CA file.
fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
        roots
            .add(cert.map_err(|e| file_error(ca, e))?)
            .map_err(|e| file_error(ca, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(ca, "no CA certificate in the file"));
    }
    Ok(Arc::new(roots))
}

const HTTP1: &[u8] = b"http/1.1";

/// A listener's config: `identity` is what it presents; with `client_ca`,
/// every connection must present a certificate that CA signed.
pub fn server_config(
    identity: &Identity,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain, key) = identity.load()?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                .build()
                .map_err(config_error)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| file_error(&identity.key, e))?;
    config.alpn_protocols = vec![HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// The config a node calls its peers with: it trusts `ca` only and presents
/// `identity`.
pub fn client_config(identity: &Identity, ca: &Path) -> Result<ClientConfig, TlsError> {
    let (chain, key) = identity.load()?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots(ca)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| file_error(&identity.key, e))?;
    config.alpn_protocols = vec![HTTP1.to_vec()];
    Ok(config)
}

/// Mutual TLS between peers: what the peer listener serves and what the peer
/// client presents, both from `--peer-cert`, `--peer-key`, `--peer-ca`.
#[derive(Debug, Clone)]
pub struct PeerTls {
    pub server: Arc<ServerConfig>,
    pub client: ClientConfig,
}

impl PeerTls {
    pub fn load(identity: &Identity, ca: &Path) -> Result<PeerTls, TlsError> {
        Ok(PeerTls {
            server: server_config(identity, Some(ca))?,
            client: client_config(identity, ca)?,
        })
    }
}
