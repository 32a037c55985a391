//! `https://` drains: batches POSTed as `application/logplex-1`, as Logplex's HTTP drains
//! send them: `Logplex-Msg-Count`, `Logplex-Frame-Id` (the same for every try of one batch, so
//! a receiver can drop duplicates), `Logplex-Drain-Token`, and the URL's userinfo as Basic
//! authentication. A 2xx delivers the batch; a 4xx other than 429 rejects it for good; 429,
//! 5xx, timeouts and connection errors are tried again, three tries in all, then the batch is
//! dropped and counted (Logplex's rules).

use crate::connect::{self, CONNECT_TIMEOUT};
use crate::{Delivery, DrainContext, Failure, Transport, format};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kiln_model::log::LogLine;
use std::sync::Arc;
use std::time::Duration;

/// One request, its response included (Logplex's HTTP drain timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Https {
    host: String,
    port: u16,
    path: String,
    authorization: Option<String>,
    token: String,
    ctx: DrainContext,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
}

impl Https {
    pub(crate) fn new(
        host: String,
        port: u16,
        path: String,
        basic_auth: Option<(String, String)>,
        token: String,
        ctx: DrainContext,
    ) -> Https {
        use base64::Engine;
        Https {
            host,
            port,
            path,
            authorization: basic_auth.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            token,
            ctx,
            sender: None,
        }
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, Failure> {
        let tcp = connect::tcp(&self.host, self.port, &self.ctx).await?;
        let tls = connect::tls(&self.host, tcp, &self.ctx).await?;
        let (sender, conn) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            hyper::client::conn::http1::handshake(TokioIo::new(tls)),
        )
        .await
        .map_err(|_| Failure::Retry("HTTP handshake timed out".into()))?
        .map_err(|e| Failure::Retry(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn request(
        &self,
        lines: &[Arc<LogLine>],
        frame_id: u64,
    ) -> Result<http::Request<Full<Bytes>>, Failure> {
        let mut body = Vec::with_capacity(lines.len() * 160);
        for line in lines {
            format::logplex_frame(&mut body, line);
        }
        let authority = if self.port == 443 {
            self.host.clone()
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = http::Request::post(&self.path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/logplex-1")
            .header(http::header::USER_AGENT, "Kiln-Logplex/1")
            .header("Logplex-Msg-Count", lines.len())
            .header("Logplex-Frame-Id", format!("{frame_id:016x}"))
            .header("Logplex-Drain-Token", &self.token);
        if let Some(a) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, a);
        }
        req.body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Reject(format!("building the request: {e}")))
    }
}

impl Transport for Https {
    fn deliver<'a>(&'a mut self, lines: &'a [Arc<LogLine>], frame_id: u64) -> Delivery<'a> {
        Box::pin(async move {
            let req = self.request(lines, frame_id)?;
            let mut sender = match self.sender.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            let exchange = async {
                sender
                    .ready()
                    .await
                    .map_err(|e| Failure::Retry(format!("the connection closed: {e}")))?;
                let resp = sender
                    .send_request(req)
                    .await
                    .map_err(|e| Failure::Retry(format!("sending: {e}")))?;
                let status = resp.status();
                // Read the body so the connection can carry the next batch.
                let _ = resp.into_body().collect().await;
                Ok::<_, Failure>(status)
            };
            let status = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| Failure::Retry("the request timed out".into()))??;
            self.sender = Some(sender);
            if status.is_success() {
                Ok(())
            } else if status.is_client_error() && status != http::StatusCode::TOO_MANY_REQUESTS {
                Err(Failure::Reject(format!("the endpoint answered {status}")))
            } else {
                Err(Failure::Retry(format!("the endpoint answered {status}")))
            }
        })
    }

    fn max_tries(&self) -> Option<u32> {
        Some(3)
    }
}
