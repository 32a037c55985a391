//! `syslog://` and `syslog+tls://` drains: RFC 5424 over TCP (optionally TLS), octet-counted
//! (RFC 6587). The connection is kept between batches; a failed write drops it, and the batch
//! is sent again on a new one (a receiver may then see a few lines twice, never a gap).

use crate::connect::{self, CONNECT_TIMEOUT};
use crate::{Delivery, DrainContext, Failure, Transport, format};
use kiln_model::log::LogLine;
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};

type Conn = Box<dyn AsyncWrite + Send + Sync + Unpin>;

pub(crate) struct Syslog {
    host: String,
    port: u16,
    tls: bool,
    token: String,
    ctx: DrainContext,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

impl Syslog {
    pub(crate) fn new(
        host: String,
        port: u16,
        tls: bool,
        token: String,
        ctx: DrainContext,
    ) -> Syslog {
        Syslog {
            host,
            port,
            tls,
            token,
            ctx,
            conn: None,
            buf: Vec::new(),
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let tcp = connect::tcp(&self.host, self.port, &self.ctx).await?;
        if self.tls {
            Ok(Box::new(connect::tls(&self.host, tcp, &self.ctx).await?))
        } else {
            Ok(Box::new(tcp))
        }
    }
}

impl Transport for Syslog {
    fn deliver<'a>(&'a mut self, lines: &'a [Arc<LogLine>], _frame_id: u64) -> Delivery<'a> {
        Box::pin(async move {
            self.buf.clear();
            for line in lines {
                format::syslog_frame(&mut self.buf, line, &self.token);
            }
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.connect().await?,
            };
            let write = async {
                conn.write_all(&self.buf).await?;
                conn.flush().await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, write).await {
                Ok(Ok(())) => {
                    self.conn = Some(conn);
                    Ok(())
                }
                Ok(Err(e)) => Err(Failure::Retry(format!("writing to the drain: {e}"))),
                Err(_) => Err(Failure::Retry("writing to the drain timed out".into())),
            }
        })
    }
}
