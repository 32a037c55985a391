//! The built-in providers against real servers: PostgreSQL (the machine's `initdb` and
//! `postgres`, in a temporary directory on a free port) and redis-server, driven with their
//! own clients (`psql`, raw RESP).

use kiln_addons::{Addons, AddonsConfig, ProvisionRequest};
use kiln_model::LogLine;
use kiln_model::addon::PlanRef;
use kiln_model::log::LogSink;
use kiln_testkit::TempDir;
use kiln_testkit::pg::psql;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Lines(Mutex<Vec<(String, LogLine)>>);

impl LogSink for Lines {
    fn emit(&self, app_id: &str, line: LogLine) {
        self.0.lock().unwrap().push((app_id.to_string(), line));
    }
}

fn addons(dir: &TempDir) -> (Arc<Addons>, Arc<Lines>) {
    let lines = Arc::new(Lines::default());
    let addons = Addons::builtin(AddonsConfig {
        dir: dir.join("addons"),
        host: "127.0.0.1".into(),
        postgres_url: None,
        check_interval: Duration::from_secs(3600),
        logs: lines.clone(),
    });
    (addons, lines)
}

fn request(id: &str, app: &str, plan: &str) -> ProvisionRequest {
    ProvisionRequest {
        addon_id: id.into(),
        addon_name: format!("addon-{id}"),
        app_id: app.into(),
        plan: PlanRef::parse(plan).unwrap().plan,
        options: Default::default(),
    }
}

/// The URL with another database name in it.
fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn essential_databases_are_real_isolated_and_idempotent() {
    let dir = TempDir::new("addons-pg");
    let (addons, _) = addons(&dir);
    let pg = addons.provider("heroku-postgresql").unwrap();
    let a = pg
        .provision(&request(
            "0a0a0a0a-0000-4000-8000-000000000001",
            "app-a",
            "postgres",
        ))
        .await
        .unwrap();
    let b = pg
        .provision(&request(
            "0b0b0b0b-0000-4000-8000-000000000002",
            "app-b",
            "postgres",
        ))
        .await
        .unwrap();
    let (url_a, url_b) = (&a.config["URL"], &b.config["URL"]);
    assert!(url_a.starts_with("postgres://d0a0a0a0a"), "{url_a}");
    // Provisioning again is the same database with the same credentials.
    let again = pg
        .provision(&request(
            "0a0a0a0a-0000-4000-8000-000000000001",
            "app-a",
            "postgres",
        ))
        .await
        .unwrap();
    assert_eq!(&again.config["URL"], url_a);

    psql(
        url_a,
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('a-data');",
    )
    .unwrap();
    assert_eq!(psql(url_a, "SELECT v FROM t").unwrap(), "a-data");
    // A's credentials reach neither B's database nor the cluster's own.
    let db_b = url_b.rsplit_once('/').unwrap().1;
    for other in [db_b, "postgres", "template1"] {
        let e = psql(&with_db(url_a, other), "SELECT 1").unwrap_err();
        assert!(
            e.contains("no pg_hba.conf entry") || e.contains("permission denied"),
            "{other}: {e}"
        );
    }
    // Without the password, nothing.
    let no_pw = url_a.replace(url_a.split('@').next().unwrap(), "postgres://x:y");
    assert!(psql(&no_pw, "SELECT 1").is_err());
    // The role cannot become more than it is, nor read the server's files.
    for attack in [
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "CREATE ROLE evil LOGIN",
        "CREATE DATABASE evil",
        "SELECT pg_read_file('/etc/passwd')",
        "COPY t FROM '/etc/passwd'",
        "COPY t FROM PROGRAM 'id'",
        "CREATE LANGUAGE evil HANDLER plpgsql_call_handler",
        "SET temp_file_limit = '100GB'",
    ] {
        let e = psql(url_a, attack).unwrap_err();
        assert!(
            e.contains("permission denied")
                || e.contains("must be superuser")
                || e.contains("must have")
                || e.contains("not allowed"),
            "{attack}: {e}"
        );
    }
    assert_eq!(
        psql(
            url_a,
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user"
        )
        .unwrap(),
        "20"
    );
    assert_eq!(psql(url_a, "SHOW statement_timeout").unwrap(), "30min");

    // A plan change keeps the data and takes the new limits.
    let plan = PlanRef::parse("heroku-postgresql:essential-2")
        .unwrap()
        .plan;
    pg.change_plan("0a0a0a0a-0000-4000-8000-000000000001", plan)
        .await
        .unwrap();
    assert_eq!(
        psql(
            url_a,
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user"
        )
        .unwrap(),
        "40"
    );

    // Deprovisioning removes database and role; doing it twice is fine.
    pg.deprovision("0a0a0a0a-0000-4000-8000-000000000001")
        .await
        .unwrap();
    pg.deprovision("0a0a0a0a-0000-4000-8000-000000000001")
        .await
        .unwrap();
    assert!(psql(url_a, "SELECT 1").is_err());
    assert_eq!(psql(url_b, "SELECT 1").unwrap(), "1", "B untouched");

    addons.shutdown().await;
}

/// Sends RESP commands and reads until `until` appears in the reply (or 2 s pass).
async fn redis(port: u16, commands: &str, until: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(commands.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(until) {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn resp(args: &[&str]) -> String {
    let mut s = format!("*{}\r\n", args.len());
    for a in args {
        s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_servers_need_their_password_hold_their_limits_and_keep_admin_to_kiln() {
    let dir = TempDir::new("addons-redis");
    let (addons, lines) = addons(&dir);
    let redis_p = addons.provider("heroku-redis").unwrap();
    let mut req = request("1a1a1a1a-0000-4000-8000-000000000001", "app-a", "redis");
    let a = redis_p.provision(&req).await.unwrap();
    let url = &a.config["URL"];
    let (pw, port) = {
        let rest = url.strip_prefix("redis://:").unwrap();
        let (pw, hp) = rest.split_once('@').unwrap();
        (
            pw.to_string(),
            hp.rsplit_once(':').unwrap().1.parse::<u16>().unwrap(),
        )
    };
    // No password, no data.
    let out = redis(port, &resp(&["GET", "k"]), "\r\n").await;
    assert!(out.starts_with("-NOAUTH"), "{out}");
    let auth = resp(&["AUTH", &pw]);
    let out = redis(
        port,
        &format!("{auth}{}{}", resp(&["SET", "k", "v"]), resp(&["GET", "k"])),
        "$1\r\nv",
    )
    .await;
    assert!(out.contains("$1\r\nv"), "{out}");
    // The app cannot change its own limits or make the server a replica.
    for cmd in [
        vec!["CONFIG", "SET", "maxmemory", "0"],
        vec!["REPLICAOF", "10.0.0.1", "6379"],
        vec!["DEBUG", "SLEEP", "0"],
    ] {
        let out = redis(port, &format!("{auth}{}", resp(&cmd)), "unknown command").await;
        assert!(out.contains("unknown command"), "{cmd:?}: {out}");
    }
    // maxmemory with noeviction: writes past 25 MB are refused.
    let big = "x".repeat(1 << 20);
    let mut refused = false;
    for i in 0..40 {
        let out = redis(
            port,
            &format!("{auth}{}", resp(&["SET", &format!("big{i}"), &big])),
            "\r\n+",
        )
        .await;
        if out.contains("OOM") {
            refused = true;
            break;
        }
    }
    assert!(refused, "maxmemory held");
    // Idempotent, and deprovisioning removes the server.
    assert_eq!(redis_p.provision(&req).await.unwrap().config["URL"], *url);
    redis_p.deprovision(&req.addon_id).await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    // Options: an eviction policy.
    req.addon_id = "1b1b1b1b-0000-4000-8000-000000000002".into();
    req.options
        .insert("maxmemory_policy".into(), "allkeys-lru".into());
    let b = redis_p.provision(&req).await.unwrap();
    assert!(b.message.contains("allkeys-lru"), "{}", b.message);
    assert!(
        lines
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(app, l)| app == "app-a" && l.process == "heroku-redis"),
        "the server's lines reach the app's stream"
    );
    addons.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_over_its_limit_refuses_writes_but_not_reads_or_deletes() {
    let dir = TempDir::new("addons-pg-quota");
    let (lines, provider) = {
        let lines = Arc::new(Lines::default());
        let p = kiln_addons::postgres::PostgresProvider::new(AddonsConfig {
            dir: dir.join("addons"),
            host: "127.0.0.1".into(),
            postgres_url: None,
            check_interval: Duration::from_secs(3600),
            logs: lines.clone(),
        });
        (lines, p)
    };
    use kiln_addons::Provider;
    let id = "0d0d0d0d-0000-4000-8000-000000000004";
    let url = provider
        .provision(&request(id, "app-q", "postgres"))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    psql(
        &url,
        "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 10); CREATE SEQUENCE s;",
    )
    .unwrap();
    provider.restrict(id, true).await.unwrap();
    for write in [
        "INSERT INTO t VALUES (11)",
        "UPDATE t SET v = 0",
        "CREATE TABLE u (v int)",
        "ALTER TABLE t ADD COLUMN w int",
    ] {
        let e = psql(&url, write).unwrap_err();
        assert!(
            e.contains("permission denied") || e.contains("must be owner"),
            "{write}: {e}"
        );
    }
    assert_eq!(psql(&url, "SELECT count(*) FROM t").unwrap(), "10");
    psql(&url, "DELETE FROM t WHERE v > 5").unwrap();
    assert_eq!(psql(&url, "SELECT count(*) FROM t").unwrap(), "5");
    // Nor can the role give itself back what it lost.
    // (PostgreSQL answers such a GRANT with a warning and grants nothing.)
    let _ = psql(&url, "GRANT INSERT ON t TO CURRENT_USER");
    assert!(psql(&url, "INSERT INTO t VALUES (12)").is_err());
    provider.restrict(id, false).await.unwrap();
    psql(&url, "INSERT INTO t VALUES (11); CREATE TABLE u (v int);").unwrap();
    assert_eq!(psql(&url, "SELECT count(*) FROM t").unwrap(), "6");
    drop(lines);
    provider.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_servers_answer_only_to_their_sasl_credentials() {
    use kiln_addons::memcached::{binary_request, binary_response};
    use tokio::io::AsyncWriteExt;
    let dir = TempDir::new("addons-mc");
    let (addons, _) = addons(&dir);
    let mc = addons.provider("memcachier").unwrap();
    let a = mc
        .provision(&request(
            "2a2a2a2a-0000-4000-8000-000000000001",
            "app-a",
            "memcached",
        ))
        .await
        .unwrap();
    let b = mc
        .provision(&request(
            "2b2b2b2b-0000-4000-8000-000000000002",
            "app-b",
            "memcachier:100",
        ))
        .await
        .unwrap();
    assert_ne!(a.config["SERVERS"], b.config["SERVERS"], "a server each");
    let port: u16 = a.config["SERVERS"]
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let set = binary_request(0x01, b"k", &[0; 8], b"v");
    let get = binary_request(0x00, b"k", &[], b"");
    let auth = |user: &str, pw: &str| {
        let mut v = vec![0u8];
        v.extend_from_slice(user.as_bytes());
        v.push(0);
        v.extend_from_slice(pw.as_bytes());
        binary_request(0x21, b"PLAIN", &[], &v)
    };
    // Without credentials, or with B's: refused.
    for creds in [
        None,
        Some((&b.config["USERNAME"], &b.config["PASSWORD"])),
        Some((&a.config["USERNAME"], &"wrong".to_string())),
    ] {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        if let Some((u, p)) = creds {
            s.write_all(&auth(u, p)).await.unwrap();
            let (status, _) = binary_response(&mut s).await.unwrap();
            assert_ne!(status, 0, "{creds:?}");
        }
        s.write_all(&set).await.unwrap();
        let (status, _) = binary_response(&mut s).await.unwrap();
        assert_eq!(status, 0x20, "auth required: {creds:?}");
    }
    // With A's: set and get.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(&auth(&a.config["USERNAME"], &a.config["PASSWORD"]))
        .await
        .unwrap();
    assert_eq!(binary_response(&mut s).await.unwrap().0, 0);
    s.write_all(&set).await.unwrap();
    assert_eq!(binary_response(&mut s).await.unwrap().0, 0);
    s.write_all(&get).await.unwrap();
    let (status, body) = binary_response(&mut s).await.unwrap();
    assert_eq!((status, &body[4..]), (0, &b"v"[..]));
    mc.deprovision("2a2a2a2a-0000-4000-8000-000000000001")
        .await
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
    addons.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plans_connection_limit_holds() {
    let dir = TempDir::new("addons-pg-conns");
    let (addons, _) = addons(&dir);
    let pg = addons.provider("heroku-postgresql").unwrap();
    let url = pg
        .provision(&request(
            "0e0e0e0e-0000-4000-8000-000000000005",
            "app-c",
            "postgres",
        ))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    // 20 sessions hold their connections for as long as their stdin stays open (not for a
    // fixed sleep, which a loaded machine can outlast before all 20 are in); the 21st is
    // refused.
    let hold = || {
        Command::new("psql")
            .args(["-X", "-q", "-d", &url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut holders: Vec<_> = (0..20).map(|_| hold()).collect();
    let count = || {
        psql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = current_user",
        )
        .ok()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match psql(&url, "SELECT 1") {
            Err(e) if e.contains("too many connections") => break e,
            _ if std::time::Instant::now() > deadline => {
                panic!("never refused; sessions: {:?}", count())
            }
            _ => {
                // A holder that lost the race for a slot to this probe is started again.
                for h in holders.iter_mut() {
                    if h.try_wait().ok().flatten().is_some() {
                        *h = hold();
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert!(
        refused.contains("too many connections for role"),
        "{refused}"
    );
    // End of input: each psql says goodbye and its session ends.
    for mut h in holders {
        drop(h.stdin.take());
        let _ = h.wait();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while psql(&url, "SELECT 1").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "connections never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    addons.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_plan_is_a_server_of_its_own_within_its_memory() {
    let dir = TempDir::new("addons-pg-dedicated");
    let (addons, _) = addons(&dir);
    let pg = addons.provider("heroku-postgresql").unwrap();
    let id = "0f0f0f0f-0000-4000-8000-000000000006";
    let shared = pg
        .provision(&request(
            "0f0f0f0f-0000-4000-8000-000000000007",
            "app-s",
            "postgres",
        ))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    let url = pg
        .provision(&request(id, "app-d", "heroku-postgresql:standard-0"))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    let port = |u: &str| {
        u.rsplit_once('@')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    assert_ne!(port(&url), port(&shared), "a server of its own");
    psql(&url, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)").unwrap();
    // Still not a superuser on its own server.
    let e = psql(&url, "ALTER ROLE CURRENT_USER SUPERUSER").unwrap_err();
    assert!(
        e.contains("permission denied") || e.contains("must be superuser"),
        "{e}"
    );
    assert_eq!(psql(&url, "SHOW shared_buffers").unwrap(), "1GB");
    assert_eq!(
        psql(
            &url,
            "SELECT rolconnlimit FROM pg_roles WHERE rolname = current_user"
        )
        .unwrap(),
        "120"
    );
    // Its processes are in a cgroup that holds the plan's 4 GB.
    let groups = addons.postgres.cgroup_dirs(id);
    if kiln_runtime::cgroup::Layout::detect().is_some() {
        let memory = groups
            .iter()
            .find_map(|g| {
                std::fs::read_to_string(g.join("memory.max"))
                    .or_else(|_| std::fs::read_to_string(g.join("memory.limit_in_bytes")))
                    .ok()
            })
            .expect("a memory limit file");
        assert_eq!(memory.trim(), (4u64 << 30).to_string());
        let procs: usize = groups
            .iter()
            .filter_map(|g| std::fs::read_to_string(g.join("cgroup.procs")).ok())
            .map(|p| p.lines().count())
            .max()
            .unwrap_or(0);
        assert!(
            procs >= 3,
            "postmaster and its workers in the group: {procs}"
        );
    }
    // Going between shared and dedicated is refused, clearly, changing nothing.
    let essential = kiln_model::addon::PlanRef::parse("heroku-postgresql:essential-1")
        .unwrap()
        .plan;
    let e = pg.change_plan(id, essential).await.unwrap_err().to_string();
    assert!(e.contains("not built yet"), "{e}");
    assert_eq!(psql(&url, "SELECT v FROM t").unwrap(), "1");
    // Deprovisioned: server, data and group gone.
    pg.deprovision(id).await.unwrap();
    assert!(psql(&url, "SELECT 1").is_err());
    assert!(groups.iter().all(|g| !g.exists()), "{groups:?}");
    assert_eq!(
        psql(&shared, "SELECT 1").unwrap(),
        "1",
        "the shared cluster is untouched"
    );
    addons.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_the_data_do_not_fit_in_is_refused_and_changes_nothing() {
    let dir = TempDir::new("addons-redis-downgrade");
    let (addons, _) = addons(&dir);
    let redis_p = addons.provider("heroku-redis").unwrap();
    let id = "1c1c1c1c-0000-4000-8000-000000000003";
    let url = redis_p
        .provision(&request(id, "app-r", "heroku-redis:premium-0"))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    let (pw, port) = {
        let rest = url.strip_prefix("redis://:").unwrap();
        let (pw, hp) = rest.split_once('@').unwrap();
        (
            pw.to_string(),
            hp.rsplit_once(':').unwrap().1.parse::<u16>().unwrap(),
        )
    };
    let auth = resp(&["AUTH", &pw]);
    let chunk = "x".repeat(1 << 20);
    for i in 0..30 {
        let out = redis(
            port,
            &format!("{auth}{}", resp(&["SET", &format!("k{i}"), &chunk])),
            "+OK\r\n+OK",
        )
        .await;
        assert!(out.ends_with("+OK\r\n+OK\r\n"), "{out}");
    }
    let mini = kiln_model::addon::PlanRef::parse("heroku-redis:mini")
        .unwrap()
        .plan;
    let e = redis_p.change_plan(id, mini).await.unwrap_err().to_string();
    assert!(e.contains("do not fit in plan mini"), "{e}");
    // Still premium-0, same data.
    let out = redis(port, &format!("{auth}{}", resp(&["DBSIZE"])), ":30").await;
    assert!(out.contains(":30"), "{out}");
    addons.shutdown().await;
}

#[test]
fn a_missing_program_names_the_package_to_install() {
    let e = kiln_addons::system::require(
        "heroku-postgresql",
        "kiln-no-such-program",
        "postgresql",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("apt-get install postgresql") && e.contains("kiln-no-such-program"),
        "{e}"
    );
}

/// The check itself, with a database really over essential-0's 1 GB: writes refused, reads
/// and TRUNCATE allowed, and once it is back under, writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_check_refuses_writes_over_the_plans_limit_and_allows_them_back() {
    let dir = TempDir::new("addons-pg-storage");
    let lines = Arc::new(Lines::default());
    let pg = kiln_addons::postgres::PostgresProvider::new(AddonsConfig {
        dir: dir.join("addons"),
        host: "127.0.0.1".into(),
        postgres_url: None,
        check_interval: Duration::from_secs(3600),
        logs: lines.clone(),
    });
    use kiln_addons::Provider;
    let id = "0a1a2a3a-0000-4000-8000-000000000008";
    let url = pg
        .provision(&request(id, "app-big", "postgres"))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    // ~1.1 GB of rows under 2 kB each: stored as they are (PostgreSQL compresses larger ones).
    psql(&url, "CREATE TABLE filler (body text); INSERT INTO filler SELECT repeat(md5(g::text), 31) FROM generate_series(1, 1150000) g;").unwrap();
    pg.check_storage().await.unwrap();
    let e = psql(&url, "INSERT INTO filler VALUES ('one more')").unwrap_err();
    assert!(e.contains("permission denied"), "{e}");
    assert_eq!(psql(&url, "SELECT count(*) > 0 FROM filler").unwrap(), "t");
    assert!(
        lines
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(app, l)| app == "app-big" && l.message.contains("writes are refused")),
        "the app is told"
    );
    psql(&url, "TRUNCATE filler").unwrap();
    pg.check_storage().await.unwrap();
    psql(&url, "INSERT INTO filler VALUES ('back under')").unwrap();
    assert!(
        lines
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(_, l)| l.message.contains("writes are allowed again"))
    );
    pg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_dies_is_started_again_with_its_data_and_credentials() {
    let dir = TempDir::new("addons-restart");
    let (addons, lines) = addons(&dir);
    let redis_p = addons.provider("heroku-redis").unwrap();
    let id = "1d1d1d1d-0000-4000-8000-000000000004";
    let url = redis_p
        .provision(&request(id, "app-x", "heroku-redis:premium-0"))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    let (pw, port) = {
        let rest = url.strip_prefix("redis://:").unwrap();
        let (pw, hp) = rest.split_once('@').unwrap();
        (
            pw.to_string(),
            hp.rsplit_once(':').unwrap().1.parse::<u16>().unwrap(),
        )
    };
    let auth = resp(&["AUTH", &pw]);
    assert!(
        redis(
            port,
            &format!("{auth}{}", resp(&["SET", "kept", "yes"])),
            "+OK\r\n+OK"
        )
        .await
        .contains("+OK\r\n+OK")
    );
    // Killed from outside (the kernel's OOM killer, an operator's kill -9).
    let title = format!("redis-server 127.0.0.1:{port}");
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&title))
        })
        .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .expect("the server's process");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        // Connecting is refused until it is back.
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            let out = redis(port, &format!("{auth}{}", resp(&["GET", "kept"])), "yes").await;
            if out.contains("$3\r\nyes") {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "not back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lines
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(app, l)| app == "app-x" && l.message.contains("exited")),
        "the app's stream says the server exited"
    );
    addons.shutdown().await;
}

/// An operator's own PostgreSQL server (`--addons-postgres-url`) holds the essential plans'
/// databases: here one made with initdb for the test, administered over TCP with a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_server_can_hold_the_shared_plans() {
    let dir = TempDir::new("addons-external");
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .flatten()
        .map(|e| e.path().join("bin"))
        .max()
        .unwrap();
    let data = dir.join("operator");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // PostgreSQL refuses to run as root: the server runs as the add-ons' system user.
    let (uid, gid) = if kiln_addons::system::is_root() {
        kiln_addons::system::system_user("kiln-postgres").unwrap()
    } else {
        (unsafe { libc::geteuid() }, unsafe { libc::getegid() })
    };
    std::fs::create_dir_all(&data).unwrap();
    kiln_addons::system::chown_tree(dir.path(), uid, gid).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .unwrap();
    use std::os::unix::process::CommandExt;
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, "operator-pw\n").unwrap();
    kiln_addons::system::chown_tree(&pwfile, uid, gid).unwrap();
    run(Command::new(bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "operator",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "--pwfile",
        ])
        .arg(&pwfile)
        .uid(uid)
        .gid(gid));
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhost all operator 127.0.0.1/32 scram-sha-256\nhost sameuser all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    run(Command::new(bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-w", "-l"])
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.display()
        ))
        .arg("start")
        .uid(uid)
        .gid(gid));
    let lines = Arc::new(Lines::default());
    let addons = Addons::builtin(AddonsConfig {
        dir: dir.join("addons"),
        host: "127.0.0.1".into(),
        postgres_url: Some(format!(
            "postgres://operator:operator-pw@127.0.0.1:{port}/postgres"
        )),
        check_interval: Duration::from_secs(3600),
        logs: lines,
    });
    let pg = addons.provider("heroku-postgresql").unwrap();
    let url = pg
        .provision(&request(
            "0b1b2b3b-0000-4000-8000-000000000009",
            "app-o",
            "postgres",
        ))
        .await
        .unwrap()
        .config["URL"]
        .clone();
    assert!(url.contains(&format!("@127.0.0.1:{port}/")), "{url}");
    psql(&url, "CREATE TABLE t (v int); INSERT INTO t VALUES (7)").unwrap();
    assert_eq!(psql(&url, "SELECT v FROM t").unwrap(), "7");
    assert!(
        psql(&with_db(&url, "postgres"), "SELECT 1").is_err(),
        "only its own database"
    );
    pg.deprovision("0b1b2b3b-0000-4000-8000-000000000009")
        .await
        .unwrap();
    assert!(psql(&url, "SELECT 1").is_err());
    addons.shutdown().await;
    let _ = Command::new(bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-m", "fast", "stop"])
        .uid(uid)
        .gid(gid)
        .output();
}
