//! `kiln server`: every role of the platform in one process — API and git, router, builder,
//! dyno manager, logplex — with an embedded default (SQLite, native containers when root)
//! that needs nothing configured.

use anyhow::{Context, Result, bail};
use clap::Parser;
use kiln_model::log::SharedSink;
use kiln_model::route::{AppRoutes, DynoRoutes};
use kiln_store::Store;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kiln server",
    about = "Run the Kiln platform (API, git, router, builds, dynos, logs)"
)]
struct Args {
    /// Where Kiln keeps its state: SQLite database, git repos, slugs, build caches.
    #[arg(long, env = "KILN_DATA_DIR", default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// Address of the Platform API and git endpoint.
    #[arg(long, env = "KILN_API_LISTEN", default_value = "127.0.0.1:5000")]
    api_listen: SocketAddr,
    /// Address of the API's HTTPS listener (the API and git over TLS, and `heroku run`'s
    /// rendezvous), e.g. 127.0.0.1:5443. Off unless given. Heroku's CLI needs it: it writes
    /// https git remotes and attaches `run` over TLS. Its certificate is --api-tls-cert, or
    /// one from the local CA in <data-dir>/tls (clients trust tls/ca.crt) for localhost,
    /// the loopback addresses and --api-tls-name.
    #[arg(long, env = "KILN_API_TLS_LISTEN")]
    api_tls_listen: Option<SocketAddr>,
    /// A PEM certificate chain for the API's HTTPS listener (with --api-tls-key), instead of
    /// one from the local CA: for a host name clients reach the API by.
    #[arg(long, env = "KILN_API_TLS_CERT", requires = "api_tls_key")]
    api_tls_cert: Option<PathBuf>,
    /// The PEM private key of --api-tls-cert.
    #[arg(long, env = "KILN_API_TLS_KEY", requires = "api_tls_cert")]
    api_tls_key: Option<PathBuf>,
    /// More names for the local CA's API certificate (besides localhost, 127.0.0.1 and ::1):
    /// names under --domain, or loopback addresses. Comma-separated.
    #[arg(long, env = "KILN_API_TLS_NAME", value_delimiter = ',')]
    api_tls_name: Vec<String>,
    /// The file holding the master key that seals secrets in the database (64 hex digits),
    /// made on first start [default: <data-dir>/master.key]. `KILN_MASTER_KEY` overrides it.
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Who may make an account without an administrator: `open` (anyone who reaches the
    /// API), `invite` (only with an invitation, for the invited address) or `closed`.
    #[arg(long, env = "KILN_SIGNUP", default_value = "invite", value_parser = ["open", "invite", "closed"])]
    signup: String,
    /// API requests per hour per user; beyond it the API answers 429 until the budget
    /// refills (Heroku: 4500).
    #[arg(long, env = "KILN_API_RATE_LIMIT", default_value_t = kiln_platform::HEROKU_RATE_LIMIT_PER_HOUR, value_parser = clap::value_parser!(u32).range(1..))]
    api_rate_limit: u32,
    /// Address of the router that serves apps' HTTP traffic.
    #[arg(long, env = "KILN_ROUTER_LISTEN", default_value = "0.0.0.0:8080")]
    router_listen: SocketAddr,
    /// Address of the router's HTTPS listener (TLS with SNI; HTTP/2 or HTTP/1.1 by ALPN),
    /// e.g. 0.0.0.0:8443. Off unless given. An app's uploaded certificate (certs:add) is
    /// served for its hostnames, else one from a local CA kept in <data-dir>/tls (clients
    /// trust tls/ca.crt).
    #[arg(long, env = "KILN_ROUTER_TLS_LISTEN")]
    router_tls_listen: Option<SocketAddr>,
    /// Threads serving the router's client connections, each with its own event loop (as
    /// nginx's worker processes); 0 starts one per two cores, leaving the rest to dynos.
    #[arg(long, env = "KILN_ROUTER_WORKERS", default_value_t = 0)]
    router_workers: usize,
    /// Megabytes of memory for the router's HTTP cache (0 turns it off).
    #[arg(long, env = "KILN_ROUTER_CACHE_MB", default_value_t = 64)]
    router_cache_mb: usize,
    /// Apps answer at <app>.<domain>.
    #[arg(long, env = "KILN_DOMAIN", default_value = "localhost")]
    domain: String,
    /// The API's public base URL, used in git and log URLs (default: from --api-listen).
    #[arg(long, env = "KILN_API_URL")]
    api_url: Option<String>,
    /// How dynos run: container (isolated; needs root), process (no isolation), or auto.
    #[arg(long, env = "KILN_RUNTIME", default_value = "auto", value_parser = ["auto", "container", "process"])]
    runtime: String,
    /// Seconds a web dyno has to bind $PORT (Heroku's R10).
    #[arg(long, env = "KILN_BOOT_TIMEOUT", default_value_t = 60)]
    boot_timeout: u64,
    /// Seconds without a request after which a sleeping app's dynos sleep (eco dynos, and
    /// apps with `ps:autosleep on`, unless they set their own; Heroku: 30 minutes).
    #[arg(long, env = "KILN_SLEEP_AFTER", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    sleep_after: u64,
    /// Seconds the router holds a request for an app whose web dynos are booting or waking
    /// before it answers H20 (Heroku: 75).
    #[arg(long, env = "KILN_ROUTER_BOOT_HOLD", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..))]
    router_boot_hold: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping a dyno (Heroku's R12).
    #[arg(long, env = "KILN_STOP_TIMEOUT", default_value_t = 30)]
    stop_timeout: u64,
    /// Seconds a build may run.
    #[arg(long, env = "KILN_BUILD_TIMEOUT", default_value_t = 900)]
    build_timeout: u64,
    /// Megabytes of memory a build may use; past it the build is stopped and fails.
    #[arg(long, env = "KILN_BUILD_MEMORY", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(64..))]
    build_memory: u64,
    /// First cool-off in seconds before restarting a dyno that keeps crashing; it doubles.
    #[arg(long, env = "KILN_RESTART_BACKOFF", default_value_t = 10)]
    restart_backoff: u64,
    /// Longest cool-off in seconds between restarts of a crashing dyno.
    #[arg(long, env = "KILN_RESTART_BACKOFF_MAX", default_value_t = 1200)]
    restart_backoff_max: u64,
    /// Seconds after which every dyno is restarted ("Cycling"), plus a random jitter of up to
    /// 15% (Heroku: daily).
    #[arg(long, env = "KILN_CYCLE_INTERVAL", default_value_t = 86400)]
    cycle_interval: u64,
    /// Seconds each metrics point covers (Heroku: a minute); 0 keeps no metrics.
    #[arg(long, env = "KILN_METRICS_STEP", default_value_t = 60)]
    metrics_step: u64,
    /// Hours of metrics kept at one point per step.
    #[arg(long, env = "KILN_METRICS_FINE_HOURS", default_value_t = 24)]
    metrics_fine_hours: u64,
    /// Days of metrics kept at one point per ten steps.
    #[arg(long, env = "KILN_METRICS_COARSE_DAYS", default_value_t = 7)]
    metrics_coarse_days: u64,
    /// Seconds between the load and memory lines of apps with `log-runtime-metrics` on
    /// (Heroku: about 20).
    #[arg(long, env = "KILN_RUNTIME_METRICS_INTERVAL", default_value_t = 20)]
    runtime_metrics_interval: u64,
    /// Connections the API and git listener holds open at once; past it, new ones are
    /// closed unread. Lowered at start if the open-files limit cannot hold it.
    #[arg(long, env = "KILN_API_MAX_CONNECTIONS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    api_max_connections: u64,
    /// Of those, how many one client address may hold (an IPv6 /64 counts as one); 0: no cap.
    #[arg(long, env = "KILN_API_MAX_CONNECTIONS_PER_IP", default_value_t = 100)]
    api_max_connections_per_ip: u64,
    /// Seconds a client has to send a whole request head to the API; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "KILN_API_HEAD_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    api_head_timeout: u64,
    /// Seconds an API request body (a `git push` included) or response may make no progress.
    #[arg(long, env = "KILN_API_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    api_idle_timeout: u64,
    /// Client connections each router listener (HTTP, and HTTPS if on) holds open at once.
    /// Lowered at start if the open-files limit cannot hold it.
    #[arg(long, env = "KILN_ROUTER_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    router_max_connections: u64,
    /// Of those, how many one client address may hold; 0: no cap (behind a load balancer
    /// that is the only client, raise it or turn it off).
    #[arg(
        long,
        env = "KILN_ROUTER_MAX_CONNECTIONS_PER_IP",
        default_value_t = 1_000
    )]
    router_max_connections_per_ip: u64,
    /// Seconds a client has to send a whole request head to the router; also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, env = "KILN_ROUTER_HEAD_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    router_head_timeout: u64,
    /// Heroku's rolling idle window, in seconds: a dyno silent this long mid-response is
    /// H15, a client that stops sending or reading this long is H28.
    #[arg(long, env = "KILN_ROUTER_IDLE_TIMEOUT", default_value_t = 55, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    router_idle_timeout: u64,
    /// Megabytes a pushed commit's source may take once unpacked (Heroku: 1 GB); a larger
    /// push is refused with a message saying so.
    #[arg(long, env = "KILN_MAX_SOURCE_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_source_mb: u64,
    /// Megabytes of compressed objects one `git push` may send (git's receive.maxInputSize).
    #[arg(long, env = "KILN_MAX_PUSH_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_push_mb: u64,
    /// Megabytes a compiled, compressed slug may take (Heroku: 500 MB).
    #[arg(long, env = "KILN_MAX_SLUG_MB", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    max_slug_mb: u64,
    /// What the server logs: a level (`error`, `warn`, `info`, `debug`, `trace`), or
    /// per-module directives as in `RUST_LOG` (`info,kiln_router=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
    /// The address add-on services (PostgreSQL, Redis) listen on, and the host in their
    /// URLs: where dynos reach them.
    /// [default: the dyno network's services address, else 127.0.0.1]
    #[arg(long, env = "KILN_ADDONS_HOST")]
    addons_host: Option<String>,
    /// Each dyno's own network: `auto` (a free /20 in 10.200.0.0/13), a range such as
    /// `10.200.16.0/20` used for nothing else on this machine, or `off` (dynos share the
    /// host's network). Needs the container runtime and nftables.
    #[arg(long, env = "KILN_DYNO_NETWORK", default_value = "auto")]
    dyno_network: String,
    /// An existing PostgreSQL server (an admin URL, e.g. postgres://admin@db:5432/postgres)
    /// to hold the essential plans' databases, instead of a cluster Kiln runs itself.
    #[arg(long, env = "KILN_ADDONS_POSTGRES_URL")]
    addons_postgres_url: Option<String>,
    /// Seconds between checks of each add-on database's size against its plan.
    #[arg(long, env = "KILN_ADDONS_CHECK_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    addons_check_interval: u64,
    /// Log lines each app keeps on disk, read back after a restart and searched by `kiln
    /// logs --since/--until/--grep` (Heroku keeps 1,500).
    #[arg(long, env = "KILN_LOG_HISTORY_LINES", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    log_history_lines: u64,
    /// Megabytes of log history each app keeps on disk, at most.
    #[arg(long, env = "KILN_LOG_HISTORY_MB", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    log_history_mb: u64,
    /// Days a log line is kept, at most (Heroku: a week).
    #[arg(long, env = "KILN_LOG_HISTORY_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    log_history_days: u64,
    #[command(flatten)]
    acme: crate::acme::AcmeArgs,
    #[command(flatten)]
    drains: crate::drains::DrainArgs,
}

/// Connection caps for each listener that fit the open-files limit, which is first raised
/// as far as allowed; says so when a cap had to be lowered. Returns (API, router).
fn connection_limits(args: &Args) -> (kiln_net::ConnLimits, kiln_net::ConnLimits) {
    if let Ok(given) = kiln_net::nofile::current() {
        kiln_runtime::set_dyno_open_files(given.soft);
    }
    let limits = match kiln_net::nofile::raise() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "could not read or raise the open-files limit; assuming 1024");
            kiln_net::nofile::Limits {
                soft: 1024,
                hard: 1024,
            }
        }
    };
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    // A router connection holds a dyno connection too; HTTPS counts apart from HTTP.
    let mut wants = vec![
        kiln_net::nofile::Want {
            wanted: size(args.api_max_connections),
            fds_per_connection: 1,
        },
        kiln_net::nofile::Want {
            wanted: size(args.router_max_connections),
            fds_per_connection: 2,
        },
    ];
    if args.api_tls_listen.is_some() {
        wants.push(kiln_net::nofile::Want {
            wanted: size(args.api_max_connections),
            fds_per_connection: 1,
        });
    }
    if args.router_tls_listen.is_some() {
        wants.push(kiln_net::nofile::Want {
            wanted: size(args.router_max_connections),
            fds_per_connection: 2,
        });
    }
    let budget = kiln_net::nofile::budgets(limits.soft, &wants);
    if budget.lowered {
        tracing::warn!(
            open_files = limits.soft,
            api = budget.caps[0],
            router = budget.caps[1],
            "the open-files limit is low for the configured connection caps, which are lowered to fit it (raise it with `ulimit -n` or systemd's LimitNOFILE=)"
        );
    }
    let per_ip = |n: u64, total: usize| size(n).min(total);
    let api = kiln_net::ConnLimits {
        total: budget.caps[0],
        per_ip: per_ip(args.api_max_connections_per_ip, budget.caps[0]),
    };
    let router = kiln_net::ConnLimits {
        total: budget.caps[1],
        per_ip: per_ip(args.router_max_connections_per_ip, budget.caps[1]),
    };
    (api, router)
}

/// The router's settings from the command line; the rest are Heroku's defaults.
fn router_config(args: &Args, connections: kiln_net::ConnLimits) -> kiln_router::RouterConfig {
    let mut config = kiln_router::RouterConfig {
        domain: args.domain.clone(),
        workers: args.router_workers,
        connections,
        head_timeout: Duration::from_secs(args.router_head_timeout),
        idle_timeout: Duration::from_secs(args.router_idle_timeout),
        boot_hold: Duration::from_secs(args.router_boot_hold),
        ..Default::default()
    };
    config.cache.max_bytes = args.router_cache_mb.saturating_mul(1024 * 1024);
    config
}

fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid never fails.
    if unsafe { libc_geteuid() } == 0 {
        return PathBuf::from("/var/lib/kiln");
    }
    match std::env::var_os("XDG_DATA_HOME") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("kiln"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
            .join(".local/share/kiln"),
    }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub fn main(args: &[std::ffi::OsString]) -> ExitCode {
    let args = Args::parse_from(args);
    let filter = match log_filter(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "kiln server: --log-level (or RUST_LOG) {:?}: {e}; use a level such as `info` or directives such as `info,kiln_router=debug`",
                args.log_level
            );
            return ExitCode::from(2);
        }
    };
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        // Colours only on a terminal: a journal or a log file gets plain text.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_target(false)
                    .with_ansi(ansi),
            )
            .with(filter)
            .init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kiln server: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kiln server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter of `--log-level`: comma-separated levels (`error` … `trace`, `off`) and
/// `target=level` directives. Stricter than `Targets`' own parser, which reads a misspelt
/// level (`loud`) as the name of a target to log everything of.
fn log_filter(spec: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    use tracing_subscriber::filter::LevelFilter;
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        level
            .parse::<LevelFilter>()
            .map_err(|_| format!("{level:?} is not a level"))?;
    }
    spec.parse()
        .map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())
}

/// The key that seals secrets in the database: `KILN_MASTER_KEY` (64 hex digits), else the
/// file `--master-key-file` (default `<data-dir>/master.key`), made (0600) on first start.
/// Kept apart from the database, so a copy of `kiln.db` alone reveals no secret; keep it
/// out of the database's backups, or back it up apart.
fn master_key(args: &Args) -> Result<kiln_store::MasterKey> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(hex) = std::env::var("KILN_MASTER_KEY") {
        return kiln_store::MasterKey::from_hex(&hex).context("reading KILN_MASTER_KEY");
    }
    let path = args
        .master_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("master.key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => kiln_store::MasterKey::from_hex(&text)
            .with_context(|| format!("reading the master key {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = kiln_store::MasterKey::generate().context("making a master key")?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            std::io::Write::write_all(&mut f, format!("{}\n", key.to_hex()).as_bytes())?;
            f.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the master key {}", path.display())),
    }
}

/// Where dynos stand on the network: their own networks, or the host's (and why), and the
/// address add-ons listen at.
struct DynoNetworking {
    network: Option<Arc<kiln_runtime::network::DynoNetwork>>,
    note: String,
    /// The services address when dynos share the host's network but a server on this data
    /// once isolated them: add-on URLs name that address, so add-ons stay there.
    services: Option<std::net::Ipv4Addr>,
}

/// Sets up dynos' own networks as `--dyno-network` says; with the reason when they share the
/// host's. `auto` falls back to sharing (with a warning) where the machine cannot isolate; a
/// range that cannot be set up stops the server.
fn dyno_network(args: &Args, container: bool, router_ports: &[u16]) -> Result<DynoNetworking> {
    use kiln_runtime::network::{DynoNetwork, NetworkConfig};
    let remember = args.data_dir.join("dyno-network");
    // Sharing the host's network: add-ons stay at the address their URLs already name.
    let shared = |note: String| -> Result<DynoNetworking> {
        let services = kiln_runtime::network::remembered_services_addr(&remember);
        let note = match services {
            Some(addr) => {
                kiln_runtime::network::add_services_addr(addr).with_context(|| {
                    format!("keeping add-ons at {addr}, the address their URLs name")
                })?;
                format!("{note}; add-ons stay at {addr}")
            }
            None => note,
        };
        Ok(DynoNetworking {
            network: None,
            note,
            services,
        })
    };
    let range = match args.dyno_network.as_str() {
        "off" => return shared("shared with the host (--dyno-network off)".into()),
        "auto" => None,
        cidr => {
            let (a, p) = cidr
                .split_once('/')
                .and_then(|(a, p)| Some((a.parse().ok()?, p.parse().ok()?)))
                .with_context(|| {
                    format!(
                        "--dyno-network {cidr:?}: give auto, off or a range such as 10.200.16.0/20"
                    )
                })?;
            Some((a, p))
        }
    };
    if !container {
        let why = "shared with the host: plain-process dynos cannot be isolated (run as root for the container runtime)";
        if range.is_some() {
            bail!("--dyno-network {}: {why}", args.dyno_network);
        }
        tracing::warn!("{why}");
        return shared(why.into());
    }
    let config = NetworkConfig {
        range,
        router_ports: router_ports.to_vec(),
        remember: Some(remember.clone()),
    };
    match DynoNetwork::setup(&config) {
        Ok(n) => {
            let note = format!("{n:?}, isolated (add-ons at {})", n.services_addr());
            Ok(DynoNetworking {
                network: Some(Arc::new(n)),
                note,
                services: None,
            })
        }
        Err(e) if range.is_none() => {
            tracing::warn!(error = %e, "dynos share the host's network: they cannot be isolated on this machine");
            shared(format!("shared with the host: {e}"))
        }
        Err(e) => bail!("--dyno-network {}: {e}", args.dyno_network),
    }
}

/// On first start, creates the admin account and writes its key to `admin-api-key` (0600).
fn ensure_admin(store: &dyn Store, data_dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let account = store
        .ensure_account("admin@kiln.local", "Kiln Admin")
        .context("creating the admin account")?;
    let path = data_dir.join("admin-api-key");
    let key = match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => k.trim().to_string(),
        _ => {
            let key = kiln_model::secret::new_secret().context("making the admin API key")?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            std::io::Write::write_all(&mut f, format!("{key}\n").as_bytes())?;
            key
        }
    };
    store
        .add_api_key(&account.id, &key, "admin key (admin-api-key)")
        .context("registering the admin API key")?;
    if !account.admin {
        store
            .set_admin(&account.id, true)
            .context("making the admin account an administrator")?;
    }
    Ok(path)
}

async fn run(args: Args) -> Result<()> {
    let (api_connections, router_connections) = connection_limits(&args);
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing {}", data_dir.display()))?;
    }
    let exe = std::env::current_exe().context("finding the kiln executable")?;
    // Pushes are served by the real git; without it nothing can be deployed.
    if !std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        bail!(
            "git is not installed, and Kiln serves pushes with it. Install it (Debian: apt-get install git) and start again."
        );
    }
    let master_key = master_key(&args)?;
    // Private keys on disk (the local CA's, the ACME account's) are sealed too.
    kiln_tls::seal_files_with(master_key.subkey("files"));
    let store: Arc<dyn Store> = Arc::new(
        kiln_store::SqliteStore::open(&data_dir.join("kiln.db"), &master_key)
            .context("opening the database")?,
    );
    let key_path = ensure_admin(store.as_ref(), data_dir)?;

    let retention = kiln_logplex::Retention {
        lines: usize::try_from(args.log_history_lines).unwrap_or(usize::MAX),
        bytes: args.log_history_mb.saturating_mul(1024 * 1024),
        max_age: Duration::from_secs(args.log_history_days.saturating_mul(24 * 3600)),
    };
    let logs = kiln_logplex::Logplex::with_history(&data_dir.join("logs"), retention)
        .with_context(|| {
            format!(
                "opening the log history in {}",
                data_dir.join("logs").display()
            )
        })?;
    let sink: SharedSink = logs.clone();
    let routes = kiln_router::RouteTable::new(&args.domain);
    // Each side publishes what it owns: the platform an app's settings, the dyno manager its dynos.
    let app_routes: Arc<dyn AppRoutes> = routes.clone();
    let dyno_routes: Arc<dyn DynoRoutes> = routes.clone();

    let api_listener = tokio::net::TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("listening on {} for the API", args.api_listen))?;
    let router_listener = tokio::net::TcpListener::bind(args.router_listen)
        .await
        .with_context(|| format!("listening on {} for the router", args.router_listen))?;
    let api_addr = api_listener.local_addr()?;
    let router_addr = router_listener.local_addr()?;
    let api_tls_listener = match args.api_tls_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} for the API's HTTPS"))?,
        ),
        None => None,
    };
    let tls_listener = match args.router_tls_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} for the router's HTTPS"))?,
        ),
        None => None,
    };

    let prefer = match args.runtime.as_str() {
        "container" => {
            if !kiln_runtime::container::ContainerRuntime::available() {
                bail!(
                    "--runtime container needs root on Linux; run as root or use --runtime process"
                );
            }
            Some(kiln_runtime::RuntimeKind::Container)
        }
        "process" => Some(kiln_runtime::RuntimeKind::Process),
        _ => None,
    };
    let container = match prefer {
        Some(kind) => kind == kiln_runtime::RuntimeKind::Container,
        None => kiln_runtime::container::ContainerRuntime::available(),
    };
    let DynoNetworking {
        network,
        note: network_note,
        services: shared_services,
    } = dyno_network(&args, container, &[router_addr.port()])?;
    // Where add-ons listen: the services address dynos reach them at, whether dynos have
    // networks of their own or share the host's.
    let services_addr = network
        .as_ref()
        .map(|n| n.services_addr())
        .or(shared_services);
    // The small helper beside this executable, else this executable's own `dyno-helper`.
    let helper = exe.with_file_name("kiln-dyno-helper");
    let helper = if helper.is_file() {
        helper
    } else {
        tracing::info!(
            "no kiln-dyno-helper beside the kiln executable: dynos start through `kiln dyno-helper`, which costs more memory per dyno"
        );
        exe.clone()
    };
    let runtime = kiln_runtime::detect(data_dir, helper, prefer, network.clone());
    runtime
        .sweep()
        .context("cleaning up after the previous run")?;
    tracing::info!(runtime = runtime.kind().as_str(), "dyno runtime");

    let builder = kiln_build::Builder::new(
        kiln_build::BuilderConfig {
            data_dir: data_dir.clone(),
            timeout: Duration::from_secs(args.build_timeout),
            memory_bytes: args.build_memory * 1024 * 1024,
            stack: "heroku-24".into(),
            max_slug_bytes: args.max_slug_mb.saturating_mul(1024 * 1024),
        },
        runtime.clone(),
    )?;
    let lifecycle = kiln_dyno::LifecycleConfig {
        boot_timeout: Duration::from_secs(args.boot_timeout),
        stop_timeout: Duration::from_secs(args.stop_timeout),
        backoff_base: Duration::from_secs(args.restart_backoff.max(1)),
        backoff_cap: Duration::from_secs(args.restart_backoff_max.max(args.restart_backoff.max(1))),
        cycle_interval: Duration::from_secs(args.cycle_interval.max(1)),
        cycle_jitter: Duration::from_secs(args.cycle_interval.max(1) * 15 / 100),
        metrics_every: Duration::from_secs(args.runtime_metrics_interval.max(1)),
        ..Default::default()
    };
    let dynos =
        kiln_dyno::DynoManager::start(runtime.clone(), sink.clone(), dyno_routes, lifecycle);
    // A request for a sleeping app wakes it.
    {
        let dynos = dynos.clone();
        routes.set_waker(Arc::new(move |app_id: &str| dynos.wake(app_id)));
    }

    let api_url = args.api_url.clone().unwrap_or_else(|| {
        let host = if api_addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            api_addr.ip().to_string()
        };
        format!("http://{host}:{}", api_addr.port())
    });

    let settings = kiln_platform::Settings {
        domain: args.domain.clone(),
        router_port: router_addr.port(),
        api_url: api_url.clone(),
        stack: "heroku-24".into(),
        per_app_uid: runtime.kind() == kiln_runtime::RuntimeKind::Container,
        data_dir: data_dir.clone(),
        max_source_bytes: args.max_source_mb.saturating_mul(1024 * 1024),
        backup_tick: Duration::from_secs(args.addons_check_interval),
        signup: kiln_platform::SignupMode::parse(&args.signup)
            .context("--signup must be open, invite or closed")?,
        api_rate_limit: args.api_rate_limit,
        sleep_after: Duration::from_secs(args.sleep_after),
    };
    let addons = kiln_platform::Addons::builtin(kiln_addons::AddonsConfig {
        dir: data_dir.join("addons"),
        // Dynos with networks of their own reach add-ons at the services address.
        host: args
            .addons_host
            .clone()
            .unwrap_or_else(|| match services_addr {
                Some(a) => a.to_string(),
                None => "127.0.0.1".into(),
            }),
        postgres_url: args.addons_postgres_url.clone(),
        check_interval: Duration::from_secs(args.addons_check_interval),
        logs: logs.clone(),
    });
    let platform = kiln_platform::Platform::new(
        store.clone(),
        logs.clone(),
        dynos.clone(),
        builder,
        app_routes.clone(),
        settings,
        addons.clone(),
    );
    let bridge = Arc::new(kiln_platform::GitBridge(platform.clone()));
    let git_limits = kiln_git::GitLimits {
        max_pack_bytes: args.max_push_mb.saturating_mul(1024 * 1024),
    };
    let git = kiln_git::GitService::start(data_dir, &exe, bridge.clone(), bridge, git_limits)
        .context("starting the git receiver")?;
    platform.set_git(git.clone());
    let acme_line = crate::acme::start(
        &args.acme,
        &platform,
        app_routes.clone(),
        data_dir,
        args.router_tls_listen.is_some(),
    )?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api_tls_addr = match &api_tls_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    // Metrics: the router and the dyno manager count, a task writes each step to disk.
    let metrics = if args.metrics_step > 0 {
        let step = args.metrics_step;
        let metrics = kiln_metrics::Metrics::open(
            &data_dir.join("metrics"),
            kiln_metrics::MetricsConfig {
                step: Duration::from_secs(step),
                fine_points: (args.metrics_fine_hours.max(1) * 3600 / step).max(1) as usize,
                coarse_points: (args.metrics_coarse_days.max(1) * 86_400
                    / (step * u64::from(kiln_metrics::COARSE)))
                .max(1) as usize,
            },
        )
        .context("opening the metrics directory")?;
        metrics.start();
        routes.set_meters(metrics.clone());
        dynos.set_meters(metrics.clone());
        platform.set_metrics(metrics.clone());
        Some(metrics)
    } else {
        None
    };
    let mut own_listeners = vec![api_addr, router_addr];
    own_listeners.extend(api_tls_addr);
    if let Some(l) = &tls_listener {
        own_listeners.push(l.local_addr()?);
    }
    crate::drains::start(
        &args.drains,
        &platform,
        own_listeners,
        services_addr.map(std::net::IpAddr::V4),
    )?;
    let api = kiln_api::api(
        platform.clone(),
        kiln_git::router(git).merge(kiln_dashboard::router(platform.clone())),
        api_tls_addr.map(|a| a.port()),
    );
    let mut api_stop = stop_rx.clone();
    let api_config = kiln_api::ServeConfig {
        connections: api_connections,
        head_timeout: Duration::from_secs(args.api_head_timeout),
        idle_timeout: Duration::from_secs(args.api_idle_timeout),
    };
    let api_task = tokio::spawn(kiln_api::serve(
        api_listener,
        api.router.clone(),
        api_config,
        None,
        async move {
            let _ = api_stop.wait_for(|s| *s).await;
        },
    ));
    let api_tls_task = match (api_tls_listener, api_tls_addr) {
        (Some(listener), Some(addr)) => {
            let (config, ca_line) = api_tls_config(&args, addr, api_addr)?;
            let door = kiln_api::TlsDoor {
                config,
                rendezvous: api.rendezvous.clone(),
            };
            let mut stop = stop_rx.clone();
            let task = tokio::spawn(kiln_api::serve(
                listener,
                api.router.clone(),
                api_config,
                Some(door),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            ));
            Some((task, addr, ca_line))
        }
        _ => None,
    };
    // HTTPS: the same routes and logs as the plain router, its own listener.
    let tls_task = match tls_listener {
        Some(listener) => {
            let tls_dir = data_dir.join("tls");
            let ca = Arc::new(
                kiln_tls::LocalCa::load_or_create(&tls_dir, &args.domain)
                    .context("preparing the router's TLS certificates")?,
            );
            let resolver = kiln_tls::SniResolver::new(ca, routes.clone());
            platform
                .set_certificates(resolver.clone())
                .context("publishing the apps' uploaded certificates")?;
            let tls_config = kiln_tls::server_config(resolver).context("configuring TLS")?;
            let addr = listener.local_addr()?;
            let mut tls_stop = stop_rx.clone();
            let config = router_config(&args, router_connections);
            let task = tokio::spawn(kiln_router::serve_tls(
                listener,
                routes.clone(),
                sink.clone(),
                config,
                tls_config,
                async move {
                    let _ = tls_stop.wait_for(|s| *s).await;
                },
            ));
            Some((task, addr, tls_dir.join("ca.crt")))
        }
        None => None,
    };
    let mut router_stop = stop_rx.clone();
    let router_task = tokio::spawn(kiln_router::serve(
        router_listener,
        routes,
        sink,
        router_config(&args, router_connections),
        async move {
            let _ = router_stop.wait_for(|s| *s).await;
        },
    ));

    platform
        .recover()
        .await
        .context("starting the apps' dynos")?;
    eprintln!("Kiln is running.");
    eprintln!(
        "  API and git:  {api_url}  (admin API key in {})",
        key_path.display()
    );
    if let Some((_, addr, trust)) = &api_tls_task {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        eprintln!("  API (HTTPS):  https://{host}:{}  ({trust})", addr.port());
    }
    eprintln!(
        "  Apps:         http://<app>.{}:{}/",
        args.domain,
        router_addr.port()
    );
    if let Some((_, addr, ca)) = &tls_task {
        eprintln!(
            "  HTTPS:        https://<app>.{}:{}/  (HTTP/2 and HTTP/1.1; clients trust {})",
            args.domain,
            addr.port(),
            ca.display()
        );
    }
    acme_line.iter().for_each(|line| eprintln!("{line}"));
    eprintln!("  Dyno runtime: {}", runtime.kind().as_str());
    eprintln!("  Dyno network: {network_note}");

    wait_for_signal().await;
    eprintln!("Stopping: every dyno gets SIGTERM...");
    let _ = stop_tx.send(true);
    dynos.shutdown().await;
    // The step in progress survives the restart (a crash loses it).
    if let Some(m) = metrics {
        let _ = tokio::task::spawn_blocking(move || m.flush()).await;
    }
    // After the dynos, which may be using them.
    addons.shutdown().await;
    runtime.shutdown();
    if let Some(n) = &network {
        n.teardown();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), api_task).await;
    if let Some((task, _, _)) = api_tls_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), router_task).await;
    if let Some((task, _, _)) = tls_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    // The last lines (the dynos' exits, the final requests) are in the history on disk.
    let _ = tokio::task::spawn_blocking(move || logs.flush()).await;
    eprintln!("Stopped.");
    Ok(())
}

/// The API's HTTPS certificate: the operator's (--api-tls-cert), or one the local CA signs for
/// localhost, the loopback addresses, the listeners' own loopback addresses and
/// --api-tls-name. Also says, for the start banner, what clients trust.
fn api_tls_config(
    args: &Args,
    tls_addr: SocketAddr,
    api_addr: SocketAddr,
) -> Result<(Arc<kiln_tls::ServerConfig>, String)> {
    if let (Some(cert), Some(key)) = (&args.api_tls_cert, &args.api_tls_key) {
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let certificate = kiln_tls::Certificate::from_pem(&read(cert)?, &read(key)?)
            .with_context(|| format!("the API certificate {}", cert.display()))?;
        let names = certificate.info.hostnames.join(", ");
        let config = kiln_tls::single_cert_config(&certificate)?;
        return Ok((config, format!("certificate for {names}")));
    }
    let tls_dir = args.data_dir.join("tls");
    let ca = kiln_tls::LocalCa::load_or_create(&tls_dir, &args.domain)
        .context("preparing the local CA for the API's HTTPS")?;
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    for ip in [tls_addr.ip(), api_addr.ip()] {
        if ip.is_loopback() {
            names.push(ip.to_string());
        }
    }
    names.extend(args.api_tls_name.iter().cloned());
    let (certificate, skipped) = ca
        .issue_api(&names)
        .context("signing the API's HTTPS certificate")?;
    if !skipped.is_empty() {
        tracing::warn!(
            names = ?skipped,
            "the local CA vouches only for localhost, loopback addresses and names under --domain; give the API a certificate for these names with --api-tls-cert and --api-tls-key"
        );
    }
    let config = kiln_tls::single_cert_config(&certificate)?;
    Ok((
        config,
        format!("clients trust {}", ca.ca_cert_path.display()),
    ))
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
