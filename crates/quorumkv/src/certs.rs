//! `quorumkv certs`: a throwaway certificate authority for a test or local
//! cluster (rcgen), in the layout `scripts/cluster.sh up --secure` uses.
//!
//! Two CAs, so that a client certificate can never pass as a peer:
//!
//! ```text
//! peer-ca.crt   peer-ca.key     signs the peers' certificates (--peer-ca)
//! node-N-peer.crt/.key          node N towards its peers, server and client (--peer-cert/--peer-key)
//! ca.crt        ca.key          signs the client listener's and the clients' certificates
//! node-N.crt    node-N.key      node N's client listener (--cert/--key); clients trust ca.crt
//! client.crt    client.key      a client certificate (for --client-ca ca.crt)
//! ```
//!
//! Keys are written readable by their owner only. For production, use your
//! own CA: these certificates are valid for a year and their CA keys sit
//! beside them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory to write into; it must not hold a CA already.
    #[arg(long)]
    pub out: PathBuf,

    /// Node certificates to make: node-1 .. node-N.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,

    /// Host names and IP addresses every node certificate is valid for.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    pub hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0} exists: refusing to overwrite a CA (use an empty --out directory)")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "quorumkv");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Valid from an hour ago (clocks differ a little) for a year.
fn validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
}

fn authority(common_name: &str) -> Result<Authority, CertsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Authority { cert, key })
}

fn leaf(
    ca: &Authority,
    common_name: &str,
    hosts: &[String],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> Result<(rcgen::Certificate, KeyPair), CertsError> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params.distinguished_name = name(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    Ok((cert, key))
}

fn write(path: PathBuf, text: &str, private: bool) -> Result<(), CertsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CertsError::Io {
        path: path.clone(),
        source,
    };
    let mode = if private { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

fn pair(
    dir: &Path,
    stem: &str,
    cert: &rcgen::Certificate,
    key: &KeyPair,
) -> Result<(), CertsError> {
    write(dir.join(format!("{stem}.crt")), &cert.pem(), false)?;
    write(dir.join(format!("{stem}.key")), &key.serialize_pem(), true)
}

/// Writes both CAs and every certificate into `args.out`.
pub fn run(args: &CertsArgs) -> Result<(), CertsError> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Io {
        path: dir.clone(),
        source,
    })?;
    for existing in ["ca.crt", "peer-ca.crt"] {
        let path = dir.join(existing);
        if path.exists() {
            return Err(CertsError::Exists(path));
        }
    }
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let peer_ca = authority("quorumkv peer CA")?;
    let client_ca = authority("quorumkv client CA")?;
    pair(dir, "peer-ca", &peer_ca.cert, &peer_ca.key)?;
    pair(dir, "ca", &client_ca.cert, &client_ca.key)?;
    for id in 1..=args.nodes {
        let cn = format!("node-{id}");
        let (cert, key) = leaf(&peer_ca, &cn, &args.hosts, vec![ServerAuth, ClientAuth])?;
        pair(dir, &format!("node-{id}-peer"), &cert, &key)?;
        let (cert, key) = leaf(&client_ca, &cn, &args.hosts, vec![ServerAuth])?;
        pair(dir, &cn, &cert, &key)?;
    }
    let (cert, key) = leaf(&client_ca, "client", &[], vec![ClientAuth])?;
    pair(dir, "client", &cert, &key)
}
