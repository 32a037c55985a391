//! Test scaffolding: a router on a random port, tiny dynos, a client, and a log sink that
//! remembers what the router wrote.

#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kiln_model::log::{LogLine, LogSink};
use kiln_model::route::{AppRoutes, Backend, DynoRoutes, WebStatus};
use kiln_router::{RouteTable, RouterConfig};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Remembers every line, per app.
#[derive(Default)]
pub struct TestLogs {
    lines: Mutex<Vec<(String, LogLine)>>,
}

impl LogSink for TestLogs {
    fn emit(&self, app_id: &str, line: LogLine) {
        self.lines.lock().unwrap().push((app_id.to_string(), line));
    }
}

impl TestLogs {
    pub fn messages(&self, app_id: &str) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == app_id)
            .map(|(_, l)| l.message.clone())
            .collect()
    }

    /// The first router line for `app_id` containing `needle`, waiting for it a little:
    /// lines are written when a response ends, which can trail the client's read.
    pub async fn wait_for(&self, app_id: &str, needle: &str) -> LogLine {
        for _ in 0..500 {
            let found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(a, l)| a == app_id && l.message.contains(needle))
                .map(|(_, l)| l.clone());
            if let Some(line) = found {
                assert_eq!((&*line.source, &*line.process), ("heroku", "router"));
                return line;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "no log line with {needle:?} for {app_id}; have {:?}",
            self.messages(app_id)
        );
    }
}

pub struct Router {
    pub addr: SocketAddr,
    pub table: Arc<RouteTable>,
    pub logs: Arc<TestLogs>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Router {
    pub async fn start() -> Router {
        Router::with_config(RouterConfig::default()).await
    }

    pub async fn with_config(config: RouterConfig) -> Router {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let table = RouteTable::new(&config.domain);
        let logs = Arc::new(TestLogs::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(kiln_router::serve(
            listener,
            table.clone(),
            logs.clone(),
            config,
            async move {
                let _ = stopped.await;
            },
        ));
        Router {
            addr,
            table,
            logs,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Registers app `name` (id `id-<name>`) with these dynos, all up.
    pub fn app(&self, name: &str, dynos: &[SocketAddr]) -> String {
        let id = format!("id-{name}");
        self.table.upsert_app(&id, name, false, None, None);
        let status = if dynos.is_empty() {
            WebStatus::NoWebDynos
        } else {
            WebStatus::Up
        };
        self.table.set_backends(&id, status, backends(dynos));
        id
    }

    pub async fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

pub fn backends(dynos: &[SocketAddr]) -> Vec<Backend> {
    dynos
        .iter()
        .enumerate()
        .map(|(i, addr)| Backend {
            dyno: format!("web.{}", i + 1),
            addr: *addr,
        })
        .collect()
}

// Each test file uses some of these.
#[allow(unused_imports)]
pub use kiln_testkit::{
    dyno::{dead_dyno, http_dyno, raw_dyno},
    http::statuses,
    net::{raw_request, read_head, read_until_closed},
};

/// A dyno that answers every request with what it received: a first line
/// `backend=<name> <METHOD> <uri> body=<n>` then one `name: value` line per header.
/// Returns its address and how many connections it has accepted.
pub async fn echo_dyno(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    http_dyno(move |req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut text = format!(
            "backend={name} {} {} body={}\n",
            parts.method,
            parts.uri,
            body.len()
        );
        for (k, v) in &parts.headers {
            text.push_str(&format!(
                "{}: {}\n",
                k,
                String::from_utf8_lossy(v.as_bytes())
            ));
        }
        let mut resp = http::Response::new(Full::new(Bytes::from(text)));
        resp.headers_mut()
            .insert("x-backend", http::HeaderValue::from_static(name));
        resp
    })
    .await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// A header as the echo dyno received it.
    pub fn echoed(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}: ");
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
    }

    pub fn backend(&self) -> String {
        self.headers
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

pub fn get(host: &str, path: &str) -> http::request::Builder {
    Request::get(path).header("host", host)
}

/// Sends one request on a new connection and reads the whole response.
pub async fn send(addr: SocketAddr, req: http::request::Builder) -> Reply {
    send_body(addr, req, Bytes::new()).await
}

pub async fn send_body(addr: SocketAddr, req: http::request::Builder, body: Bytes) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A dyno that writes each response in two pieces, head then body, with Nagle's algorithm
/// on (as Python's `http.server` in HTTP/1.1 mode does), on keep-alive connections: the
/// body leaves only once the router has acknowledged the head. Answers `n=<body bytes>`.
pub async fn nagle_dyno() -> SocketAddr {
    raw_dyno(|mut stream| async move {
        let mut buf = Vec::new();
        loop {
            // One request: its head, then as many body bytes as its Content-Length says.
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..end + length);
            let body = format!("n={length}\n");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if stream.write_all(head.as_bytes()).await.is_err()
                || stream.write_all(body.as_bytes()).await.is_err()
            {
                return;
            }
        }
    })
    .await
}

/// The median of some durations.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// FNV-1a over some bytes, continued from `hash` (start with [`FNV_START`]): enough to tell
/// that a body arrived byte for byte, without another dependency.
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A dyno that reads each request's body as it streams and answers
/// `len=<n> fnv=<hash> te=<transfer-encoding> cl=<content-length>`.
pub async fn hashing_dyno() -> SocketAddr {
    raw_dyno(|stream| async move {
        let service = service_fn(|req: Request<Incoming>| async move {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_else(|| "-".into())
            };
            let (te, cl) = (header("transfer-encoding"), header("content-length"));
            let mut body = req.into_body();
            let (mut len, mut hash) = (0usize, FNV_START);
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    hash = fnv1a(hash, &data);
                }
            }
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                "len={len} fnv={hash:x} te={te} cl={cl}"
            )))))
        });
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}
