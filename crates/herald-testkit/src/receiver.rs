//! A receipt webhook for tests: a real HTTP/1.1 server on port 0 that records every POST
//! (its `X-Herald-Timestamp`, `X-Herald-Signature` and body) and answers as scripted: the
//! first `fail_first` requests with 503, or every one while it is told to be down, or
//! slowly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;

/// One POST as the receiver got it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub timestamp: String,
    pub signature: String,
    pub body: Bytes,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

impl Delivery {
    /// The receipts of the body.
    pub fn receipts(&self) -> Vec<Value> {
        let v: Value = serde_json::from_slice(&self.body).expect("a JSON body");
        v["receipts"].as_array().expect("a receipts array").clone()
    }
}

#[derive(Default)]
struct Script {
    fail_first: AtomicUsize,
    down: AtomicBool,
    delay_ms: AtomicU64,
    seen: Mutex<Vec<Delivery>>,
    keep_none: AtomicBool,
    /// Receipts in the accepted requests.
    accepted: AtomicU64,
}

pub struct Receiver {
    url: String,
    script: Arc<Script>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that refuses its first `fail_first` requests with 503.
    pub async fn start(fail_first: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let url = format!("http://{}/receipts", listener.local_addr().unwrap());
        let script = Arc::new(Script::default());
        script.fail_first.store(fail_first, Ordering::SeqCst);
        let s = script.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move { Ok::<_, hyper::Error>(answer(&s, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver { url, script, task }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request answered 503 while `down`.
    pub fn set_down(&self, down: bool) {
        self.script.down.store(down, Ordering::SeqCst);
    }

    /// Each answer waits this long first.
    pub fn set_delay(&self, delay: Duration) {
        self.script.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Every request so far, in the order they came.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.script.seen.lock().clone()
    }

    /// How many receipts the accepted requests carried.
    pub fn accepted_count(&self) -> u64 {
        self.script.accepted.load(Ordering::SeqCst)
    }

    /// Stops keeping each request (a benchmark's receiver only counts).
    pub fn forget_requests(&self) {
        self.script.keep_none.store(true, Ordering::SeqCst);
    }

    /// The receipts of the accepted requests, in order.
    pub fn accepted(&self) -> Vec<Value> {
        self.deliveries().iter().filter(|d| d.accepted).flat_map(|d| d.receipts()).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(serde::Deserialize)]
struct Batch {
    receipts: Vec<serde::de::IgnoredAny>,
}

async fn answer(s: &Script, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let (timestamp, signature) = (header("x-herald-timestamp"), header("x-herald-signature"));
    let post = req.method() == hyper::Method::POST;
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = s.down.load(Ordering::SeqCst)
        || s.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let accepted = post && !failing;
    if accepted {
        // Counted without building the receipts (a benchmark's receiver shares the machine).
        let n = serde_json::from_slice::<Batch>(&body).map(|b| b.receipts.len()).unwrap_or(0);
        s.accepted.fetch_add(n as u64, Ordering::SeqCst);
    }
    if !s.keep_none.load(Ordering::SeqCst) {
        s.seen.lock().push(Delivery { timestamp, signature, body, accepted });
    }
    let status = if accepted { 204 } else { 503 };
    Response::builder().status(status).body(Full::new(Bytes::new())).unwrap()
}
