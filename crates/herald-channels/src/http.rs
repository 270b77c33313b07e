//! The senders' HTTPS client: hyper-util's pooled client over rustls (aws-lc-rs), with the
//! Mozilla roots plus the configured extra roots, HTTP/2 negotiated by ALPN where the
//! vendor speaks it, and one deadline over each whole exchange.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The most of a vendor's answer that is read: their answers are small JSON.
const MAX_ANSWER: usize = 64 * 1024;

/// A vendor's answer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The trusted roots of outbound TLS: Mozilla's, plus those of `ca_file` (PEM).
pub(crate) fn roots(ca_file: Option<&Path>) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| anyhow::anyhow!("reading channels.ca_file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| anyhow::anyhow!("channels.ca_file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| anyhow::anyhow!("channels.ca_file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("channels.ca_file {} holds no certificate", path.display());
        }
    }
    Ok(Arc::new(roots))
}

/// A client certificate and its key (APNs certificate auth).
pub(crate) type ClientAuth = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A pooled HTTPS client.
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpsClient {
    /// HTTP/1.1 or HTTP/2, as the server's ALPN answer says.
    pub fn new(roots: Arc<RootCertStore>, auth: Option<ClientAuth>, timeout: Duration) -> anyhow::Result<Self> {
        Self::build(roots, auth, timeout, false)
    }

    /// HTTP/2 only (APNs): long-lived connections, pinged while idle so that a dead one is
    /// noticed before a send waits on it; a GOAWAY retires a connection and the pool opens
    /// another; streams beyond the server's MAX_CONCURRENT_STREAMS wait for a free one.
    pub(crate) fn h2(roots: Arc<RootCertStore>, auth: Option<ClientAuth>, timeout: Duration) -> anyhow::Result<Self> {
        Self::build(roots, auth, timeout, true)
    }

    fn build(
        roots: Arc<RootCertStore>,
        auth: Option<ClientAuth>,
        timeout: Duration,
        h2_only: bool,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(roots);
        let tls = match auth {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        };
        let connector = HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let connector =
            if h2_only { connector.enable_http2().build() } else { connector.enable_all_versions().build() };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(600))
            .http2_keep_alive_interval(Duration::from_secs(60))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .http2_keep_alive_while_idle(true)
            .http2_only(h2_only);
        Ok(HttpsClient { client: client.build(connector), timeout })
    }

    /// A client for other HTTP(S) endpoints than vendors' (receipt webhooks): HTTP/1.1 or
    /// HTTP/2 by ALPN, the Mozilla roots plus `ca_file`, `timeout` over each exchange.
    pub fn general(ca_file: Option<&Path>, timeout: Duration) -> anyhow::Result<Self> {
        Self::new(roots(ca_file)?, None, timeout)
    }

    /// POSTs `body` as JSON to `url` with `headers`: the answer's status, or why there was
    /// none (an invalid URL, a connection or TLS error, no answer within the deadline).
    pub async fn post_json(&self, url: &str, headers: &[(&str, String)], body: Bytes) -> Result<u16, String> {
        let mut req = Request::post(url).header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|e| format!("invalid request: {e}"))?;
        self.send(req).await.map(|a| a.status.as_u16())
    }

    /// Sends `req` and reads the answer, within the client's deadline.
    pub(crate) async fn send(&self, req: Request<Full<Bytes>>) -> Result<Answer, String> {
        let exchange = async {
            let res = self.client.request(req).await.map_err(|e| error_chain(&e))?;
            let (parts, body) = res.into_parts();
            let body = Limited::new(body, MAX_ANSWER).collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Answer { status: parts.status, headers: parts.headers, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }
}

/// An error with its causes, for the log and the send's reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
