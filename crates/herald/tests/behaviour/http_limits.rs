//! The HTTP listener faces the open internet: a client that opens connections and sends
//! nothing (or sends slowly) is closed, and cannot take the file descriptors that
//! `/healthz` and the devices' MQTT connections need.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

async fn limited() -> Option<TestServer> {
    TestServer::start_with(crate::BACKEND, |cfg| {
        cfg.http.max_connections = 20;
        cfg.http.header_timeout_secs = 1;
        cfg.http.idle_timeout_secs = 3;
        cfg.http.body_timeout_secs = 1;
    })
    .await
}

/// Reads until the server closes the connection; the bytes read.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
    .map(|()| got)
}

#[tokio::test]
async fn slow_clients_are_closed_and_healthz_and_mqtt_keep_working() {
    let Some(server) = limited().await else { return };
    let started = Instant::now();
    // Twice as many as the node holds at once, each stuck in the middle of its headers.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(&server.http).await.unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n").await;
        slow.push(s);
    }
    // MQTT is another listener: a device connects while the HTTP slots are taken.
    let app = server.create_app().await;
    let creds = app.register("d").await;
    let device = TestDevice::connect(&creds).await;
    let healthz = server.call("GET", "/healthz", &[], Default::default()).await;
    assert_eq!(healthz.status, 200);
    for s in &mut slow {
        let closed = until_closed(s, Duration::from_secs(6)).await;
        assert!(closed.is_some_and(|bytes| bytes.is_empty()), "a slow client must be closed without an answer");
    }
    // 40 clients, 20 at a time, 1 s each: two rounds.
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    device.stop();
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_its_idle_time_not_its_header_time() {
    let Some(server) = limited().await else { return };
    let mut s = TcpStream::connect(&server.http).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    s.write_all(request).await.unwrap();
    assert!(s.read(&mut buf).await.unwrap() > 0);
    // Idle for longer than the header timeout, shorter than the idle timeout: still open.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    s.write_all(request).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "kept alive");
    let idle_from = Instant::now();
    assert!(until_closed(&mut s, Duration::from_secs(6)).await.is_some(), "closed when idle");
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(2_500) && idle < Duration::from_secs(5), "closed after {idle:?}");
}

#[tokio::test]
async fn a_body_slower_than_its_timeout_is_refused_with_408() {
    let Some(server) = limited().await else { return };
    let mut s = TcpStream::connect(&server.http).await.unwrap();
    s.write_all(
        b"POST /device/v1/register HTTP/1.1\r\nHost: herald\r\nX-Herald-App: a\r\nX-Herald-App-Key: k\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"platform\":",
    )
    .await
    .unwrap();
    let answer = until_closed(&mut s, Duration::from_secs(5)).await.expect("an answer, then the connection ends");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
}

#[tokio::test]
async fn a_connection_beyond_the_cap_waits_until_a_slot_frees() {
    let Some(server) = TestServer::start_with(crate::BACKEND, |cfg| {
        cfg.http.max_connections = 5;
        cfg.http.header_timeout_secs = 3;
    })
    .await
    else {
        return;
    };
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(&server.http).await.unwrap());
    }
    // The node has taken the five; the sixth waits in the listen queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(&server.http).await.unwrap();
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n").await.unwrap();
    let sent = Instant::now();
    let answer = until_closed(&mut extra, Duration::from_secs(8)).await.expect("answered once a slot frees");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(2_000), "answered after {waited:?}: nothing held it back");
    drop(held);
}

/// A connection from another loopback source address (Linux routes all of 127/8 to lo).
async fn connect_from(addr: &str, source: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr.parse().unwrap()).await.unwrap()
}

#[tokio::test]
async fn one_address_holds_only_its_share_of_the_http_connections() {
    let Some(server) = TestServer::start_with(crate::BACKEND, |cfg| {
        cfg.http.max_connections_per_address = 2;
    })
    .await
    else {
        return;
    };
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    // Two kept-alive connections, each answered once (so both are counted), then left open.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = connect_from(&server.http, "127.0.0.2").await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    let mut third = connect_from(&server.http, "127.0.0.2").await;
    let _ = third.write_all(healthz).await;
    assert_eq!(until_closed(&mut third, WAIT).await, Some(Vec::new()), "closed unanswered: its address holds 2");
    let mut other = connect_from(&server.http, "127.0.0.3").await;
    other.write_all(healthz).await.unwrap();
    let answer = until_closed(&mut other, WAIT).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "another address is served");
    drop(open.pop());
    // The place comes back once the server has seen the connection end.
    eventually("a place for 127.0.0.2 again", || async {
        let mut s = connect_from(&server.http, "127.0.0.2").await;
        s.write_all(healthz).await.ok()?;
        until_closed(&mut s, WAIT).await.filter(|a| a.starts_with(b"HTTP/1.1 200")).map(|_| ())
    })
    .await;
    // Loopback (the CLI, a local proxy) is exempt by default.
    assert_eq!(server.call("GET", "/healthz", &[], Default::default()).await.status, 200);
}
