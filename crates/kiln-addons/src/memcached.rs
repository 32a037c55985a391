//! `memcachier` (alias `memcached`): one memcached per add-on, as its own uid, with the plan's
//! memory and connection cap, and SASL authentication (the binary protocol, PLAIN), as
//! MemCachier requires: apps written for Heroku read `MEMCACHIER_SERVERS`,
//! `MEMCACHIER_USERNAME` and `MEMCACHIER_PASSWORD` and authenticate with them (Dalli,
//! pylibmc, bmemcached). memcached authenticates but does not separate keyspaces per user,
//! which is why every add-on has a server of its own.

use crate::redis::{human_bytes, secret, url_host};
use crate::server::{Common, ServerKind, ServerProvider};
use crate::system::require;
use crate::{AddonError, AddonsConfig, BoxFuture, ProvisionRequest, Provisioned, Result};
use kiln_model::addon::{Plan, Service};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemcachedExtra {
    username: String,
}

pub struct Memcached;

pub type MemcachedProvider = ServerProvider<Memcached>;

fn service() -> &'static Service {
    Service::find("memcachier").expect("memcachier is in the catalogue")
}

fn plan_of(name: &str) -> &'static Plan {
    service().plan(name).unwrap_or(&service().plans[0])
}

impl ServerKind for Memcached {
    type Extra = MemcachedExtra;
    const DIR: &'static str = "memcached";
    const PROGRAM: &'static str = "memcached";
    const PACKAGE: &'static str = "memcached sasl2-bin";
    const LOG_PROCESS: &'static str = "memcachier";

    fn service() -> &'static Service {
        service()
    }

    fn extra(_: &ProvisionRequest) -> Result<MemcachedExtra> {
        // The SASL tool must be there before anything is made.
        require(service().name, "saslpasswd2", "sasl2-bin", &[])?;
        let s = secret()?;
        Ok(MemcachedExtra {
            username: format!("mc{}", &s[..14]),
        })
    }

    fn prepare(
        config: &AddonsConfig,
        dir: &Path,
        c: &Common,
        e: &MemcachedExtra,
    ) -> Result<(Vec<String>, Vec<(String, String)>)> {
        let plan = plan_of(&c.plan);
        let sasldb = dir.join("sasldb2");
        crate::state::write_private(
            &dir.join("memcached.conf"),
            format!("mech_list: plain\nsasldb_path: {}\n", sasldb.display()).as_bytes(),
        )?;
        // The password database is made again at each start: a rotated password takes
        // effect, and the realm is always this machine's current name.
        let _ = std::fs::remove_file(&sasldb);
        let tool = require(service().name, "saslpasswd2", "sasl2-bin", &[])?;
        let mut child = std::process::Command::new(tool)
            .args(["-p", "-c", "-a", "memcached", "-f"])
            .arg(&sasldb)
            .arg(&e.username)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(AddonError::io("running saslpasswd2"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(c.password.as_bytes())
                .map_err(AddonError::io("running saslpasswd2"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(AddonError::io("running saslpasswd2"))?;
        if !out.status.success() {
            return Err(AddonError::Service {
                context: "creating the memcached password database".into(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let mb = plan.memory_bytes.unwrap_or(25 << 20) >> 20;
        let args = vec![
            "-l".into(),
            config.host.clone(),
            "-p".into(),
            c.port.to_string(),
            "-U".into(),
            "0".into(),
            "-m".into(),
            mb.to_string(),
            // memcached counts connections by descriptor number, and its own threads, pipes
            // and listeners take the first few: the plan's clients come on top of those.
            "-c".into(),
            (plan.connections.unwrap_or(10) + 16).to_string(),
            "-t".into(),
            "2".into(),
            "-S".into(),
            "-I".into(),
            "1m".into(),
        ];
        Ok((
            args,
            vec![("SASL_CONF_PATH".into(), dir.display().to_string())],
        ))
    }

    fn ready<'a>(host: &'a str, c: &'a Common, e: &'a MemcachedExtra) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let last = match authenticate(host, c.port, &e.username, &c.password).await {
                    Ok(()) => return Ok(()),
                    Err(err) => err,
                };
                if tokio::time::Instant::now() >= deadline {
                    return Err(AddonError::Service {
                        context: format!("starting memcached on port {}", c.port),
                        message: format!("it did not accept its credentials: {last}"),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    fn provisioned(host: &str, c: &Common, e: &MemcachedExtra) -> Provisioned {
        Provisioned {
            config: [
                (
                    "SERVERS".to_string(),
                    format!("{}:{}", url_host(host), c.port),
                ),
                ("USERNAME".to_string(), e.username.clone()),
                ("PASSWORD".to_string(), c.password.clone()),
            ]
            .into(),
            message: format!(
                "Memcache {} is ready: {} of memory.",
                c.name,
                human_bytes(plan_of(&c.plan).memory_bytes.unwrap_or(0))
            ),
        }
    }

    fn check_plan<'a>(
        _: &'a str,
        _: &'a Common,
        _: &'a MemcachedExtra,
        _: &'static Plan,
    ) -> BoxFuture<'a, Result<()>> {
        // A cache of any size holds what fits; a smaller one evicts.
        Box::pin(async { Ok(()) })
    }
}

pub fn provider(config: AddonsConfig) -> Arc<MemcachedProvider> {
    MemcachedProvider::new(config)
}

/// A binary-protocol request (magic 0x80) with `key` and `value`.
pub fn binary_request(opcode: u8, key: &[u8], extras: &[u8], value: &[u8]) -> Vec<u8> {
    let body = (key.len() + extras.len() + value.len()) as u32;
    let mut out = Vec::with_capacity(24 + body as usize);
    out.push(0x80);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&body.to_be_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Reads one binary-protocol response: its status and body.
pub async fn binary_response(s: &mut tokio::net::TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut head = [0u8; 24];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    let status = u16::from_be_bytes([head[6], head[7]]);
    let len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    if len > 1 << 20 {
        return Err(std::io::Error::other("an oversized answer"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await?;
    Ok((status, body))
}

/// SASL PLAIN over the binary protocol.
async fn authenticate(host: &str, port: u16, user: &str, password: &str) -> std::io::Result<()> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    let mut value = vec![0u8];
    value.extend_from_slice(user.as_bytes());
    value.push(0);
    value.extend_from_slice(password.as_bytes());
    s.write_all(&binary_request(0x21, b"PLAIN", &[], &value))
        .await?;
    match binary_response(&mut s).await? {
        (0, _) => Ok(()),
        (status, body) => Err(std::io::Error::other(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        ))),
    }
}
