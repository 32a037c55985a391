//! Starting the log drains: the roots their TLS trusts and where they may connect.

use anyhow::{Context, Result};
use kiln_drains::Refused;
use kiln_model::drain::forbidden_address;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The system's bundle of trusted roots (Debian's ca-certificates).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(clap::Args, Debug, Clone)]
pub struct DrainArgs {
    /// A PEM file of CA certificates that log drains (`syslog+tls://`, `https://`) trust
    /// besides the system's, such as a company's internal CA.
    #[arg(long, env = "KILN_DRAIN_CA_FILE", value_name = "PEM")]
    pub drain_ca_file: Option<PathBuf>,
}

/// Starts every stored drain. Drains may connect anywhere except link-local, unspecified,
/// multicast and broadcast addresses (cloud metadata services live at 169.254.169.254) and
/// Kiln itself: its listeners (`own`) and its add-on services' address (`services`), whose
/// ports belong to other tenants' databases.
pub fn start(
    args: &DrainArgs,
    platform: &kiln_platform::Platform,
    own: Vec<SocketAddr>,
    services: Option<IpAddr>,
) -> Result<()> {
    let tls = client_config(Path::new(SYSTEM_ROOTS), args.drain_ca_file.as_deref())?;
    let guard: kiln_drains::Guard = Arc::new(move |addr: SocketAddr| {
        let ip = canonical(addr.ip());
        if forbidden_address(ip) {
            return Err(Refused(
                "a link-local, unspecified, multicast or broadcast address",
            ));
        }
        if services == Some(ip) {
            return Err(Refused("Kiln's add-on services"));
        }
        for l in &own {
            let lip = canonical(l.ip());
            let same_host =
                lip == ip || (lip.is_unspecified() && (ip.is_loopback() || ip.is_unspecified()));
            if l.port() == addr.port() && (same_host || (lip.is_loopback() && ip.is_loopback())) {
                return Err(Refused("Kiln's own listener"));
            }
        }
        Ok(())
    });
    platform.start_drains(kiln_drains::DrainContext {
        tls: Arc::new(tls),
        guard,
    });
    Ok(())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn client_config(system: &Path, extra: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if system.exists() {
        let text =
            std::fs::read(system).with_context(|| format!("reading {}", system.display()))?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&text)
            .filter_map(|c| c.ok())
            .collect();
        roots.add_parsable_certificates(certs);
    }
    if let Some(path) = extra {
        let text = std::fs::read(path)
            .with_context(|| format!("reading --drain-ca-file {}", path.display()))?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!("--drain-ca-file {} is not valid PEM: {e:?}", path.display())
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        anyhow::ensure!(
            added > 0,
            "--drain-ca-file {} holds no certificate usable as a trusted root",
            path.display()
        );
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(kiln_tls::provider())
            .with_safe_default_protocol_versions()
            .context("the TLS client configuration for drains")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
