//! TLS for the MQTT and HTTPS listeners: rustls, TLS 1.2 and 1.3 only, the certificate
//! chain and its key read from PEM files. The files are read again when either changes
//! (checked every `tls.reload_secs`) or on SIGHUP: new handshakes get the new certificate,
//! open connections keep theirs, nothing restarts. A pair that does not load (a half-copied
//! file, a key of another certificate) keeps the one in use, with an error in the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::shutdown::Signal;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). With `key`, turns the TLS listeners on.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the chain's leaf.
    pub key: Option<PathBuf>,
    pub mqtts_addr: std::net::SocketAddr,
    pub https_addr: std::net::SocketAddr,
    /// Also serve the plain listeners (`http_addr`, `mqtt_addr`) when TLS is on; false: TLS
    /// only.
    pub plain: bool,
    /// Seconds between two checks of the files for a change.
    pub reload_secs: u64,
    /// PEM CA certificates: when set, `/admin/v1` also needs a client certificate they
    /// signed (presented to the HTTPS listener), besides the admin token.
    pub admin_client_ca: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            mqtts_addr: "0.0.0.0:8883".parse().expect("literal address"),
            https_addr: "0.0.0.0:8443".parse().expect("literal address"),
            plain: true,
            reload_secs: 10,
            admin_client_ca: None,
        }
    }
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert.as_deref()?, self.key.as_deref()?))
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cert.is_some() != self.key.is_some() {
            problems.push("tls.cert and tls.key: set both (TLS on) or neither".into());
        }
        if self.files().is_none() && !self.plain {
            problems.push("tls.plain = false needs tls.cert and tls.key: no listener would be left".into());
        }
        if self.reload_secs == 0 {
            problems.push("tls.reload_secs must be at least 1".into());
        }
        if self.admin_client_ca.is_some() && self.files().is_none() {
            problems
                .push("tls.admin_client_ca needs tls.cert and tls.key (client certificates come over HTTPS)".into());
        }
        problems
    }
}

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    files: (PathBuf, PathBuf),
    /// Modification times of the files as last loaded.
    stamp: RwLock<(Option<SystemTime>, Option<SystemTime>)>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

impl Certificates {
    /// Loads the pair; an error names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Certificates>> {
        let stamp = stamps(cert, key);
        let current = read_pair(cert, key)?;
        Ok(Arc::new(Certificates {
            current: RwLock::new(Arc::new(current)),
            files: (cert.to_path_buf(), key.to_path_buf()),
            stamp: RwLock::new(stamp),
        }))
    }

    /// The leaf certificate in use (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.read().cert[0].clone()
    }

    /// Reads the files again if they changed since the last load (or always, when
    /// `force`). True when a new certificate is in use.
    pub fn reload(&self, force: bool) -> bool {
        let (cert, key) = (&self.files.0, &self.files.1);
        let stamp = stamps(cert, key);
        if !force && stamp == *self.stamp.read() {
            return false;
        }
        match read_pair(cert, key) {
            Ok(pair) => {
                *self.current.write() = Arc::new(pair);
                *self.stamp.write() = stamp;
                tracing::info!(cert = %cert.display(), "TLS certificate loaded");
                true
            }
            Err(e) => {
                // Remembered as seen: the same broken files are not reported every check.
                *self.stamp.write() = stamp;
                tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; the previous one stays in use");
                false
            }
        }
    }

    /// A rustls server configuration on these certificates offering `alpn`; with
    /// `client_roots`, clients may present a certificate, which must chain to one of them
    /// (one that does not is refused in the handshake; none is allowed).
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
        client_roots: Option<Arc<rustls::RootCertStore>>,
    ) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("the provider supports TLS 1.2 and 1.3");
        let builder = match client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .allow_unauthenticated()
                    .build()
                    .context("tls.admin_client_ca: no usable CA certificate")?,
            ),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Reloads on a change of the files (checked every `every`) and on `hangups` (SIGHUP),
    /// until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        mut hangups: Option<tokio::signal::unix::Signal>,
        every: Duration,
        shutdown: Signal,
    ) {
        let mut ticks = crate::shutdown::ticks(every);
        loop {
            let force = tokio::select! {
                more = shutdown.every(&mut ticks) => if more { false } else { return },
                Some(()) = async { hangups.as_mut()?.recv().await } => true,
            };
            self.reload(force);
        }
    }
}

/// SIGHUP, taken over from its default action (ending the process) from the moment this
/// returns; `None` (logged) where no handler can be installed.
pub fn hangups() -> Option<tokio::signal::unix::Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler");
            None
        }
    }
}

/// Without TLS: answers SIGHUP with a log line instead of ending the process, until
/// `shutdown`.
pub async fn ignore_hangups(mut hangups: tokio::signal::unix::Signal, shutdown: Signal) {
    loop {
        tokio::select! {
            Some(()) = hangups.recv() => tracing::info!("SIGHUP: nothing to reload (no TLS certificate)"),
            _ = shutdown.wait() => return,
        }
    }
}

/// The CA certificates of `tls.admin_client_ca`.
pub fn client_roots(file: &Path) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(file).map_err(|e| anyhow::anyhow!("{}: not a PEM file ({e})", file.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("{}: not a PEM certificate ({e})", file.display()))?;
        roots.add(cert).with_context(|| format!("{}: a certificate that is no CA", file.display()))?;
    }
    if roots.is_empty() {
        bail!("{}: no certificate in the file", file.display());
    }
    Ok(Arc::new(roots))
}

fn stamps(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn read_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain ({e})", cert.display()))?;
    if chain.is_empty() {
        bail!("{}: no certificate in the file", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key ({e})", key.display()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, private, &provider)
        .with_context(|| format!("{} and {}: the key does not fit the certificate", key.display(), cert.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_changed_pair_is_taken_and_a_broken_one_leaves_the_old_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let (c1, k1) = pair("one.example");
        std::fs::write(&cert, &c1).unwrap();
        std::fs::write(&key, &k1).unwrap();
        let certs = Certificates::load(&cert, &key).unwrap();
        let first = certs.leaf();
        assert!(!certs.reload(false), "unchanged files are not read again");

        // A key of another certificate: refused, the first stays.
        let (c2, k2) = pair("two.example");
        std::fs::write(&cert, &c2).unwrap();
        assert!(!certs.reload(true));
        assert_eq!(certs.leaf(), first);

        std::fs::write(&key, &k2).unwrap();
        assert!(certs.reload(true));
        assert_ne!(certs.leaf(), first);
        assert_eq!(certs.leaf().as_ref(), CertificateDer::from_pem_slice(c2.as_bytes()).unwrap().as_ref());
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, pair("x").1).unwrap();
        let e = format!("{:#}", Certificates::load(&cert, &key).unwrap_err());
        assert!(e.contains("cert.pem") && e.contains("no certificate"), "{e}");
        let missing = format!("{:#}", Certificates::load(&dir.path().join("nope.pem"), &key).unwrap_err());
        assert!(missing.contains("nope.pem"), "{missing}");
    }

    #[test]
    fn cert_and_key_come_together() {
        let mut cfg = TlsConfig { cert: Some("c.pem".into()), ..TlsConfig::default() };
        assert_eq!(cfg.problems().len(), 1);
        cfg.key = Some("k.pem".into());
        assert!(cfg.problems().is_empty());
        let off = TlsConfig { plain: false, ..TlsConfig::default() };
        assert_eq!(off.problems().len(), 1);
    }
}
