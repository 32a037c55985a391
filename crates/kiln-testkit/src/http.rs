//! Raw HTTP/1.1 over a blocking socket. The tests write requests byte by byte (malformed and
//! hostile ones included) and read exactly what came back, so no client library stands
//! between them and the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response as it arrived: the status, the headers in order, the body (de-chunked).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header with this name, whatever its case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection to 127.0.0.1:`port` with `Connection: close`, and its
/// response. A body is sent as JSON with its length.
pub fn request(
    port: u16,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    parse_response(&exchange(addr, req.as_bytes(), Duration::from_secs(90)).0)
}

/// Writes `bytes` and reads until the server closes the connection or `limit` passes without
/// a byte. Returns what was read and whether the server closed. A server may answer and close
/// before the whole request is written (an oversized body, say): that is not an error here,
/// the answer is still read.
pub fn exchange(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let mut sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    sock.set_read_timeout(Some(limit)).expect("read timeout");
    sock.set_write_timeout(Some(limit)).expect("write timeout");
    let _ = sock.write_all(bytes);
    read_until_closed(&mut sock)
}

/// Reads until the peer closes (true) or the socket's read timeout passes (false).
pub fn read_until_closed(sock: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match sock.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break false;
            }
            // A reset after the answer: the server closed hard, which is closing. A reset
            // before any byte is said on stderr (shown when the test fails): it is what an
            // unexplained "no answer" looks like, and not the same as a clean close.
            Err(e) => {
                if out.is_empty() {
                    eprintln!(
                        "kiln-testkit: {:?} reset the connection before answering: {e}",
                        sock.peer_addr()
                    );
                }
                break true;
            }
        }
    };
    (out, closed)
}

/// Parses one response (the first, if several arrived). Unparseable input gives status 0
/// and whatever could be read, so that the assertion, not the parser, reports it.
pub fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// The data of a chunked body, up to the last chunk or the first malformed one.
pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        if n == 0 || rest.len() < n || !rest.is_char_boundary(n) {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// The status codes of every HTTP/1.1 response in `out`, in order (pipelined answers).
pub fn statuses(out: &str) -> Vec<u16> {
    out.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| out[i + 9..].get(..3)?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_chunked_and_broken_responses() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(
            (r.status, r.header("x-a"), r.body.as_str()),
            (201, Some("1"), "hi")
        );
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        assert_eq!(r.body, "abcde");
        let r = parse_response(b"garbage");
        assert_eq!((r.status, r.headers.len()), (0, 0));
        assert_eq!(dechunk("ffffffffffffffffffff\r\nx"), "");
    }

    #[test]
    fn statuses_of_pipelined_answers() {
        assert_eq!(
            statuses("HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 400 Bad\r\n\r\nHTTP/1.1 5"),
            [200, 400]
        );
    }

    #[test]
    fn an_exchange_reads_until_the_server_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n")
                .unwrap();
            s.write_all(&buf[..1]).unwrap();
            n
        });
        let (out, closed) = exchange(addr, b"Q", Duration::from_secs(5));
        assert!(closed);
        assert_eq!(parse_response(&out).body, "Q");
        assert_eq!(server.join().unwrap(), 1);
    }
}
