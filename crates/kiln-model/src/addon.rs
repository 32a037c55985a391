//! Add-ons as Heroku models them: a catalogue of services and their plans, an add-on (one
//! provisioned resource, owned by one app), and its attachments (an add-on made visible to an
//! app under a name, whose config vars the app gets as `<NAME>_<KEY>`). The rules here are
//! pure: which plan a `svc:plan` string means, what an add-on and an attachment are called,
//! which config vars an attachment gives, and how the releases that record them are worded
//! (`pg:promote` in Heroku's CLI searches release descriptions for `Attach DATABASE` and
//! `Detach DATABASE`, so the wording is an interface).
//!
//! Reference: `shared/reference/heroku-addons.md` §1.

use crate::Invalid;
use std::collections::BTreeMap;

/// What a service's plan allows. `None` means the service has no such limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `essential-0`, `mini`, `dev`…
    pub name: &'static str,
    pub human_name: &'static str,
    /// Heroku's list price, in cents per month (shown; Kiln bills nothing).
    pub price_cents: u32,
    /// Data the add-on may hold (PostgreSQL: database size).
    pub storage_bytes: Option<u64>,
    /// Memory the server may use (Redis `maxmemory`, memcached `-m`, a dedicated
    /// PostgreSQL's cgroup).
    pub memory_bytes: Option<u64>,
    /// Concurrent client connections.
    pub connections: Option<u32>,
    /// Its own server process (else a database in Kiln's shared cluster).
    pub dedicated: bool,
    /// Redis: data written to disk (append-only file) and kept across restarts.
    pub persistent: bool,
    /// How many manual backups are kept (PostgreSQL).
    pub backups_kept: u32,
}

/// An add-on service in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Heroku's service name: `heroku-postgresql`, `heroku-redis`, `memcachier`.
    pub name: &'static str,
    pub human_name: &'static str,
    /// Other names `addons:create` accepts.
    pub aliases: &'static [&'static str],
    /// A stable id, so clients can refer to the service by id as Heroku's do.
    pub id: &'static str,
    /// The add-on name's first word (`postgresql-concave-52656`).
    pub name_prefix: &'static str,
    /// The attachment name an app's first add-on of this service gets (`DATABASE`).
    pub primary_attachment: &'static str,
    /// The stem of later attachments' names, used when the primary name is taken:
    /// `HEROKU_POSTGRESQL` gives `HEROKU_POSTGRESQL_<COLOR>`.
    pub secondary_stem: &'static str,
    /// The config keys the provider gives, before the attachment name is put in front.
    pub config_keys: &'static [&'static str],
    pub plans: &'static [Plan],
    /// The plan `addons:create <service>` gets.
    pub default_plan: &'static str,
    /// The Debian package whose binaries the embedded provider runs.
    pub package: &'static str,
}

const MB: u64 = 1024 * 1024;
const GB: u64 = 1024 * MB;

const fn plan(name: &'static str, human_name: &'static str, price_cents: u32) -> Plan {
    Plan {
        name,
        human_name,
        price_cents,
        storage_bytes: None,
        memory_bytes: None,
        connections: None,
        dedicated: false,
        persistent: false,
        backups_kept: 0,
    }
}

const fn pg(
    name: &'static str,
    human_name: &'static str,
    price_cents: u32,
    storage: u64,
    connections: u32,
    memory: Option<u64>,
    backups_kept: u32,
) -> Plan {
    Plan {
        storage_bytes: Some(storage),
        connections: Some(connections),
        memory_bytes: memory,
        dedicated: memory.is_some(),
        persistent: true,
        backups_kept,
        ..plan(name, human_name, price_cents)
    }
}

const fn kv(
    name: &'static str,
    human_name: &'static str,
    price_cents: u32,
    memory: u64,
    connections: u32,
    persistent: bool,
) -> Plan {
    Plan {
        memory_bytes: Some(memory),
        connections: Some(connections),
        persistent,
        ..plan(name, human_name, price_cents)
    }
}

/// Heroku's plans and their limits (Essential: shared; Standard: a server of its own).
pub const POSTGRES_PLANS: &[Plan] = &[
    pg("essential-0", "Essential 0", 500, GB, 20, None, 2),
    pg("essential-1", "Essential 1", 900, 10 * GB, 20, None, 5),
    pg("essential-2", "Essential 2", 2000, 32 * GB, 40, None, 5),
    pg(
        "standard-0",
        "Standard 0",
        5000,
        64 * GB,
        120,
        Some(4 * GB),
        25,
    ),
    pg(
        "standard-2",
        "Standard 2",
        20000,
        256 * GB,
        400,
        Some(8 * GB),
        25,
    ),
];

pub const REDIS_PLANS: &[Plan] = &[
    kv("mini", "Mini", 300, 25 * MB, 20, false),
    kv("premium-0", "Premium 0", 1500, 50 * MB, 40, true),
    kv("premium-1", "Premium 1", 3000, 100 * MB, 80, true),
    kv("premium-2", "Premium 2", 6000, 250 * MB, 200, true),
];

pub const MEMCACHED_PLANS: &[Plan] = &[
    kv("dev", "Developer", 0, 25 * MB, 10, false),
    kv("100", "100 MB", 1400, 100 * MB, 250, false),
    kv("250", "250 MB", 2500, 250 * MB, 500, false),
    kv("500", "500 MB", 4000, 500 * MB, 750, false),
];

/// Heroku Scheduler: no server, no config vars; an app with it may have scheduled jobs.
pub const SCHEDULER_PLANS: &[Plan] = &[plan("standard", "Standard", 0)];

pub const SERVICES: &[Service] = &[
    Service {
        name: "heroku-postgresql",
        human_name: "Heroku Postgres",
        aliases: &["postgres", "postgresql", "heroku-postgres"],
        id: "6c67493d-8fc2-4cd4-9161-4f1ec11cbe69",
        name_prefix: "postgresql",
        primary_attachment: "DATABASE",
        secondary_stem: "HEROKU_POSTGRESQL",
        config_keys: &["URL"],
        plans: POSTGRES_PLANS,
        default_plan: "essential-0",
        package: "postgresql",
    },
    Service {
        name: "heroku-redis",
        human_name: "Heroku Key-Value Store",
        aliases: &["redis", "heroku-key-value-store"],
        id: "5f0d5f5c-6b9b-4f4e-9c2c-d0d4a0d8a3a1",
        name_prefix: "redis",
        primary_attachment: "REDIS",
        secondary_stem: "HEROKU_REDIS",
        config_keys: &["URL"],
        plans: REDIS_PLANS,
        default_plan: "mini",
        package: "redis-server",
    },
    Service {
        name: "memcachier",
        human_name: "MemCachier",
        aliases: &["memcached", "memcache"],
        id: "0b5bf3ba-1bdc-4a1e-9a0f-8d8b0e6a7c42",
        name_prefix: "memcachier",
        primary_attachment: "MEMCACHIER",
        secondary_stem: "MEMCACHIER",
        config_keys: &["SERVERS", "USERNAME", "PASSWORD"],
        plans: MEMCACHED_PLANS,
        default_plan: "dev",
        package: "memcached sasl2-bin",
    },
    Service {
        name: "scheduler",
        human_name: "Heroku Scheduler",
        aliases: &["heroku-scheduler"],
        id: "8d9ba5c2-4a51-4f3b-9c67-2b6f0e1d7a34",
        name_prefix: "scheduler",
        primary_attachment: "SCHEDULER",
        secondary_stem: "SCHEDULER",
        config_keys: &[],
        plans: SCHEDULER_PLANS,
        default_plan: "standard",
        package: "",
    },
];

impl Service {
    /// A service by its name, an alias or its id.
    pub fn find(name: &str) -> Option<&'static Service> {
        let name = name.trim();
        SERVICES.iter().find(|s| {
            s.name.eq_ignore_ascii_case(name)
                || s.id == name
                || s.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    pub fn plan(&self, name: &str) -> Option<&'static Plan> {
        self.plans
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// A plan's stable id: derived from the service's and the plan's names, so it survives
    /// restarts and is the same on every Kiln.
    pub fn plan_id(&self, plan: &Plan) -> String {
        stable_uuid(&format!("{}:{}", self.name, plan.name))
    }

    fn plan_list(&self) -> String {
        self.plans
            .iter()
            .map(|p| format!("{}:{}", self.name, p.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A service and one of its plans, as `addons:create` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRef {
    pub service: &'static Service,
    pub plan: &'static Plan,
}

impl PlanRef {
    /// Parses `svc`, `svc:plan`, an alias, or a plan id. An unknown service lists the
    /// services; an unknown plan lists the service's plans.
    pub fn parse(spec: &str) -> Result<PlanRef, Invalid> {
        let spec = spec.trim();
        if spec.is_empty() || spec.len() > 128 {
            return Err(Invalid::new(
                "plan",
                "Name a plan, such as heroku-postgresql:essential-0",
            ));
        }
        for service in SERVICES {
            for plan in service.plans {
                if service.plan_id(plan) == spec {
                    return Ok(PlanRef { service, plan });
                }
            }
        }
        let (svc, plan) = match spec.split_once(':') {
            Some((s, p)) => (s, Some(p)),
            None => (spec, None),
        };
        let Some(service) = Service::find(svc) else {
            let known: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
            return Err(Invalid::new(
                "plan",
                format!(
                    "Couldn't find either the add-on service or the add-on plan of \"{}\". The services are: {}.",
                    crate::records::shown(spec),
                    known.join(", ")
                ),
            ));
        };
        let name = plan.unwrap_or(service.default_plan);
        match service.plan(name) {
            Some(plan) => Ok(PlanRef { service, plan }),
            None => Err(Invalid::new(
                "plan",
                format!(
                    "Couldn't find the plan \"{}\" of {}. Its plans are: {}.",
                    crate::records::shown(name),
                    service.name,
                    service.plan_list()
                ),
            )),
        }
    }

    /// `heroku-postgresql:essential-0`.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.service.name, self.plan.name)
    }
}

/// Add-on states, as Heroku names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddonState {
    Provisioning,
    Provisioned,
    Deprovisioned,
}

impl AddonState {
    pub fn as_str(self) -> &'static str {
        match self {
            AddonState::Provisioning => "provisioning",
            AddonState::Provisioned => "provisioned",
            AddonState::Deprovisioned => "deprovisioned",
        }
    }

    pub fn parse(s: &str) -> Option<AddonState> {
        match s {
            "provisioning" => Some(AddonState::Provisioning),
            "provisioned" => Some(AddonState::Provisioned),
            "deprovisioned" => Some(AddonState::Deprovisioned),
            _ => None,
        }
    }
}

/// Checks a name a user gives an add-on (`--name`): Heroku's rule, lowercase letters,
/// digits and dashes, starting with a letter, at most 256 characters.
pub fn validate_addon_name(name: &str) -> Result<(), Invalid> {
    let ok = (1..=256).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "name",
            format!(
                "Name \"{}\" is invalid: it must start with a letter and contain only lowercase letters, digits and dashes (at most 256)",
                crate::records::shown(name)
            ),
        ))
    }
}

/// A generated add-on name: `postgresql-concave-52656`.
pub fn generate_addon_name(service: &Service) -> String {
    let adjectives = crate::app::ADJECTIVES;
    format!(
        "{}-{}-{:05}",
        service.name_prefix,
        adjectives[fastrand::usize(..adjectives.len())],
        fastrand::u32(0..100_000)
    )
}

/// Checks an attachment name (`--as`): uppercase letters, digits and underscores, starting
/// with a letter; its config vars are `<NAME>_<KEY>`, so it must make valid config var names.
pub fn validate_attachment_name(name: &str) -> Result<(), Invalid> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "name",
            format!(
                "Attachment name \"{}\" is invalid: it must start with a letter and contain only uppercase letters, digits and underscores (at most 64)",
                crate::records::shown(name)
            ),
        ))
    }
}

/// The colours Heroku names an app's second and later PostgreSQL databases after.
pub const COLORS: &[&str] = &[
    "AMBER", "AQUA", "BLACK", "BLUE", "BRONZE", "BROWN", "CHARCOAL", "COBALT", "COPPER", "CRIMSON",
    "CYAN", "GOLD", "GRAY", "GREEN", "IVORY", "JADE", "LIME", "MAROON", "MAUVE", "NAVY", "OLIVE",
    "ONYX", "ORANGE", "PINK", "PUCE", "PURPLE", "RED", "ROSE", "SILVER", "TEAL", "WHITE", "YELLOW",
];

/// The name an app's new attachment of `service` gets when the user gives none: the
/// service's primary name (`DATABASE`) when free, else `<stem>_<COLOR>` with a colour not
/// yet used in the app (`HEROKU_POSTGRESQL_AMBER`).
pub fn default_attachment_name(service: &Service, taken: &[String]) -> String {
    let free = |n: &str| !taken.iter().any(|t| t == n);
    if free(service.primary_attachment) {
        return service.primary_attachment.to_string();
    }
    let start = fastrand::usize(..COLORS.len());
    for i in 0..COLORS.len() {
        let name = format!(
            "{}_{}",
            service.secondary_stem,
            COLORS[(start + i) % COLORS.len()]
        );
        if free(&name) {
            return name;
        }
    }
    // 32 colours taken: count instead.
    (2..)
        .map(|n| format!("{}_{n}", service.secondary_stem))
        .find(|n| free(n))
        .unwrap_or_default()
}

/// The config vars an attachment named `attachment` gives its app: each of the provider's
/// keys with the attachment name in front (`URL` → `DATABASE_URL`).
pub fn attachment_config(
    attachment: &str,
    provider_config: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    provider_config
        .iter()
        .map(|(k, v)| (format!("{attachment}_{k}"), v.clone()))
        .collect()
}

/// The description of the release an attachment appends: Heroku's words, which its CLI
/// searches for (`pg:promote`).
pub fn attach_description(attachment: &str, addon_name: &str) -> String {
    format!("Attach {attachment} (@ref:{addon_name})")
}

pub fn detach_description(attachment: &str, addon_name: &str) -> String {
    format!("Detach {attachment} (@ref:{addon_name})")
}

pub fn upgrade_description(addon_name: &str, plan: &PlanRef) -> String {
    format!("Upgrade {addon_name} to {}", plan.full_name())
}

/// Options given at creation (`addons:create svc -- --maxmemory_policy allkeys-lru`),
/// checked against what the service understands.
pub fn validate_options(
    service: &Service,
    options: &BTreeMap<String, String>,
) -> Result<(), Invalid> {
    for (k, v) in options {
        match (service.name, k.as_str()) {
            ("heroku-redis", "maxmemory_policy") => {
                if !REDIS_POLICIES.contains(&v.as_str()) {
                    return Err(Invalid::new(
                        "config",
                        format!(
                            "maxmemory_policy \"{}\" is not one of {}",
                            crate::records::shown(v),
                            REDIS_POLICIES.join(", ")
                        ),
                    ));
                }
            }
            _ => {
                return Err(Invalid::new(
                    "config",
                    format!(
                        "{} has no option \"{}\"",
                        service.name,
                        crate::records::shown(k)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Redis's eviction policies.
pub const REDIS_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

/// A UUID-shaped id derived from a name (FNV-1a, twice): stable across runs, for catalogue
/// entries that are not rows.
fn stable_uuid(name: &str) -> String {
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x84222325cbf29ce4));
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_by_name_alias_default_and_id() {
        let p = PlanRef::parse("heroku-postgresql:essential-1").unwrap();
        assert_eq!(p.full_name(), "heroku-postgresql:essential-1");
        assert_eq!(PlanRef::parse("postgres").unwrap().plan.name, "essential-0");
        assert_eq!(
            PlanRef::parse("redis:premium-0").unwrap().service.name,
            "heroku-redis"
        );
        assert_eq!(
            PlanRef::parse("memcached").unwrap().full_name(),
            "memcachier:dev"
        );
        let id = p.service.plan_id(p.plan);
        assert_eq!(PlanRef::parse(&id).unwrap(), p);
        assert_eq!(id, p.service.plan_id(p.plan), "stable");
        assert!(PlanRef::parse("standard-0").is_err());
        assert!(
            PlanRef::parse("heroku-postgresql:standard-0")
                .unwrap()
                .plan
                .dedicated
        );
    }

    #[test]
    fn unknown_services_and_plans_list_what_exists() {
        let e = PlanRef::parse("mongodb").unwrap_err().message;
        assert!(
            e.contains("heroku-postgresql, heroku-redis, memcachier"),
            "{e}"
        );
        let e = PlanRef::parse("heroku-postgresql:hobby-dev")
            .unwrap_err()
            .message;
        assert!(
            e.contains("heroku-postgresql:essential-0, heroku-postgresql:essential-1"),
            "{e}"
        );
        for bad in ["", ":", "x".repeat(200).as_str(), "redis:\u{0}"] {
            assert!(PlanRef::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn attachment_names_follow_heroku() {
        let pg = Service::find("postgres").unwrap();
        assert_eq!(default_attachment_name(pg, &[]), "DATABASE");
        let second = default_attachment_name(pg, &["DATABASE".into()]);
        assert!(second.starts_with("HEROKU_POSTGRESQL_"), "{second}");
        let color = second.trim_start_matches("HEROKU_POSTGRESQL_");
        assert!(COLORS.contains(&color));
        let mut taken = vec!["DATABASE".to_string()];
        taken.extend(COLORS.iter().map(|c| format!("HEROKU_POSTGRESQL_{c}")));
        assert_eq!(default_attachment_name(pg, &taken), "HEROKU_POSTGRESQL_2");
        for ok in ["DATABASE", "PRIMARY_DB", "A1"] {
            validate_attachment_name(ok).unwrap();
        }
        for bad in ["", "database", "1DB", "DB-1", "DB URL", &"A".repeat(65)] {
            assert!(validate_attachment_name(bad).is_err(), "{bad:?}");
        }
        let config = attachment_config(
            "PRIMARY_DB",
            &[("URL".to_string(), "postgres://x".to_string())].into(),
        );
        assert_eq!(config["PRIMARY_DB_URL"], "postgres://x");
        assert_eq!(
            attach_description("DATABASE", "postgresql-calm-00042"),
            "Attach DATABASE (@ref:postgresql-calm-00042)"
        );
    }

    #[test]
    fn addon_names() {
        let n = generate_addon_name(Service::find("redis").unwrap());
        validate_addon_name(&n).unwrap();
        assert!(n.starts_with("redis-"), "{n}");
        for bad in ["", "Caps", "1abc", "a_b", "a b", &"a".repeat(257)] {
            assert!(validate_addon_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_are_checked_per_service() {
        let redis = Service::find("redis").unwrap();
        let opts = |k: &str, v: &str| [(k.to_string(), v.to_string())].into();
        validate_options(redis, &opts("maxmemory_policy", "allkeys-lru")).unwrap();
        assert!(validate_options(redis, &opts("maxmemory_policy", "yolo")).is_err());
        assert!(validate_options(redis, &opts("requirepass", "x")).is_err());
        let pg = Service::find("postgres").unwrap();
        assert!(validate_options(pg, &opts("maxmemory_policy", "allkeys-lru")).is_err());
    }
}
