//! `heroku-postgresql`. `essential-*` plans: a database and a role of their own in one
//! PostgreSQL cluster Kiln runs (created with `initdb` on first use under the data dir) or in
//! an operator's server (`--addons-postgres-url`). The role owns only its database, is no
//! superuser, cannot create roles or databases, replicate, or read server files; PUBLIC may
//! connect to no database; `pg_hba.conf` lets a role into the database of its own name only
//! (`sameuser`), and the admin in over the cluster's private socket only. Each role has the
//! plan's connection limit and a statement timeout.
//!
//! Storage is enforced as Heroku does: a check every `check_interval` compares each
//! database's size with its plan; one over its limit has its objects handed to a holder role
//! and gets back only SELECT, DELETE and TRUNCATE on them, so reads and deletes work and
//! writes are refused ("permission denied"); once back under, its objects are returned.
//! (The role owned them, and an owner could grant itself anything back: revoking privileges
//! from an owner would not hold.)
//!
//! `standard-*` plans (a server of their own) are not built yet: asking for one says so.

use crate::redis::{human_bytes, secret, url_host};
use crate::state::{StateDir, create_private_dir, write_private};
use crate::supervise::{ProcSpec, Supervised};
use crate::system::{chown_tree, free_port, is_root, require, run_admin, system_user};
use crate::{AddonError, AddonsConfig, BoxFuture, Provider, ProvisionRequest, Provisioned, Result};
use kiln_model::LogLine;
use kiln_model::addon::{Plan, Service};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn service() -> &'static Service {
    Service::find("heroku-postgresql").expect("heroku-postgresql is in the catalogue")
}

fn plan_of(name: &str) -> &'static Plan {
    service().plan(name).unwrap_or(&service().plans[0])
}

/// Heroku's default statement timeout is none; Kiln sets one as a default a session can
/// lower or raise, so a runaway query does not hold a shared server forever.
const STATEMENT_TIMEOUT: &str = "30min";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DbState {
    app_id: String,
    name: String,
    plan: String,
    /// Role and database name (the same: `pg_hba.conf` admits `sameuser`).
    role: String,
    password: String,
    /// Whether writes are refused for being over the storage limit.
    #[serde(default)]
    restricted: bool,
    /// A cluster of its own (a `standard-*` plan), under `<addons>/postgres/<role>`.
    #[serde(default)]
    dedicated: bool,
}

/// What `pg:info` shows of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub plan: String,
    pub bytes: u64,
    pub bytes_limit: u64,
    pub tables: u64,
    pub connections: u64,
    pub connections_limit: u32,
    pub version: String,
    /// Over its storage limit: writes refused.
    pub restricted: bool,
}

/// One session of a database, as `pg:ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub pid: u32,
    pub state: String,
    pub source: String,
    pub running_secs: i64,
    pub waiting: bool,
    pub query: String,
}

/// Where the shared plans live.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClusterState {
    port: u16,
}

pub struct PostgresProvider {
    config: AddonsConfig,
    states: StateDir,
    cluster: tokio::sync::Mutex<Option<Arc<Cluster>>>,
    /// Dedicated (`standard-*`) add-ons' own clusters, by add-on id.
    dedicated: tokio::sync::Mutex<std::collections::HashMap<String, Arc<Cluster>>>,
    /// Where dedicated clusters' memory limits live (none without cgroups).
    cgroups: Option<kiln_runtime::cgroup::Cgroups>,
    ops: tokio::sync::Mutex<()>,
    checker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    me: std::sync::Weak<PostgresProvider>,
    /// Which app owns each database (by role name): where the clusters' log lines go. Kept
    /// in memory so that routing a line reads no file.
    owners: Arc<Mutex<std::collections::HashMap<String, String>>>,
}

/// A PostgreSQL server Kiln administers with `psql`.
struct Cluster {
    /// `psql`'s connection: a URL, or the socket directory and port of Kiln's own cluster.
    admin: Admin,
    /// The host and port in apps' URLs.
    host: String,
    port: u16,
    psql: PathBuf,
    process: Option<Supervised>,
}

enum Admin {
    Socket { dir: PathBuf, port: u16 },
    Url(String),
}

impl Cluster {
    /// Runs SQL as the admin, in `database`; returns psql's unaligned output.
    async fn sql(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = tokio::process::Command::new(&self.psql);
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        match &self.admin {
            Admin::Socket { dir, port } => {
                cmd.arg("-h").arg(dir).args([
                    "-p",
                    &port.to_string(),
                    "-U",
                    "kiln",
                    "-d",
                    database,
                ]);
            }
            Admin::Url(url) => {
                cmd.args(["-d", &with_database(url, database)]);
            }
        }
        cmd.env("PGCONNECT_TIMEOUT", "10");
        run_admin(
            "running SQL on the add-ons' PostgreSQL",
            &mut cmd,
            Some(sql.as_bytes()),
        )
        .await
    }
}

impl PostgresProvider {
    pub fn new(config: AddonsConfig) -> Arc<PostgresProvider> {
        let states = StateDir::new(config.dir.join("postgres").join("state"));
        // A cgroup group of their own, apart from the dyno manager's (which sweeps its own).
        let cgroups = kiln_runtime::cgroup::Layout::detect().map(|l| {
            kiln_runtime::cgroup::Cgroups::new(
                l,
                &format!(
                    "addons-{}",
                    kiln_runtime::cgroup::instance_name(&config.dir)
                ),
            )
        });
        // The databases already provisioned, read once.
        let owners = states
            .ids()
            .iter()
            .filter_map(|id| states.load::<DbState>(id).ok().flatten())
            .map(|s| (s.role, s.app_id))
            .collect();
        Arc::new_cyclic(|me| PostgresProvider {
            owners: Arc::new(Mutex::new(owners)),
            config,
            states,
            cluster: tokio::sync::Mutex::new(None),
            dedicated: tokio::sync::Mutex::default(),
            cgroups,
            ops: tokio::sync::Mutex::new(()),
            checker: Mutex::new(None),
            me: me.clone(),
        })
    }

    fn shared_dir(&self) -> PathBuf {
        self.config.dir.join("postgres").join("shared")
    }

    fn dedicated_dir(&self, role: &str) -> PathBuf {
        self.config.dir.join("postgres").join(role)
    }

    /// A memory-limited cgroup for a dedicated cluster; the files its process joins.
    fn memory_cgroup(&self, name: &str, memory: u64) -> Result<Vec<PathBuf>> {
        let Some(cgroups) = &self.cgroups else {
            tracing::warn!(cluster = %name, "no cgroups on this machine: a dedicated database runs without its memory limit");
            return Ok(Vec::new());
        };
        let limits = kiln_runtime::Limits {
            memory_bytes: Some(memory),
            memory_hard_bytes: Some(memory),
            ..Default::default()
        };
        let cg = cgroups
            .create(name, &limits)
            .map_err(|e| AddonError::Service {
                context: format!("limiting {name}'s memory"),
                message: e.to_string(),
            })?;
        Ok(cg.procs_files())
    }

    /// The cgroup directories a dedicated add-on's cluster runs in (for its limits and
    /// figures); empty for a shared one or without cgroups.
    pub fn cgroup_dirs(&self, addon_id: &str) -> Vec<PathBuf> {
        let Ok(Some(s)) = self.states.load::<DbState>(addon_id) else {
            return Vec::new();
        };
        match (&self.cgroups, s.dedicated) {
            (Some(c), true) => c
                .create(&s.role, &kiln_runtime::Limits::default())
                .map(|cg| cg.dirs().to_vec())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The cluster an add-on's database lives in: the shared one, or its own (started, and
    /// created, on first use).
    async fn cluster_for(&self, s: &DbState) -> Result<Arc<Cluster>> {
        if !s.dedicated {
            return self.cluster().await;
        }
        let mut map = self.dedicated.lock().await;
        if let Some(c) = map.get(&s.role) {
            return Ok(c.clone());
        }
        let psql = Self::program("psql")?;
        let memory = plan_of(&s.plan).memory_bytes;
        let cluster = Arc::new(
            self.start_cluster(psql, self.dedicated_dir(&s.role), &s.role, memory)
                .await?,
        );
        map.insert(s.role.clone(), cluster.clone());
        self.start_checker();
        Ok(cluster)
    }

    /// Stops a dedicated cluster and removes it, its data and its cgroup.
    async fn remove_dedicated(&self, role: &str) -> Result<()> {
        let cluster = self.dedicated.lock().await.remove(role);
        if let Some(c) = cluster {
            if let Some(p) = &c.process {
                p.stop().await;
            }
        }
        if let Some(cg) = &self.cgroups {
            if let Ok(group) = cg.create(role, &kiln_runtime::Limits::default()) {
                let _ = group.remove();
            }
        }
        let dir = self.dedicated_dir(role);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AddonError::Io {
                context: format!("removing {}", dir.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn bin_dirs() -> Vec<PathBuf> {
        // Debian keeps the server programs out of $PATH, one directory per major version;
        // the newest is used.
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|e| e.flatten().map(|e| e.path().join("bin")).collect())
            .unwrap_or_default();
        dirs.sort_by_key(|d| {
            d.parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
        dirs.reverse();
        dirs
    }

    fn program(name: &'static str) -> Result<PathBuf> {
        require(service().name, name, "postgresql", &Self::bin_dirs())
    }

    /// The cluster the shared plans use, started (and created) on first use.
    async fn cluster(&self) -> Result<Arc<Cluster>> {
        let mut guard = self.cluster.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let psql = Self::program("psql")?;
        let cluster = match &self.config.postgres_url {
            Some(url) => {
                let (host, port) = url_host_port(url);
                Cluster {
                    admin: Admin::Url(url.clone()),
                    host,
                    port,
                    psql,
                    process: None,
                }
            }
            None => {
                self.start_cluster(psql, self.shared_dir(), "postgresql-shared", None)
                    .await?
            }
        };
        let cluster = Arc::new(cluster);
        *guard = Some(cluster.clone());
        self.start_checker();
        Ok(cluster)
    }

    /// Creates (once) and starts a cluster Kiln runs in `dir` (the shared one, or a dedicated
    /// add-on's, limited to `memory` bytes by a cgroup of its own), and waits until it accepts
    /// connections.
    async fn start_cluster(
        &self,
        psql: PathBuf,
        dir: PathBuf,
        name: &str,
        memory: Option<u64>,
    ) -> Result<Cluster> {
        let initdb = Self::program("initdb")?;
        let postgres = Self::program("postgres")?;
        let data = dir.join("data");
        let run = dir.join("run");
        crate::state::create_passable_dir(&self.config.dir)?;
        crate::state::create_passable_dir(&self.config.dir.join("postgres"))?;
        create_private_dir(&dir)?;
        create_private_dir(&run)?;
        let user = if is_root() {
            Some(system_user("kiln-postgres")?)
        } else {
            None
        };
        let states = StateDir::new(dir.clone());
        let port = match states.load::<ClusterState>("cluster")? {
            Some(c) => c.port,
            None => {
                let c = ClusterState {
                    port: free_port(&self.config.host)?,
                };
                states.save("cluster", &c)?;
                c.port
            }
        };
        if let Some((uid, gid)) = user {
            chown_tree(&dir, uid, gid)?;
        }
        if !data.join("PG_VERSION").exists() {
            let _ = std::fs::remove_dir_all(&data);
            let mut cmd = tokio::process::Command::new(&initdb);
            cmd.arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "kiln",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ])
                .env("LC_ALL", "C.UTF-8");
            if let Some((uid, gid)) = user {
                cmd.uid(uid).gid(gid);
            }
            run_admin(
                "creating the add-ons' PostgreSQL cluster (initdb)",
                &mut cmd,
                None,
            )
            .await?;
        }
        // Kiln's settings, rewritten at each start.
        let conf = format!(
            "# Written by Kiln at each start.\n\
             listen_addresses = '{host}'\nport = {port}\n\
             unix_socket_directories = '{run}'\nunix_socket_permissions = 0700\n\
             max_connections = 500\npassword_encryption = 'scram-sha-256'\n\
             log_destination = 'stderr'\nlogging_collector = off\n\
             log_line_prefix = '[%d] '\nlog_timezone = 'UTC'\ntimezone = 'UTC'\n\
             shared_buffers = '{buffers}MB'\nfsync = on\n",
            host = self.config.host,
            run = run.display(),
            // A quarter of a dedicated server's memory, as PostgreSQL's guidance has it.
            buffers = memory.map_or(128, |m| (m >> 20) / 4).clamp(32, 8192),
        );
        write_private(&data.join("kiln.conf"), conf.as_bytes())?;
        let main_conf = data.join("postgresql.conf");
        let text = std::fs::read_to_string(&main_conf)
            .map_err(AddonError::io("reading postgresql.conf"))?;
        if !text.contains("include = 'kiln.conf'") {
            write_private(
                &main_conf,
                format!("{text}\ninclude = 'kiln.conf'\n").as_bytes(),
            )?;
        }
        // The admin only over the private socket; every other role only into its own
        // database, with a password.
        let hba = "# Written by Kiln at each start.\n\
                   local all kiln trust\n\
                   host sameuser all 0.0.0.0/0 scram-sha-256\n\
                   host sameuser all ::/0 scram-sha-256\n";
        write_private(&data.join("pg_hba.conf"), hba.as_bytes())?;
        if let Some((uid, gid)) = user {
            chown_tree(&dir, uid, gid)?;
        }
        let cgroup_procs = match memory {
            Some(m) => self.memory_cgroup(name, m)?,
            None => Vec::new(),
        };
        let logs = self.config.logs.clone();
        let owners = self.owners.clone();
        let process = Supervised::start(
            ProcSpec {
                name: name.into(),
                program: postgres,
                args: vec!["-D".into(), data.display().to_string()],
                env: vec![("LC_ALL".into(), "C.UTF-8".into())],
                cwd: dir.clone(),
                user,
                // A fast shutdown: clients are disconnected, data written, no recovery later.
                stop_signal: libc::SIGINT,
                cgroup_procs,
            },
            Arc::new(move |line: &str| route_line(&owners, logs.as_ref(), line)),
        );
        let cluster = Cluster {
            admin: Admin::Socket {
                dir: run.clone(),
                port,
            },
            host: self.config.host.clone(),
            port,
            psql,
            process: Some(process),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match cluster.sql("postgres", "SELECT 1").await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    if let Some(p) = &cluster.process {
                        p.stop().await;
                    }
                    return Err(AddonError::Service {
                        context: "starting the add-ons' PostgreSQL cluster".into(),
                        message: e.to_string(),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        // Nobody but the admin and each database's own role connects anywhere.
        cluster
            .sql(
                "postgres",
                "REVOKE CONNECT, TEMP ON DATABASE postgres, template1 FROM PUBLIC;",
            )
            .await?;
        Ok(cluster)
    }

    fn url(&self, cluster: &Cluster, s: &DbState) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            s.role,
            s.password,
            url_host(&cluster.host),
            cluster.port,
            s.role
        )
    }

    fn provisioned(&self, cluster: &Cluster, s: &DbState) -> Provisioned {
        let plan = plan_of(&s.plan);
        Provisioned {
            config: [("URL".to_string(), self.url(cluster, s))].into(),
            message: format!(
                "Database {} is ready: up to {} and {} connections.",
                s.name,
                human_bytes(plan.storage_bytes.unwrap_or(0)),
                plan.connections.unwrap_or(0)
            ),
        }
    }

    /// Creates the role and database (each step safe to repeat).
    async fn create_database(&self, cluster: &Cluster, s: &DbState, plan: &Plan) -> Result<()> {
        let role = &s.role;
        let limit = plan.connections.unwrap_or(20);
        let exists = cluster
            .sql(
                "postgres",
                &format!("SELECT 1 FROM pg_roles WHERE rolname = '{role}';"),
            )
            .await?;
        if exists.trim().is_empty() {
            cluster
                .sql(
                    "postgres",
                    &format!(
                        "CREATE ROLE {role} LOGIN PASSWORD '{pw}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT {limit};\n\
                         CREATE ROLE {role}_quota NOLOGIN NOINHERIT;",
                        pw = s.password
                    ),
                )
                .await?;
        }
        let db = cluster
            .sql(
                "postgres",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{role}';"),
            )
            .await?;
        if db.trim().is_empty() {
            // CREATE DATABASE cannot run in a transaction block: its own statement.
            cluster
                .sql(
                    "postgres",
                    &format!(
                        "CREATE DATABASE {role} OWNER {role} TEMPLATE template0 ENCODING 'UTF8';"
                    ),
                )
                .await?;
        }
        cluster
            .sql(
                "postgres",
                &format!(
                    "REVOKE ALL ON DATABASE {role} FROM PUBLIC;\n\
                     GRANT CONNECT, TEMP ON DATABASE {role} TO {role};\n\
                     ALTER DATABASE {role} CONNECTION LIMIT {limit};\n\
                     ALTER ROLE {role} SET statement_timeout = '{STATEMENT_TIMEOUT}';\n\
                     ALTER ROLE {role} SET idle_in_transaction_session_timeout = '1h';\n\
                     ALTER ROLE {role} SET temp_file_limit = '{temp}';",
                    temp = temp_limit(plan)
                ),
            )
            .await?;
        cluster
            .sql(role, "CREATE SCHEMA IF NOT EXISTS heroku_ext;")
            .await?;
        cluster
            .sql(role, &format!("ALTER SCHEMA heroku_ext OWNER TO {role};"))
            .await?;
        Ok(())
    }

    async fn drop_database(&self, cluster: &Cluster, role: &str) -> Result<()> {
        cluster
            .sql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {role} WITH (FORCE);"),
            )
            .await?;
        cluster
            .sql(
                "postgres",
                &format!("DROP ROLE IF EXISTS {role};\nDROP ROLE IF EXISTS {role}_quota;"),
            )
            .await?;
        Ok(())
    }

    /// Database sizes by name.
    async fn sizes(&self, cluster: &Cluster) -> Result<Vec<(String, u64)>> {
        let out = cluster
            .sql(
                "postgres",
                "SELECT datname || '|' || pg_database_size(datname) FROM pg_database WHERE datname LIKE 'd%';",
            )
            .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let (n, s) = l.split_once('|')?;
                Some((n.to_string(), s.trim().parse().ok()?))
            })
            .collect())
    }

    /// Refuses or allows writes to one database (see the module doc).
    async fn set_restricted(&self, cluster: &Cluster, role: &str, on: bool) -> Result<()> {
        let sql = if on {
            format!(
                "REASSIGN OWNED BY {role} TO {role}_quota;\n\
                 DO $$DECLARE s text; BEGIN\n\
                   FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP\n\
                     EXECUTE format('GRANT USAGE ON SCHEMA %I TO {role}', s);\n\
                     EXECUTE format('GRANT SELECT, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA %I TO {role}', s);\n\
                     EXECUTE format('GRANT SELECT, USAGE ON ALL SEQUENCES IN SCHEMA %I TO {role}', s);\n\
                   END LOOP; END$$;\n\
                 GRANT CONNECT, TEMP ON DATABASE {role} TO {role};"
            )
        } else {
            format!("REASSIGN OWNED BY {role}_quota TO {role};")
        };
        cluster.sql(role, &sql).await.map(|_| ())
    }

    /// Removes an add-on's facts (its database is gone).
    fn forget(&self, addon_id: &str, role: &str) -> Result<()> {
        self.owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(role);
        self.states.remove(addon_id)
    }

    /// The add-on's database and the cluster it lives in.
    async fn database(&self, addon_id: &str) -> Result<(Arc<Cluster>, DbState)> {
        let s = self
            .states
            .load::<DbState>(addon_id)?
            .ok_or_else(|| AddonError::Service {
                context: "finding an add-on's database".into(),
                message: "the add-on has no database".into(),
            })?;
        Ok((self.cluster_for(&s).await?, s))
    }

    /// A client program connected to the add-on's database as its own role (the password in
    /// the environment, not on a command line anyone can read).
    fn client(
        cluster: &Cluster,
        s: &DbState,
        program: &std::path::Path,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args([
            "-h",
            &cluster.host,
            "-p",
            &cluster.port.to_string(),
            "-U",
            &s.role,
            "-d",
            &s.role,
        ])
        .env("PGPASSWORD", &s.password)
        .env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// Dumps the database in pg_dump's custom format to `to`, then checks the dump reads back
    /// (`pg_restore --list`); returns its size.
    pub async fn dump(&self, addon_id: &str, to: &std::path::Path) -> Result<u64> {
        let (cluster, s) = self.database(addon_id).await?;
        let pg_dump = Self::program("pg_dump")?;
        let pg_restore = Self::program("pg_restore")?;
        let mut cmd = Self::client(&cluster, &s, &pg_dump);
        cmd.args(["--format=custom", "--no-acl", "--no-owner", "--file"])
            .arg(to);
        run_admin("pg_dump", &mut cmd, None).await?;
        let mut check = tokio::process::Command::new(pg_restore);
        check.arg("--list").arg(to);
        run_admin("checking the backup (pg_restore --list)", &mut check, None).await?;
        std::fs::metadata(to)
            .map(|m| m.len())
            .map_err(AddonError::io(format!("reading {}", to.display())))
    }

    /// Empties the database: dropped and made again, same name, role and password.
    pub async fn reset(&self, addon_id: &str) -> Result<()> {
        let (cluster, s) = self.database(addon_id).await?;
        let _op = self.ops.lock().await;
        cluster
            .sql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE);", s.role),
            )
            .await?;
        self.create_database(&cluster, &s, plan_of(&s.plan)).await
    }

    /// Replaces the database's contents with a dump's (reset, then `pg_restore` as the role).
    pub async fn restore(&self, addon_id: &str, from: &std::path::Path) -> Result<()> {
        let pg_restore = Self::program("pg_restore")?;
        self.reset(addon_id).await?;
        let (cluster, s) = self.database(addon_id).await?;
        let mut cmd = Self::client(&cluster, &s, &pg_restore);
        // The dump may hold what a new database already has (schema heroku_ext): dropped first.
        cmd.args([
            "--no-acl",
            "--no-owner",
            "--clean",
            "--if-exists",
            "--exit-on-error",
        ])
        .arg(from);
        run_admin("pg_restore", &mut cmd, None).await.map(|_| ())
    }

    /// What `pg:info` shows.
    pub async fn info(&self, addon_id: &str) -> Result<DatabaseInfo> {
        let (cluster, s) = self.database(addon_id).await?;
        let psql = Self::program("psql")?;
        let mut cmd = Self::client(&cluster, &s, &psql);
        cmd.args(["-X", "-q", "-A", "-t", "-F", "|", "-c"]).arg(
            "SELECT pg_database_size(current_database()), \
             (SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')), \
             (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()), \
             current_setting('server_version')",
        );
        let out = run_admin("reading the database's figures", &mut cmd, None).await?;
        let f: Vec<&str> = out.trim().split('|').collect();
        let num = |i: usize| {
            f.get(i)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let plan = plan_of(&s.plan);
        Ok(DatabaseInfo {
            plan: s.plan.clone(),
            bytes: num(0),
            bytes_limit: plan.storage_bytes.unwrap_or(0),
            tables: num(1),
            // This query's own connection is not the app's.
            connections: num(2).saturating_sub(1),
            connections_limit: plan.connections.unwrap_or(0),
            version: f.get(3).map(|v| v.trim().to_string()).unwrap_or_default(),
            restricted: s.restricted,
        })
    }

    /// `pg:ps`: the database's sessions other than this one (as its own role, which sees its
    /// own sessions' queries): `pid|state|source|seconds running|waiting|query` rows.
    pub async fn activity(&self, addon_id: &str) -> Result<Vec<Session>> {
        let (cluster, s) = self.database(addon_id).await?;
        let psql = Self::program("psql")?;
        let mut cmd = Self::client(&cluster, &s, &psql);
        cmd.args(["-X", "-q", "-A", "-t", "-F", "\u{1f}", "-R", "\u{1e}", "-c"])
            .arg(
                "SELECT pid, coalesce(state, ''), coalesce(application_name, ''), \
             coalesce(extract(epoch FROM now() - query_start)::bigint, 0), \
             wait_event IS NOT NULL, query \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
             ORDER BY query_start",
            );
        let out = run_admin("reading the database's sessions", &mut cmd, None).await?;
        Ok(out
            .split('\u{1e}')
            .filter_map(|row| {
                let f: Vec<&str> = row.trim_start_matches('\n').split('\u{1f}').collect();
                (f.len() == 6).then(|| Session {
                    pid: f[0].trim().parse().unwrap_or(0),
                    state: f[1].to_string(),
                    source: f[2].to_string(),
                    running_secs: f[3].trim().parse().unwrap_or(0),
                    waiting: f[4].trim() == "t",
                    query: f[5].trim_end().to_string(),
                })
            })
            .filter(|s| s.pid > 0)
            .collect())
    }

    /// `pg:kill PID [--force]`: cancels the session's query, or ends the session.
    pub async fn kill(&self, addon_id: &str, pid: u32, force: bool) -> Result<bool> {
        let (cluster, s) = self.database(addon_id).await?;
        let psql = Self::program("psql")?;
        let mut cmd = Self::client(&cluster, &s, &psql);
        let f = if force {
            "pg_terminate_backend"
        } else {
            "pg_cancel_backend"
        };
        cmd.args(["-X", "-q", "-A", "-t", "-c"]).arg(format!(
            "SELECT {f}(pid) FROM pg_stat_activity WHERE pid = {pid} AND datname = current_database()"
        ));
        let out = run_admin("ending a session", &mut cmd, None).await?;
        Ok(out.trim() == "t")
    }

    /// A new password for the database's role; returns the new config.
    pub async fn rotate_password(&self, addon_id: &str) -> Result<Provisioned> {
        let (cluster, mut s) = self.database(addon_id).await?;
        let _op = self.ops.lock().await;
        s.password = secret()?;
        cluster
            .sql(
                "postgres",
                &format!("ALTER ROLE {} PASSWORD '{}';", s.role, s.password),
            )
            .await?;
        self.states.save(addon_id, &s)?;
        // Sessions opened with the old password end now.
        cluster
            .sql(
                "postgres",
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{}';",
                    s.role
                ),
            )
            .await?;
        Ok(self.provisioned(&cluster, &s))
    }

    /// Refuses (or allows again) writes to an add-on's database, as the storage check does
    /// when it is over (or back under) its plan's limit.
    pub async fn restrict(&self, addon_id: &str, on: bool) -> Result<()> {
        let (cluster, mut s) = self.database(addon_id).await?;
        let _op = self.ops.lock().await;
        self.set_restricted(&cluster, &s.role, on).await?;
        s.restricted = on;
        self.states.save(addon_id, &s)
    }

    /// Compares every database's size with its plan, once.
    pub async fn check_storage(&self) -> Result<()> {
        let shared = self.cluster.lock().await.clone();
        let shared_sizes = match &shared {
            Some(c) => self.sizes(c).await?,
            None => Vec::new(),
        };
        let _op = self.ops.lock().await;
        for id in self.states.ids() {
            let Some(mut s) = self.states.load::<DbState>(&id)? else {
                continue;
            };
            let (cluster, sizes) = if s.dedicated {
                let Some(c) = self.dedicated.lock().await.get(&s.role).cloned() else {
                    continue;
                };
                let sizes = self.sizes(&c).await?;
                (c, sizes)
            } else {
                match &shared {
                    Some(c) => (c.clone(), shared_sizes.clone()),
                    None => continue,
                }
            };
            let Some(size) = sizes.iter().find(|(n, _)| *n == s.role).map(|(_, b)| *b) else {
                continue;
            };
            let limit = plan_of(&s.plan).storage_bytes.unwrap_or(u64::MAX);
            let over = size > limit;
            if over != s.restricted {
                self.set_restricted(&cluster, &s.role, over).await?;
                s.restricted = over;
                self.states.save(&id, &s)?;
                let line = if over {
                    format!(
                        "source=DATABASE addon={} Error: the database holds {} and its plan {} allows {}: writes are refused until it is back under (reads, DELETE and TRUNCATE still work)",
                        s.name,
                        human_bytes(size),
                        s.plan,
                        human_bytes(limit)
                    )
                } else {
                    format!(
                        "source=DATABASE addon={} The database is back under its plan's limit ({} of {}): writes are allowed again",
                        s.name,
                        human_bytes(size),
                        human_bytes(limit)
                    )
                };
                self.config
                    .logs
                    .emit(&s.app_id, LogLine::app("heroku-postgres", line));
            }
        }
        Ok(())
    }

    fn start_checker(&self) {
        let mut checker = self.checker.lock().unwrap_or_else(|e| e.into_inner());
        if checker.is_some() {
            return;
        }
        // The provider lives as long as the server; a weak handle keeps the task from
        // holding it alive after shutdown.
        let me = self.me.clone();
        let interval = self.config.check_interval;
        *checker = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(p) = me.upgrade() else { return };
                if let Err(e) = p.check_storage().await {
                    tracing::warn!(error = %e, "could not check the add-on databases' sizes");
                }
            }
        }));
    }
}

/// The most temporary files one session may write: a superuser-only setting, so the role
/// cannot raise it; a sort or hash spilling past it is cancelled instead of filling the disk.
fn temp_limit(plan: &Plan) -> String {
    let mb = plan
        .storage_bytes
        .map_or(1024, |b| (b >> 20).clamp(64, 4096));
    format!("{mb}MB")
}

/// The URL with its database replaced by `database` (names here never need escaping).
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    if query.is_empty() {
        format!("{scheme}://{authority}/{database}")
    } else {
        format!("{scheme}://{authority}/{database}?{query}")
    }
}

/// Host and port of a `postgres://` URL (for the URLs apps get).
fn url_host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or("");
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']').unwrap_or((v6, ""));
        return (
            h.to_string(),
            p.trim_start_matches(':').parse().unwrap_or(5432),
        );
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(5432)),
        None => (hostport.to_string(), 5432),
    }
}

/// A line of the shared cluster's log, `[database] message`, goes to the stream of the app
/// whose database it names; the cluster's own lines go to Kiln's log.
fn route_line(
    owners: &Mutex<std::collections::HashMap<String, String>>,
    logs: &dyn kiln_model::log::LogSink,
    line: &str,
) {
    if let Some((db, message)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        let app = owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(db)
            .cloned();
        if let Some(app_id) = app {
            logs.emit(
                &app_id,
                LogLine::app("heroku-postgres", format!("[DATABASE] {message}")),
            );
            return;
        }
        tracing::info!(target: "kiln_addons::postgres", "{message}");
    } else {
        tracing::info!(target: "kiln_addons::postgres", "{line}");
    }
}

/// The role and database name for an add-on: `d` and 15 hex digits of its id (PostgreSQL
/// names are at most 63 bytes; these are short, lowercase, and never need quoting).
fn role_name(addon_id: &str) -> String {
    let hex: String = addon_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .take(15)
        .collect();
    format!("d{hex}")
}

impl Provider for PostgresProvider {
    fn service(&self) -> &'static Service {
        service()
    }

    fn provision<'a>(&'a self, req: &'a ProvisionRequest) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            // The programs first: a missing PostgreSQL makes nothing.
            for program in ["initdb", "postgres", "psql"] {
                Self::program(program)?;
            }
            let s = match self.states.load::<DbState>(&req.addon_id)? {
                Some(s) => s,
                None => {
                    let s = DbState {
                        app_id: req.app_id.clone(),
                        name: req.addon_name.clone(),
                        plan: req.plan.name.to_string(),
                        role: role_name(&req.addon_id),
                        password: secret()?,
                        restricted: false,
                        dedicated: req.plan.dedicated,
                    };
                    self.states.save(&req.addon_id, &s)?;
                    self.owners
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(s.role.clone(), s.app_id.clone());
                    s
                }
            };
            let made = async {
                let cluster = self.cluster_for(&s).await?;
                let _op = self.ops.lock().await;
                self.create_database(&cluster, &s, req.plan).await?;
                Ok::<_, AddonError>(cluster)
            }
            .await;
            match made {
                Ok(cluster) => Ok(self.provisioned(&cluster, &s)),
                Err(e) => {
                    // Nothing half made.
                    if s.dedicated {
                        let _ = self.remove_dedicated(&s.role).await;
                    } else if let Ok(cluster) = self.cluster().await {
                        let _ = self.drop_database(&cluster, &s.role).await;
                    }
                    let _ = self.forget(&req.addon_id, &s.role);
                    Err(e)
                }
            }
        })
    }

    fn change_plan<'a>(
        &'a self,
        addon_id: &'a str,
        plan: &'static Plan,
    ) -> BoxFuture<'a, Result<Provisioned>> {
        Box::pin(async move {
            let (cluster, mut s) = self.database(addon_id).await?;
            if plan.dedicated != s.dedicated {
                return Err(AddonError::NotSupported(format!(
                    "Moving a database between the shared essential plans and a server of its own (heroku-postgresql:{}) is not built yet: capture a backup, create the new add-on, restore it there",
                    plan.name
                )));
            }
            let _op = self.ops.lock().await;
            let size = self
                .sizes(&cluster)
                .await?
                .into_iter()
                .find(|(n, _)| *n == s.role)
                .map_or(0, |(_, b)| b);
            if let Some(limit) = plan.storage_bytes {
                if size > limit {
                    return Err(kiln_model::Invalid::new(
                        "plan",
                        format!(
                            "The database holds {} and plan heroku-postgresql:{} allows {}: delete data first",
                            human_bytes(size),
                            plan.name,
                            human_bytes(limit)
                        ),
                    )
                    .into());
                }
            }
            let limit = plan.connections.unwrap_or(20);
            cluster
                .sql(
                    "postgres",
                    &format!(
                        "ALTER ROLE {r} CONNECTION LIMIT {limit};\nALTER DATABASE {r} CONNECTION LIMIT {limit};\nALTER ROLE {r} SET temp_file_limit = '{t}';",
                        r = s.role,
                        t = temp_limit(plan)
                    ),
                )
                .await?;
            s.plan = plan.name.to_string();
            self.states.save(addon_id, &s)?;
            if let (true, Some(memory), Some(cg)) = (s.dedicated, plan.memory_bytes, &self.cgroups)
            {
                // The new memory limit takes hold at once (written into the same group).
                let limits = kiln_runtime::Limits {
                    memory_bytes: Some(memory),
                    memory_hard_bytes: Some(memory),
                    ..Default::default()
                };
                cg.create(&s.role, &limits)
                    .map_err(|e| AddonError::Service {
                        context: format!("changing {}'s memory limit", s.name),
                        message: e.to_string(),
                    })?;
            }
            Ok(self.provisioned(&cluster, &s))
        })
    }

    fn deprovision<'a>(&'a self, addon_id: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let Some(s) = self.states.load::<DbState>(addon_id)? else {
                return Ok(());
            };
            if s.dedicated {
                self.remove_dedicated(&s.role).await?;
            } else {
                let cluster = self.cluster().await?;
                let _op = self.ops.lock().await;
                self.drop_database(&cluster, &s.role).await?;
            }
            self.forget(addon_id, &s.role)
        })
    }

    fn resume(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let states: Vec<DbState> = self
                .states
                .ids()
                .iter()
                .filter_map(|id| self.states.load::<DbState>(id).ok().flatten())
                .collect();
            if states.iter().any(|s| !s.dedicated) {
                if let Err(e) = self.cluster().await {
                    tracing::warn!(error = %e, "could not start the add-ons' PostgreSQL cluster");
                }
            }
            for s in states.iter().filter(|s| s.dedicated) {
                if let Err(e) = self.cluster_for(s).await {
                    tracing::warn!(addon = %s.name, error = %e, "could not start a dedicated PostgreSQL");
                }
            }
        })
    }

    fn held_before(&self, t: std::time::SystemTime) -> Vec<String> {
        self.states.ids_written_before(t)
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(h) = self
                .checker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                h.abort();
            }
            let mut all: Vec<Arc<Cluster>> = self.cluster.lock().await.take().into_iter().collect();
            all.extend(self.dedicated.lock().await.drain().map(|(_, c)| c));
            for c in all {
                if let Some(p) = &c.process {
                    p.stop().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(
            role_name("5F0D5F5C-6b9b-4f4e-9c2c-d0d4a0d8a3a1"),
            "d5f0d5f5c6b9b4f4"
        );
        assert_eq!(
            url_host_port("postgres://admin:pw@db.example:6543/postgres"),
            ("db.example".into(), 6543)
        );
        assert_eq!(url_host_port("postgres://admin@db/"), ("db".into(), 5432));
        assert_eq!(
            with_database("postgres://a:p@db:5/postgres?sslmode=require", "d1"),
            "postgres://a:p@db:5/d1?sslmode=require"
        );
        assert_eq!(
            with_database("postgresql://a@db", "d1"),
            "postgresql://a@db/d1"
        );
        assert_eq!(
            url_host_port("postgresql://[::1]:7000/x"),
            ("::1".into(), 7000)
        );
    }
}
