//! Protocol switches (WebSocket and any other `Upgrade`): once the dyno answers 101, the
//! router stops speaking HTTP on both connections and pipes bytes between them.
//!
//! The client's connection is only handed over after the dyno has agreed, so a refused
//! upgrade leaves both sides speaking HTTP. Issue 5 adds Heroku's 55 s idle window here.

use crate::backend::Outstanding;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the client's and the dyno's upgraded connections on a task of their own. The dyno
/// counts the connection as outstanding for as long as it is open: a WebSocket is load.
pub(crate) fn splice(client: OnUpgrade, dyno: OnUpgrade, outstanding: Outstanding) {
    tokio::spawn(async move {
        let (client, dyno) = tokio::join!(client, dyno);
        match (client, dyno) {
            (Ok(client), Ok(dyno)) => {
                let (mut client, mut dyno) = (TokioIo::new(client), TokioIo::new(dyno));
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut dyno).await {
                    tracing::debug!(error = %e, "upgraded connection ended with an error");
                }
            }
            (client, dyno) => {
                tracing::debug!(client_ok = client.is_ok(), dyno_ok = dyno.is_ok(), "protocol switch failed");
            }
        }
        drop(outstanding);
    });
}
