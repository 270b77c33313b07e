//! A minimal HTTP/1.1 client on hyper, for the CLI (`herald app create` calls the admin
//! API), the benchmark and the behaviour tests. One connection per request: simple, and
//! fast enough for tools.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// A response: status, headers and body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header's value as text, if it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How long a request may take, from connecting to the last byte of the answer.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Sends one request to `http://{addr}{path_and_query}`; an error when no whole answer
/// arrives within [`TIMEOUT`].
pub async fn request(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> anyhow::Result<Response> {
    match tokio::time::timeout(TIMEOUT, exchange(addr, method, path_and_query, headers, body)).await {
        Ok(answer) => answer,
        Err(_) => anyhow::bail!("no answer from {addr} within {} s", TIMEOUT.as_secs()),
    }
}

async fn exchange(
    addr: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut builder = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header("host", addr)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let response = sender.send_request(builder.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Response { status, headers, body })
}

/// Splits `http://host:port` into `host:port`.
pub fn authority(base_url: &str) -> anyhow::Result<String> {
    let rest = base_url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported, got {base_url}"))?;
    Ok(rest.trim_end_matches('/').to_string())
}
