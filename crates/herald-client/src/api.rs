//! The device API over HTTP(S) (`/device/v1`): one connection per call (a device calls it
//! rarely: to register, report, bind and send events), each within the client's timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::Error;
use crate::transport::{Endpoint, open};

/// The largest answer read: the device API's are small.
const MAX_ANSWER: usize = 64 * 1024;

pub(crate) struct DeviceApi {
    pub(crate) endpoint: Endpoint,
    pub(crate) tls: tokio_rustls::TlsConnector,
    pub(crate) timeout: Duration,
}

impl DeviceApi {
    /// `POST path` with a JSON body; the answer's JSON on 2xx, else the refusal's code.
    pub(crate) async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> Result<Value, Error> {
        let work = async {
            let stream = open(&self.endpoint, &self.tls, self.timeout).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io_error)?;
            let driver = tokio::spawn(conn);
            let host = format!("{}:{}", self.endpoint.host, self.endpoint.port);
            let mut request = hyper::Request::post(format!("{}{path}", self.endpoint.path))
                .header("host", host)
                .header("content-type", "application/json");
            for (k, v) in headers {
                request = request.header(*k, *v);
            }
            let request = request
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| Error::Config(format!("a header does not fit: {e}")))?;
            let answer = sender.send_request(request).await.map_err(io_error)?;
            let status = answer.status().as_u16();
            let bytes = Limited::new(answer.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?
                .to_bytes();
            driver.abort();
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if (200..300).contains(&status) {
                return Ok(json);
            }
            let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
            Err(Error::Refused { status, code: text("resultCode"), message: text("resultMessage") })
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| Error::Timeout("the device API"))?
    }
}

fn io_error(e: hyper::Error) -> Error {
    Error::Io(std::io::Error::other(e))
}
