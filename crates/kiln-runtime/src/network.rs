//! Tenants apart on the network: each dyno gets a network namespace of its own (made by the
//! dyno helper, see `helper.rs` and `netlink`), joined to the host by one veth pair on a /30
//! carved from a range used for nothing else on this machine. This module is the host's
//! side: the range and its claim, the addresses, and the firewall (nftables) that decides
//! what a dyno may reach.
//!
//! A dyno may reach:
//! - the internet, and anything outside this machine's dyno ranges, through NAT;
//! - its app's add-ons: the ports its config vars name at the services address (the range's
//!   first address, on the host's `lo`), one nftables set element per dyno and port;
//! - the router's ports on the host.
//!
//! and nothing else: not another dyno (of any app, of any Kiln on this machine), not any
//! other port of the host (Kiln's API, the host's databases), not the cloud metadata address
//! (169.254.0.0/16). Connections to what is refused are reset at once (a clear "connection
//! refused", not a hang).
//!
//! The range is claimed with an exclusive lock on `/run/kiln/dyno-net-<tag>.lock`, held for
//! the server's life (the kernel lets go of it when the server dies, however it dies), so two
//! servers on one machine never share a range. The services address sits on the host's `lo`.
//! The firewall is a table of its own (`inet kiln_<tag>`), rebuilt at start and removed at
//! shutdown, so Kiln never edits rules it does not own.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Why dynos cannot have networks of their own here, in words for the operator.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NetworkError(String);

impl From<String> for NetworkError {
    fn from(s: String) -> Self {
        NetworkError(s)
    }
}

impl From<&str> for NetworkError {
    fn from(s: &str) -> Self {
        NetworkError(s.to_string())
    }
}

type Result<T, E = NetworkError> = std::result::Result<T, E>;

/// What the server asks for.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// A range for dynos (`10.200.16.0/20`), or `None` to pick a free /20 in 10.200.0.0/13.
    pub range: Option<(Ipv4Addr, u8)>,
    /// Host ports every dyno may reach (the router's).
    pub router_ports: Vec<u16>,
    /// Where the range in use is remembered (`<data-dir>/dyno-network`): add-on URLs hold the
    /// services address, so a server started again on the same data keeps its range.
    pub remember: Option<std::path::PathBuf>,
}

/// One dyno's slot: its addresses and the firewall elements it holds.
#[derive(Debug)]
pub struct Slot {
    pub index: u32,
    pub net: crate::DynoNet,
    ports: Vec<u16>,
}

pub struct DynoNetwork {
    base: u32,
    prefix: u8,
    tag: String,
    /// The claim: locked while this server lives.
    _claim: std::fs::File,
    table: String,
    services: Ipv4Addr,
    /// What dynos get as `/etc/resolv.conf` when the host's points at its own loopback.
    resolv_conf: Option<String>,
    /// Slots in use, and where the next search starts: slots are handed out in turn, not
    /// lowest-first, because a namespace (and its veth pair) is destroyed by the kernel a
    /// little after its last process ends, and its link name must be free before reuse.
    used: Mutex<(BTreeSet<u32>, u32)>,
}

impl std::fmt::Debug for DynoNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DynoNetwork({}/{})",
            Ipv4Addr::from(self.base),
            self.prefix
        )
    }
}

/// Runs a command to its end, with `input` on its stdin; its stdout, or its stderr as the error.
fn run_with(cmd: &mut Command, input: &[u8], what: &str) -> Result<String> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetworkError(format!("{what}: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(input)
            .map_err(|e| NetworkError(format!("{what}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetworkError(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetworkError(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<String> {
    run_with(cmd, b"", what)
}

/// Runs an nftables script.
fn nft(script: &str) -> Result<()> {
    run_with(
        Command::new("nft").args(["-f", "-"]),
        script.as_bytes(),
        "running nft (install nftables)",
    )
    .map(|_| ())
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// A network this host already uses, and the link it is on (for the operator's message).
#[derive(Debug, Clone)]
struct HostNet {
    net: (u32, u8),
    dev: String,
}

/// The IPv4 networks this host already uses (its addresses' and routes' networks), but for
/// those of Kiln's own dyno links (`kv…`), which live inside the dyno ranges.
fn host_networks() -> Vec<HostNet> {
    let parse = |w: &str| {
        let (a, p) = w.split_once('/')?;
        let (a, p) = (a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?);
        Some((u32::from(a) & mask(p), p))
    };
    let mut nets = Vec::new();
    if let Ok(text) = run(
        Command::new("ip").args(["-4", "-o", "addr", "show"]),
        "listing addresses",
    ) {
        // `2: eth0    inet 192.0.2.2/24 brd … scope global eth0`
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let dev = w.nth(1).unwrap_or("");
            if dev.starts_with("kv") {
                continue;
            }
            if let Some(n) = w.skip_while(|x| *x != "inet").nth(1).and_then(parse) {
                nets.push(HostNet {
                    net: n,
                    dev: dev.to_string(),
                });
            }
        }
    }
    if let Ok(text) = run(
        Command::new("ip").args(["-4", "route", "show", "table", "all"]),
        "listing routes",
    ) {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let dev = words
                .iter()
                .position(|w| *w == "dev")
                .and_then(|i| words.get(i + 1))
                .copied()
                .unwrap_or("");
            if dev.starts_with("kv") {
                continue;
            }
            if let Some(n) = words.first().and_then(|w| parse(w)) {
                nets.push(HostNet {
                    net: n,
                    dev: dev.to_string(),
                });
            }
        }
    }
    nets
}

/// The nameservers a `resolv.conf` names.
fn nameservers(text: &str) -> Vec<std::net::IpAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().split('%').next()?.parse().ok())
        .collect()
}

/// `None` when the host's `/etc/resolv.conf` serves dynos as is; otherwise the upstream
/// servers' file (systemd-resolved keeps it in `/run/systemd/resolve/resolv.conf`), because a
/// resolver on the host's loopback cannot be reached from a dyno's namespace.
fn dyno_resolv_conf() -> Option<String> {
    resolv_conf_for(
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok(),
    )
}

fn resolv_conf_for(host: &str, upstream: Option<String>) -> Option<String> {
    let servers = nameservers(host);
    if servers.is_empty() || servers.iter().any(|a| !a.is_loopback()) {
        return None;
    }
    match upstream {
        Some(text) if nameservers(&text).iter().any(|a| !a.is_loopback()) => Some(text),
        _ => {
            tracing::warn!(
                "the host's resolver listens on its loopback only and no upstream servers are known: dynos have no DNS"
            );
            None
        }
    }
}

/// The range a server on this data last used (`<data-dir>/dyno-network`).
fn remembered_range(path: &std::path::Path) -> Option<(Ipv4Addr, u8)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (a, p) = text.trim().split_once('/')?;
    Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?))
}

/// The services address of the range a server on this data last used. Add-on URLs name it,
/// so a server that cannot give dynos networks this time (the range is taken, nftables is
/// gone, `--dyno-network off`) must still serve add-ons there, not at `127.0.0.1`, or every
/// app with an add-on loses it.
pub fn remembered_services_addr(path: &std::path::Path) -> Option<Ipv4Addr> {
    let (a, p) = remembered_range(path)?;
    Some(Ipv4Addr::from((u32::from(a) & mask(p)) + 1))
}

/// Puts the services address on the host's `lo`, where dynos of either kind reach it. A
/// crashed server may have left it there: that is the state wanted.
pub fn add_services_addr(addr: Ipv4Addr) -> Result<()> {
    match run(
        Command::new("ip").args(["addr", "add", &format!("{addr}/32"), "dev", "lo"]),
        "adding the services address",
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.0.contains("File exists") || e.0.contains("already assigned") => Ok(()),
        Err(e) => Err(e),
    }
}

fn overlaps((a, ap): (u32, u8), (b, bp): (u32, u8)) -> bool {
    let p = ap.min(bp);
    a & mask(p) == b & mask(p)
}

/// Locks the claim file of a range; `None` when another live server holds it.
fn claim(tag: &str) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let dir = std::path::Path::new("/run/kiln");
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(format!("dyno-net-{tag}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: flock on a file we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(None);
    }
    Ok(Some(f))
}

impl DynoNetwork {
    /// Claims a range, makes the services address and the firewall. Fails with a message for
    /// the operator when the machine cannot isolate dynos (no nftables, no permission).
    pub fn setup(config: &NetworkConfig) -> Result<DynoNetwork> {
        let taken = host_networks();
        let remembered = config.remember.as_deref().and_then(remembered_range);
        let wanted = config.range.or(remembered);
        // A network of the host's in the way; the services address a crashed server left on
        // `lo` for this very range is not one.
        let conflict = |net: (u32, u8)| {
            taken
                .iter()
                .find(|t| t.net.1 > 0 && overlaps(t.net, net) && t.net != (net.0 + 1, 32))
                .cloned()
        };
        let candidates: Vec<(u32, u8)> = match wanted {
            Some((a, p)) => {
                if !(16..=26).contains(&p) {
                    return Err(NetworkError(format!(
                        "the dyno network {a}/{p} must be a /16 to a /26"
                    )));
                }
                let net = (u32::from(a) & mask(p), p);
                if let Some(t) = conflict(net) {
                    return Err(NetworkError(format!(
                        "the dyno network {a}/{p} overlaps a network this host uses ({}/{} on {}); choose another with --dyno-network",
                        Ipv4Addr::from(t.net.0),
                        t.net.1,
                        if t.dev.is_empty() { "no link" } else { &t.dev }
                    )));
                }
                vec![net]
            }
            None => {
                let start = std::process::id() as usize;
                let base = u32::from(Ipv4Addr::new(10, 200, 0, 0));
                (0..128)
                    .map(|i| (base + (((start + i) % 128) as u32) * 4096, 20u8))
                    .filter(|n| conflict(*n).is_none())
                    .collect()
            }
        };
        for (base, prefix) in candidates {
            let o = Ipv4Addr::from(base).octets();
            let tag = format!("{:02x}{:02x}{:x}", o[1], o[2], prefix);
            let Some(lock) = claim(&tag)? else {
                if wanted.is_some() {
                    return Err(NetworkError(format!(
                        "the dyno network {}/{prefix} is in use by another Kiln server on this machine",
                        Ipv4Addr::from(base)
                    )));
                }
                continue;
            };
            let net = DynoNetwork {
                base,
                prefix,
                tag: tag.clone(),
                _claim: lock,
                table: format!("kiln_{tag}"),
                services: Ipv4Addr::from(base + 1),
                used: Mutex::new((BTreeSet::new(), 1)),
                resolv_conf: dyno_resolv_conf(),
            };
            match net.configure(&config.router_ports) {
                Ok(()) => {
                    if let Some(p) = &config.remember {
                        let range = format!("{}/{prefix}\n", Ipv4Addr::from(base));
                        std::fs::write(p, range)
                            .map_err(|e| NetworkError(format!("writing {}: {e}", p.display())))?;
                    }
                    return Ok(net);
                }
                Err(e) => {
                    net.teardown();
                    return Err(e);
                }
            }
        }
        Err("no free range for dyno networks in 10.200.0.0/13; give one with --dyno-network".into())
    }

    fn configure(&self, router_ports: &[u16]) -> Result<()> {
        add_services_addr(self.services)?;
        // NAT needs forwarding. If the host did not forward before, it still forwards nothing
        // but dyno traffic (see the forward chain).
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if !forwarding {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                .map_err(|e| format!("turning IPv4 forwarding on: {e}"))?;
        }
        let range = format!("{}/{}", Ipv4Addr::from(self.base), self.prefix);
        let links = format!("kv{}*", self.tag);
        let ports = if router_ports.is_empty() {
            String::new()
        } else {
            format!(
                "iifname \"{links}\" tcp dport {{ {} }} accept\n",
                router_ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let others = if forwarding {
            ""
        } else {
            "iifname != \"kv*\" oifname != \"kv*\" drop\n"
        };
        let table = &self.table;
        let script = format!(
            r#"table inet {table}
delete table inet {table}
table inet {table} {{
  set access {{ type ipv4_addr . inet_service; }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{links}" ct state established,related accept
    iifname "{links}" ip saddr . tcp dport @access accept
    {ports}
    iifname "{links}" meta l4proto tcp reject with tcp reset
    iifname "{links}" reject
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{links}" oifname "kv*" reject
    oifname "{links}" ct state established,related accept
    oifname "{links}" drop
    iifname "{links}" ip daddr 169.254.0.0/16 reject
    iifname "{links}" ip daddr {range} reject
    {others}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {range} oifname != "{links}" masquerade
  }}
}}
"#
        );
        nft(&script)
    }

    /// The address dynos reach their add-ons at.
    pub fn services_addr(&self) -> Ipv4Addr {
        self.services
    }

    /// A slot for a dyno that may reach these add-on ports.
    pub fn allocate(&self, ports: Vec<u16>) -> Result<Slot> {
        let slots = 1u32 << (32 - self.prefix - 2);
        let index = {
            let mut guard = self.used.lock().unwrap_or_else(|e| e.into_inner());
            let (used, next) = &mut *guard;
            // Slot 0 holds the services address.
            let start = (*next).clamp(1, slots - 1);
            let i = (start..slots)
                .chain(1..start)
                .find(|i| !used.contains(i))
                .ok_or("every address of the dyno network is in use")?;
            used.insert(i);
            *next = if i + 1 >= slots { 1 } else { i + 1 };
            i
        };
        let block = self.base + index * 4;
        let slot = Slot {
            index,
            net: crate::DynoNet {
                host_link: format!("kv{}{index:x}", self.tag),
                host_addr: Ipv4Addr::from(block + 1),
                dyno_addr: Ipv4Addr::from(block + 2),
                prefix: 30,
                resolv_conf: self.resolv_conf.clone(),
            },
            ports,
        };
        if !slot.ports.is_empty() {
            if let Err(e) = nft(&format!(
                "add element inet {} access {{ {} }}\n",
                self.table,
                self.elements(&slot)
            )) {
                self.release_index(index);
                return Err(e);
            }
        }
        Ok(slot)
    }

    fn elements(&self, slot: &Slot) -> String {
        slot.ports
            .iter()
            .map(|p| format!("{} . {p}", slot.net.dyno_addr))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn release_index(&self, index: u32) {
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .remove(&index);
    }

    /// Gives a slot back once its dyno has ended (its namespace, and the veth pair with it,
    /// are gone by then).
    pub fn release(&self, slot: Slot) {
        if !slot.ports.is_empty() {
            if let Err(e) = nft(&format!(
                "delete element inet {} access {{ {} }}\n",
                self.table,
                self.elements(&slot)
            )) {
                tracing::warn!(error = %e, "could not remove a dyno's firewall elements");
            }
        }
        self.release_index(slot.index);
    }

    /// The add-on ports a dyno with this environment may reach: those of URLs in its config
    /// that point at the services address.
    pub fn addon_ports(&self, env: &[(String, String)]) -> Vec<u16> {
        let host = self.services.to_string();
        let mut ports: Vec<u16> = env
            .iter()
            .filter_map(|(_, v)| {
                let rest = v.split_once("://")?.1;
                let authority = rest.split(['/', '?', '#']).next()?;
                let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                let (h, p) = hostport.rsplit_once(':')?;
                (h == host).then(|| p.parse().ok()).flatten()
            })
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Removes the firewall table and the claim.
    pub fn teardown(&self) {
        let _ = nft(&format!("delete table inet {}\n", self.table));
        let _ = run(
            Command::new("ip").args(["addr", "del", &format!("{}/32", self.services), "dev", "lo"]),
            "removing the services address",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(base: Ipv4Addr, prefix: u8) -> DynoNetwork {
        let claim = std::fs::File::open("/dev/null").unwrap();
        DynoNetwork {
            base: u32::from(base),
            prefix,
            tag: "t".into(),
            _claim: claim,
            table: "kiln_t".into(),
            services: Ipv4Addr::from(u32::from(base) + 1),
            used: Mutex::new((BTreeSet::new(), 1)),
            resolv_conf: None,
        }
    }

    #[test]
    fn a_loopback_resolver_is_replaced_by_the_upstream_servers() {
        let resolved = "nameserver 127.0.0.53\noptions edns0 trust-ad\n";
        let upstream = "nameserver 192.0.2.53\nnameserver 2001:db8::53\n".to_string();
        assert_eq!(
            resolv_conf_for(resolved, Some(upstream.clone())).as_deref(),
            Some(upstream.as_str())
        );
        // A reachable resolver is kept; no upstream file leaves the host's.
        assert_eq!(
            resolv_conf_for("nameserver 10.255.255.53\n", Some(upstream)),
            None
        );
        assert_eq!(resolv_conf_for(resolved, None), None);
        assert_eq!(resolv_conf_for("", None), None);
        assert_eq!(
            nameservers("nameserver fe80::1%eth0\n# nameserver 9.9.9.9\nnameserver ::1"),
            [
                "fe80::1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn addon_ports_are_those_at_the_services_address() {
        let n = net(Ipv4Addr::new(10, 200, 16, 0), 20);
        let env = [
            ("REDIS_URL", "redis://:pw@10.200.16.1:6380"),
            (
                "DATABASE_URL",
                "postgres://u:p@10.200.16.1:5433/db?sslmode=disable",
            ),
            ("OTHER_URL", "https://10.200.16.10:443/"),
            ("EXTERNAL", "postgres://u:p@db.example.com:5432/x"),
            ("WEIRD", "10.200.16.1:22"),
            ("BAD_PORT", "redis://10.200.16.1:notaport"),
            ("DUP", "redis://10.200.16.1:6380"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(n.addon_ports(&env), [5433, 6380]);
    }

    #[test]
    fn slots_go_round_and_are_never_the_services_block() {
        let n = net(Ipv4Addr::new(10, 200, 16, 0), 26); // 16 /30 blocks, 15 for dynos
        let a = n.allocate(Vec::new()).unwrap();
        assert_eq!(a.net.host_addr, Ipv4Addr::new(10, 200, 16, 5));
        assert_eq!(a.net.dyno_addr, Ipv4Addr::new(10, 200, 16, 6));
        let b = n.allocate(Vec::new()).unwrap();
        n.release(a);
        // The freed slot is not handed out again at once.
        let c = n.allocate(Vec::new()).unwrap();
        assert_eq!(c.index, 3);
        let mut all = vec![b, c];
        while let Ok(s) = n.allocate(Vec::new()) {
            all.push(s);
        }
        assert_eq!(all.len(), 15);
        assert!(
            all.iter()
                .all(|s| s.index != 0 && s.net.host_link.len() <= 15)
        );
    }

    #[test]
    fn ranges_overlap_by_their_shorter_prefix() {
        let a = (u32::from(Ipv4Addr::new(10, 200, 16, 0)), 20);
        assert!(overlaps(a, (u32::from(Ipv4Addr::new(10, 0, 0, 0)), 8)));
        assert!(overlaps(a, (u32::from(Ipv4Addr::new(10, 200, 17, 0)), 24)));
        assert!(!overlaps(a, (u32::from(Ipv4Addr::new(10, 200, 32, 0)), 20)));
        assert!(!overlaps(a, (u32::from(Ipv4Addr::new(192, 0, 2, 0)), 24)));
    }
}
