//! `heroku-redis`: one redis-server per add-on, as its own uid, with a password, the plan's
//! `maxmemory` and client cap, `noeviction` unless the add-on was created with another policy,
//! and persistence (an append-only file) on the plans that have it. The commands that would
//! let an app change its own limits or reach outside its server (`CONFIG`, `DEBUG`, `MODULE`,
//! `REPLICAOF`, `ACL`…) are renamed to a secret only Kiln knows.

use crate::state::{StateDir, create_private_dir, write_private};
use crate::supervise::{ProcSpec, Supervised};
use crate::system::{allocate_uid, chown_tree, free_port, is_root, require};
use crate::{AddonError, AddonsConfig, BoxFuture, Provider, ProvisionRequest, Provisioned, Result};
use kiln_model::LogLine;
use kiln_model::addon::{Plan, Service};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RedisState {
    app_id: String,
    name: String,
    plan: String,
    port: u16,
    password: String,
    /// The secret name `CONFIG` and the other admin commands are renamed to.
    admin_prefix: String,
    policy: String,
    uid: Option<u32>,
}

pub struct RedisProvider {
    config: AddonsConfig,
    states: StateDir,
    running: Mutex<HashMap<String, Arc<Supervised>>>,
    /// One operation per add-on at a time.
    ops: tokio::sync::Mutex<()>,
}

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

impl RedisProvider {
    pub fn new(config: AddonsConfig) -> Arc<RedisProvider> {
        let states = StateDir::new(config.dir.join("redis").join("state"));
        Arc::new(RedisProvider {
            config,
            states,
            running: Mutex::default(),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    fn dir(&self, addon_id: &str) -> PathBuf {
        self.config.dir.join("redis").join(addon_id)
    }

    fn url(&self, s: &RedisState) -> String {
        format!(
            "redis://:{}@{}:{}",
            s.password,
            url_host(&self.config.host),
            s.port
        )
    }

    fn provisioned(&self, s: &RedisState) -> Provisioned {
        Provisioned {
            config: [("URL".to_string(), self.url(s))].into(),
            message: format!(
                "Redis {} is ready: {} of memory, policy {}.",
                s.name,
                human_bytes(plan_of(&s.plan).memory_bytes.unwrap_or(0)),
                s.policy
            ),
        }
    }

    fn write_conf(&self, addon_id: &str, s: &RedisState) -> Result<PathBuf> {
        let plan = plan_of(&s.plan);
        let dir = self.dir(addon_id);
        let data = dir.join("data");
        crate::state::create_passable_dir(&self.config.dir)?;
        crate::state::create_passable_dir(&self.config.dir.join("redis"))?;
        create_private_dir(&data)?;
        let mut conf = format!(
            "# Written by Kiln for add-on {name}; changes are overwritten.\n\
             bind {host}\nport {port}\nprotected-mode yes\nrequirepass {pw}\n\
             maxmemory {mem}\nmaxmemory-policy {policy}\nmaxclients {clients}\n\
             dir {data}\ndaemonize no\nlogfile \"\"\nsupervised no\n\
             timeout 300\ntcp-keepalive 60\n",
            name = s.name,
            host = self.config.host,
            port = s.port,
            pw = s.password,
            mem = plan.memory_bytes.unwrap_or(25 << 20),
            policy = s.policy,
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
        for c in ADMIN_COMMANDS {
            conf.push_str(&format!("rename-command {c} {}{c}\n", s.admin_prefix));
        }
        let path = dir.join("redis.conf");
        write_private(&path, conf.as_bytes())?;
        if let Some(uid) = s.uid {
            chown_tree(&dir, uid, uid)?;
        }
        Ok(path)
    }

    /// Starts the add-on's server (if not running) and waits until it answers.
    async fn start(&self, addon_id: &str, s: &RedisState) -> Result<()> {
        let program = require(service().name, "redis-server", "redis-server", &[])?;
        let conf = self.write_conf(addon_id, s)?;
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(addon_id);
        if !running {
            let logs = self.config.logs.clone();
            let app_id = s.app_id.clone();
            let sup = Supervised::start(
                ProcSpec {
                    name: s.name.clone(),
                    program,
                    args: vec![conf.display().to_string()],
                    env: Vec::new(),
                    cwd: self.dir(addon_id),
                    user: s.uid.map(|u| (u, u)),
                    stop_signal: libc::SIGTERM,
                },
                Arc::new(move |line: &str| {
                    logs.emit(&app_id, LogLine::app("heroku-redis", redis_line(line)));
                }),
            );
            self.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(addon_id.to_string(), Arc::new(sup));
        }
        wait_ready(
            &self.config.host,
            s.port,
            &s.password,
            Duration::from_secs(10),
        )
        .await
    }

    async fn stop(&self, addon_id: &str) {
        let sup = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(addon_id);
        if let Some(sup) = sup {
            sup.stop().await;
        }
    }
}

fn plan_of(name: &str) -> &'static Plan {
    service().plan(name).unwrap_or(&service().plans[0])
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

impl Provider for RedisProvider {
    fn service(&self) -> &'static Service {
        service()
    }

    fn provision<'a>(&'a self, req: &'a ProvisionRequest) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            let _op = self.ops.lock().await;
            let s = match self.states.load::<RedisState>(&req.addon_id)? {
                Some(s) => s,
                None => {
                    // Fail before anything is made when the program is missing.
                    require(service().name, "redis-server", "redis-server", &[])?;
                    let uid = if is_root() {
                        Some(allocate_uid(&self.config.dir)?)
                    } else {
                        None
                    };
                    let s = RedisState {
                        app_id: req.app_id.clone(),
                        name: req.addon_name.clone(),
                        plan: req.plan.name.to_string(),
                        port: free_port(&self.config.host)?,
                        password: secret()?,
                        admin_prefix: secret()?,
                        policy: req
                            .options
                            .get("maxmemory_policy")
                            .cloned()
                            .unwrap_or_else(|| "noeviction".into()),
                        uid,
                    };
                    self.states.save(&req.addon_id, &s)?;
                    s
                }
            };
            if let Err(e) = self.start(&req.addon_id, &s).await {
                // Nothing half made: the process, its data and its state go.
                self.stop(&req.addon_id).await;
                let _ = std::fs::remove_dir_all(self.dir(&req.addon_id));
                let _ = self.states.remove(&req.addon_id);
                return Err(e);
            }
            Ok(self.provisioned(&s))
        })
    }

    fn change_plan<'a>(
        &'a self,
        addon_id: &'a str,
        plan: &'static Plan,
    ) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            let _op = self.ops.lock().await;
            let mut s =
                self.states
                    .load::<RedisState>(addon_id)?
                    .ok_or_else(|| AddonError::Service {
                        context: "changing a Redis plan".into(),
                        message: "the add-on has no server".into(),
                    })?;
            let used = used_memory(&self.config.host, &s).await.unwrap_or(0);
            if let Some(limit) = plan.memory_bytes {
                if used > limit {
                    return Err(kiln_model::Invalid::new(
                        "plan",
                        format!(
                            "The data ({}) does not fit in plan {} ({}): delete keys first",
                            human_bytes(used),
                            plan.name,
                            human_bytes(limit)
                        ),
                    )
                    .into());
                }
            }
            s.plan = plan.name.to_string();
            self.states.save(addon_id, &s)?;
            // The new limits take effect on a restart with the new configuration (the data
            // persist on persistent plans; a cache plan starts empty, as a resize does).
            self.stop(addon_id).await;
            self.start(addon_id, &s).await?;
            Ok(self.provisioned(&s))
        })
    }

    fn deprovision<'a>(&'a self, addon_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let _op = self.ops.lock().await;
            self.stop(addon_id).await;
            let dir = self.dir(addon_id);
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(AddonError::Io {
                        context: format!("removing {}", dir.display()),
                        source: e,
                    });
                }
                _ => {}
            }
            self.states.remove(addon_id)
        })
    }

    fn resume(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for id in self.states.ids() {
                if let Ok(Some(s)) = self.states.load::<RedisState>(&id) {
                    if let Err(e) = self.start(&id, &s).await {
                        tracing::warn!(addon = %s.name, error = %e, "could not start a Redis add-on");
                    }
                }
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let all: Vec<_> = self
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .map(|(_, s)| s)
                .collect();
            for s in all {
                s.stop().await;
            }
        })
    }
}

/// `used_memory` from `INFO memory`, through the renamed admin commands where needed.
async fn used_memory(host: &str, s: &RedisState) -> std::io::Result<u64> {
    let mut c = tokio::net::TcpStream::connect((host, s.port)).await?;
    let req = format!(
        "*2\r\n$4\r\nAUTH\r\n${}\r\n{}\r\n*2\r\n$4\r\nINFO\r\n$6\r\nmemory\r\n",
        s.password.len(),
        s.password
    );
    c.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(2), c.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("no answer"))??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
        {
            return Ok(v);
        }
        if buf.len() > 64 * 1024 {
            break;
        }
    }
    Err(std::io::Error::other("no used_memory in INFO"))
}

pub(crate) fn secret() -> Result<String> {
    kiln_model::secret::new_secret().map_err(|e| AddonError::Service {
        context: "making a password".into(),
        message: e.to_string(),
    })
}
