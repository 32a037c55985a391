//! `kiln server`'s ACME flags and the wiring of Automatic Certificate Management: an ACME
//! client (kiln-tls) whose HTTP-01 answers the router publishes, handed to the platform's
//! ACM manager. Off unless `--acme-directory` is given.

use anyhow::{Context, Result, bail};
use kiln_model::route::AppRoutes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct AcmeArgs {
    /// ACME directory URL of the certificate authority for Automatic Certificate Management
    /// (certs:auto:enable), e.g. https://acme-v02.api.letsencrypt.org/directory (Let's
    /// Encrypt; giving it agrees to the CA's terms of service). Off unless given. HTTP-01
    /// validation needs the router's HTTP listener on port 80 of a publicly reachable host,
    /// and --router-tls-listen to serve what is issued.
    #[arg(long, env = "KILN_ACME_DIRECTORY", value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Contact email given to the ACME certificate authority (expiry and policy notices).
    #[arg(long, env = "KILN_ACME_CONTACT", value_name = "EMAIL")]
    pub acme_contact: Option<String>,
    /// An extra trusted root (PEM) for the ACME server's HTTPS, besides the system's, for a
    /// private or test CA such as Pebble.
    #[arg(long, env = "KILN_ACME_CA_FILE", value_name = "PEM")]
    pub acme_ca_file: Option<PathBuf>,
}

/// Starts ACM when a directory is configured; returns the line for the start banner.
pub fn start(
    args: &AcmeArgs,
    platform: &kiln_platform::Platform,
    routes: Arc<dyn AppRoutes>,
    data_dir: &Path,
    https: bool,
) -> Result<Option<String>> {
    let Some(directory) = args.acme_directory.as_deref() else {
        if args.acme_contact.is_some() || args.acme_ca_file.is_some() {
            bail!(
                "--acme-contact and --acme-ca-file configure ACME, which is off without --acme-directory URL"
            );
        }
        return Ok(None);
    };
    let mut config =
        kiln_tls::acme::AcmeConfig::new(directory, data_dir.join("acme").join("account.key"));
    config.contact = args.acme_contact.clone();
    config.extra_ca = args.acme_ca_file.clone();
    let client =
        kiln_tls::acme::AcmeClient::new(config, Arc::new(kiln_platform::RouterChallenges(routes)))
            .context("configuring ACME")?;
    platform.start_acm(Arc::new(client));
    if !https {
        tracing::warn!(
            "ACME is configured but there is no HTTPS listener (--router-tls-listen): certificates will be issued and stored but not served"
        );
    }
    Ok(Some(format!(
        "  ACME:         {directory} (certs:auto:enable; HTTP-01 on the router's HTTP port)"
    )))
}
