//! The PROXY protocol (HAProxy's; v1 text and v2 binary): a load balancer that passes TCP
//! through (with or without terminating TLS itself) writes the client's address before the
//! client's first byte, so that per-address limits and logs see the client, not the
//! balancer. On with `mqtt.proxy_protocol` / `http.proxy_protocol`: then every connection
//! to those listeners must start with a header, and one that does not is closed. Only for
//! listeners no client can reach but through the balancer: a header is believed as sent.

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A v1 header is at most 107 bytes; a v2 header 16 plus its addresses and TLVs, of which
/// balancers send a few. Longer is refused.
const MAX_HEADER: usize = 512;
/// How long to wait for the rest of a header that came in parts (balancers send it whole).
const PART_WAIT: Duration = Duration::from_millis(5);

/// Reads the header at the start of `stream`, consuming exactly its bytes, and returns the
/// client's address: `None` for a LOCAL (v2) or UNKNOWN (v1) header, the balancer's own
/// connection (a health check), where the socket's address stands. `Err` names what is
/// wrong, in our words; the caller bounds the wait with its connect timeout.
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, &'static str> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        let n = stream.peek(&mut buf).await.map_err(|_| "the connection failed before its PROXY header")?;
        if n == 0 {
            return Err("the connection closed before its PROXY header");
        }
        let parsed = HeaderResult::parse(&buf[..n]);
        if parsed.is_incomplete() {
            if n == MAX_HEADER {
                return Err("a PROXY header longer than 512 bytes");
            }
            tokio::time::sleep(PART_WAIT).await;
            continue;
        }
        let (len, client) = match parsed {
            HeaderResult::V1(Ok(h)) => (h.header.len(), v1_client(&h.addresses)),
            HeaderResult::V2(Ok(h)) => (h.len(), v2_client(&h)),
            HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => {
                return Err("no PROXY protocol header at the start of the connection");
            }
        };
        stream.read_exact(&mut buf[..len]).await.map_err(|_| "the connection failed in its PROXY header")?;
        return Ok(client);
    }
}

/// The client behind `peer` (the balancer's address, kept for a LOCAL / UNKNOWN header),
/// read from the header within `within`; `None`, logged at debug with `what` (the
/// listener), when there is none in time.
pub async fn client_of(stream: &mut TcpStream, peer: SocketAddr, within: Duration, what: &str) -> Option<SocketAddr> {
    match tokio::time::timeout(within, read_header(stream)).await {
        Ok(Ok(client)) => Some(client.unwrap_or(peer)),
        Ok(Err(why)) => {
            tracing::debug!(%peer, why, "{what} connection closed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "{what} connection closed: no PROXY header in time");
            None
        }
    }
}

fn v1_client(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    }
}

fn v2_client(header: &v2::Header<'_>) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match &header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::IPv6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Sends `bytes` (in parts, `split` bytes first) to a fresh connection and reads its
    /// header there; what is left on the connection after it.
    async fn through(bytes: &[u8], split: usize) -> (Result<Option<SocketAddr>, &'static str>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (first, rest) = bytes.split_at(split.min(bytes.len()));
        client.write_all(first).await.unwrap();
        let rest = rest.to_vec();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(&rest).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let got = read_header(&mut server).await;
        writer.await.unwrap();
        let mut left = Vec::new();
        let _ = server.read_to_end(&mut left).await;
        (got, left)
    }

    #[tokio::test]
    async fn a_v1_header_gives_the_client_and_leaves_the_client_bytes() {
        let wire = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 1883\r\n\x10\x0c";
        let (got, left) = through(wire, wire.len()).await;
        assert_eq!(got, Ok(Some("203.0.113.7:51234".parse().unwrap())));
        assert_eq!(left, b"\x10\x0c");
        let (got, left) = through(wire, 9).await;
        assert_eq!(got, Ok(Some("203.0.113.7:51234".parse().unwrap())), "a header in two parts");
        assert_eq!(left, b"\x10\x0c");
        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 8883\r\n";
        assert_eq!(through(six, six.len()).await.0, Ok(Some("[2001:db8::7]:40000".parse().unwrap())));
        assert_eq!(through(b"PROXY UNKNOWN\r\nGET", 18).await, (Ok(None), b"GET".to_vec()));
    }

    #[tokio::test]
    async fn a_v2_header_gives_the_client_and_local_gives_none() {
        let mut wire = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        wire.extend_from_slice(&[0x21, 0x11, 0x00, 12]); // v2 PROXY, TCP over IPv4, 12 bytes
        wire.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 1]);
        wire.extend_from_slice(&40_000u16.to_be_bytes());
        wire.extend_from_slice(&8883u16.to_be_bytes());
        wire.extend_from_slice(b"\x10");
        let (got, left) = through(&wire, wire.len()).await;
        assert_eq!(got, Ok(Some("198.51.100.9:40000".parse().unwrap())));
        assert_eq!(left, b"\x10");
        let mut local = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(through(&local, local.len()).await.0, Ok(None));
    }

    #[tokio::test]
    async fn a_connection_without_a_header_is_refused() {
        assert_eq!(
            through(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", 12).await.0,
            Err("no PROXY protocol header at the start of the connection")
        );
        assert_eq!(through(b"", 0).await.0, Err("the connection closed before its PROXY header"));
    }
}
