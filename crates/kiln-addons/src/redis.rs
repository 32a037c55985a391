//! `heroku-redis`: one redis-server per add-on, as its own uid, with a password, the plan's
//! `maxmemory` and client cap, `noeviction` unless the add-on was created with another policy,
//! and persistence (an append-only file) on the plans that have it. The commands that would
//! let an app change its own limits or reach outside its server (`CONFIG`, `DEBUG`, `MODULE`,
//! `REPLICAOF`, `ACL`…) are renamed to a secret only Kiln knows.

use crate::server::{Common, ServerKind, ServerProvider};
use crate::{AddonError, AddonsConfig, BoxFuture, ProvisionRequest, Provisioned, Result};
use kiln_model::addon::{Plan, Service};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a Redis add-on keeps besides its port and password.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedisExtra {
    /// The secret name `CONFIG` and the other admin commands are renamed to.
    admin_prefix: String,
    policy: String,
}

pub struct Redis;

pub type RedisProvider = ServerProvider<Redis>;

fn service() -> &'static Service {
    Service::find("heroku-redis").expect("heroku-redis is in the catalogue")
}

/// Commands an app must not run on its own server.
const ADMIN_COMMANDS: &[&str] = &[
    "CONFIG",
    "DEBUG",
    "MODULE",
    "REPLICAOF",
    "SLAVEOF",
    "ACL",
    "SHUTDOWN",
    "MIGRATE",
    "SYNC",
    "PSYNC",
    "FAILOVER",
    "BGREWRITEAOF",
    "BGSAVE",
    "SAVE",
];

fn plan_of(name: &str) -> &'static Plan {
    service().plan(name).unwrap_or(&service().plans[0])
}

impl ServerKind for Redis {
    type Extra = RedisExtra;
    const DIR: &'static str = "redis";
    const PROGRAM: &'static str = "redis-server";
    const PACKAGE: &'static str = "redis-server";
    const LOG_PROCESS: &'static str = "heroku-redis";

    fn service() -> &'static Service {
        service()
    }

    fn extra(req: &ProvisionRequest) -> Result<RedisExtra> {
        Ok(RedisExtra {
            admin_prefix: secret()?,
            policy: req
                .options
                .get("maxmemory_policy")
                .cloned()
                .unwrap_or_else(|| "noeviction".into()),
        })
    }

    fn prepare(
        config: &AddonsConfig,
        dir: &Path,
        c: &Common,
        e: &RedisExtra,
    ) -> Result<(Vec<String>, Vec<(String, String)>)> {
        let plan = plan_of(&c.plan);
        let data = dir.join("data");
        crate::state::create_private_dir(&data)?;
        let mut conf = format!(
            "# Written by Kiln for add-on {name}; changes are overwritten.\n\
             bind {host}\nport {port}\nprotected-mode yes\nrequirepass {pw}\n\
             maxmemory {mem}\nmaxmemory-policy {policy}\nmaxclients {clients}\n\
             dir {data}\ndaemonize no\nlogfile \"\"\nsupervised no\n\
             timeout 300\ntcp-keepalive 60\n",
            name = c.name,
            host = config.host,
            port = c.port,
            pw = c.password,
            mem = plan.memory_bytes.unwrap_or(25 << 20),
            policy = e.policy,
            clients = plan.connections.unwrap_or(20),
            data = data.display(),
        );
        if plan.persistent {
            // Every write logged, flushed each second.
            conf.push_str("appendonly yes\nappendfsync everysec\nsave \"\"\n");
        } else {
            // A cache plan writes nothing as it runs, but saves a snapshot when stopped (Kiln
            // stopping, or killed: the kernel's death signal is SIGTERM), so keys outlive a
            // restart of Kiln; a crash of the server process itself loses them.
            conf.push_str(
                "appendonly no\nsave \"\"\nshutdown-on-sigterm save\ndbfilename dump.rdb\n",
            );
        }
        for cmd in ADMIN_COMMANDS {
            conf.push_str(&format!("rename-command {cmd} {}{cmd}\n", e.admin_prefix));
        }
        let path = dir.join("redis.conf");
        crate::state::write_private(&path, conf.as_bytes())?;
        Ok((vec![path.display().to_string()], Vec::new()))
    }

    fn ready<'a>(host: &'a str, c: &'a Common, _: &'a RedisExtra) -> BoxFuture<'a, Result<()>> {
        Box::pin(wait_ready(
            host,
            c.port,
            &c.password,
            Duration::from_secs(10),
        ))
    }

    fn provisioned(host: &str, c: &Common, e: &RedisExtra) -> Provisioned {
        Provisioned {
            config: [(
                "URL".to_string(),
                format!("redis://:{}@{}:{}", c.password, url_host(host), c.port),
            )]
            .into(),
            message: format!(
                "Redis {} is ready: {} of memory, policy {}.",
                c.name,
                human_bytes(plan_of(&c.plan).memory_bytes.unwrap_or(0)),
                e.policy
            ),
        }
    }

    fn check_plan<'a>(
        host: &'a str,
        c: &'a Common,
        _: &'a RedisExtra,
        plan: &'static Plan,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let used = used_memory(host, c).await.unwrap_or(0);
            match plan.memory_bytes {
                Some(limit) if used > limit => Err(kiln_model::Invalid::new(
                    "plan",
                    format!(
                        "The data ({}) do not fit in plan {} ({}): delete keys first",
                        human_bytes(used),
                        plan.name,
                        human_bytes(limit)
                    ),
                )
                .into()),
                _ => Ok(()),
            }
        })
    }

    fn log_line(line: &str) -> String {
        redis_line(line)
    }
}

/// What `redis:info` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisInfo {
    pub plan: String,
    pub version: String,
    pub used_memory: u64,
    pub max_memory: u64,
    pub policy: String,
    pub clients: u64,
    pub max_clients: u32,
    pub keys: u64,
    pub persistence: &'static str,
}

/// `redis:info`: figures from the server's own `INFO`.
pub async fn info(p: &RedisProvider, addon_id: &str) -> Result<RedisInfo> {
    let (host, c, e) = p.facts(addon_id)?;
    let text = query(&host, &c, "INFO everything")
        .await
        .map_err(|err| AddonError::Service {
            context: format!("asking {} for its figures", c.name),
            message: err.to_string(),
        })?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let keys = text
        .lines()
        .filter_map(|l| l.strip_prefix("db"))
        .filter_map(|l| {
            l.split_once("keys=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let plan = plan_of(&c.plan);
    Ok(RedisInfo {
        plan: c.plan.clone(),
        version: field("redis_version"),
        used_memory: field("used_memory").parse().unwrap_or(0),
        max_memory: plan.memory_bytes.unwrap_or(0),
        policy: e.policy.clone(),
        clients: field("connected_clients")
            .parse::<u64>()
            .unwrap_or(1)
            .saturating_sub(1),
        max_clients: plan.connections.unwrap_or(0),
        keys,
        persistence: if plan.persistent {
            "AOF (every second)"
        } else {
            "snapshot when stopped"
        },
    })
}

/// `redis:maxmemory --policy P`: the eviction policy, kept across restarts.
pub async fn set_policy(p: &RedisProvider, addon_id: &str, policy: &str) -> Result<()> {
    if !kiln_model::addon::REDIS_POLICIES.contains(&policy) {
        return Err(kiln_model::Invalid::new(
            "maxmemory_policy",
            format!(
                "{} is not one of {}",
                kiln_model::records::shown(policy),
                kiln_model::addon::REDIS_POLICIES.join(", ")
            ),
        )
        .into());
    }
    let policy = policy.to_string();
    p.update_extra(addon_id, move |e| e.policy = policy).await
}

/// One inline command's whole reply (after AUTH), as text.
async fn query(host: &str, c: &Common, command: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect((host, c.port)).await?;
    let mut req = format!(
        "*2\r\n$4\r\nAUTH\r\n${}\r\n{}\r\n",
        c.password.len(),
        c.password
    );
    let words: Vec<&str> = command.split_whitespace().collect();
    req.push_str(&format!("*{}\r\n", words.len()));
    for w in &words {
        req.push_str(&format!("${}\r\n{w}\r\n", w.len()));
    }
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // +OK, then a bulk string: `$<len>\r\n<text>\r\n`.
    loop {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("no answer"))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(rest) = text.strip_prefix("+OK\r\n") {
            if rest.starts_with('-') {
                return Err(std::io::Error::other(rest.trim().to_string()));
            }
            if let Some((len, body)) = rest.strip_prefix('$').and_then(|r| r.split_once("\r\n")) {
                let len: usize = len.parse().map_err(std::io::Error::other)?;
                if body.len() >= len {
                    return Ok(body[..len].to_string());
                }
            }
        } else if text.starts_with('-') {
            return Err(std::io::Error::other(text.trim().to_string()));
        }
        if buf.len() > 1 << 20 {
            break;
        }
    }
    Err(std::io::Error::other("an incomplete answer"))
}

/// Makes the Redis provider.
pub fn provider(config: AddonsConfig) -> Arc<RedisProvider> {
    RedisProvider::new(config)
}

/// Redis's own log line without its pid and timestamp prefix (the stream has its own).
fn redis_line(line: &str) -> String {
    // "1234:M 05 Dec 2026 02:00:00.000 * Ready to accept connections tcp"
    match line.split_once(' ') {
        Some((pid_role, rest)) if pid_role.contains(':') => {
            rest.splitn(5, ' ').nth(4).unwrap_or(rest).to_string()
        }
        _ => line.to_string(),
    }
}

/// An IPv6 address in a URL goes in brackets.
pub(crate) fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

pub(crate) fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{} GB", b >> 30)
    } else {
        format!("{} MB", b >> 20)
    }
}

/// Waits until the server accepts the password and answers PING.
pub async fn wait_ready(host: &str, port: u16, password: &str, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match ping(host, port, password).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(AddonError::Service {
                context: format!("starting redis-server on port {port}"),
                message: format!("it did not answer within {limit:?}: {last}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn ping(host: &str, port: u16, password: &str) -> std::io::Result<()> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    let req = format!(
        "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n",
        password.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    while !String::from_utf8_lossy(&buf).contains("PONG") {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("no answer"))??;
        if n == 0 || buf.len() > 4096 {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&buf).trim().to_string(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.starts_with(b"-") {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&buf).trim().to_string(),
            ));
        }
    }
    Ok(())
}

/// `used_memory` from `INFO memory`.
async fn used_memory(host: &str, c: &Common) -> std::io::Result<u64> {
    let text = query(host, c, "INFO memory").await?;
    text.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no used_memory in INFO"))
}

pub(crate) fn secret() -> Result<String> {
    kiln_model::secret::new_secret().map_err(|e| AddonError::Service {
        context: "making a password".into(),
        message: e.to_string(),
    })
}
