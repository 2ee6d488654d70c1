//! `mcdnn-node enroll`: a device gets its certificate without its private key ever leaving it.
//! It makes the key here, sends a certificate request with the operator's one-time token to
//! the coordinator's `POST /v1/enroll` (HTTPS, server checked against the fleet CA the device
//! was given out of band; no client certificate yet), and stores the chain it gets back.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use net::identity::{CA_CERT_FILE, CertificateRequest, Kind, PeerId, store_issued};
use serde::{Deserialize, Serialize};

/// Enrollment answers within this; a coordinator that takes longer is not answering.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Followers answer 307 to the leader; one hop reaches it (two for a change mid-request).
const MAX_HOPS: usize = 3;

#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// The name the token was made for (the certificate's identity comes from the token).
    #[arg(long, env = "MCDNN_NODE_NAME")]
    pub name: String,
    /// The one-time token from `mcdnnctl node token NAME`.
    #[arg(long, env = "MCDNN_ENROLL_TOKEN")]
    pub token: String,
    /// Operator API addresses of the coordinator replicas, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long, env = "MCDNN_ADMIN", value_delimiter = ',')]
    pub admin: Vec<String>,
    /// Folder holding `ca.pem` (given out of band); the key and certificate are written here.
    #[arg(long, env = "MCDNN_IDENTITY_DIR", default_value = "fleet-ca")]
    pub identity_dir: PathBuf,
}

#[derive(Serialize)]
struct Request<'a> {
    name: &'a str,
    token: &'a str,
    csr_pem: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    chain_pem: String,
}

/// Enrolls and stores `<name>.key` (0600) and `<name>.pem` in the identity folder.
pub fn enroll(args: &EnrollArgs) -> anyhow::Result<PathBuf> {
    PeerId::new(Kind::Node, &args.name)?;
    let dir = &args.identity_dir;
    let key_path = dir.join(format!("{}.key", args.name));
    if key_path.exists() {
        bail!(
            "{} already exists: this device is enrolled; remove it first to enroll again",
            key_path.display()
        );
    }
    let ca_path = dir.join(CA_CERT_FILE);
    let ca_pem = std::fs::read(&ca_path).with_context(|| {
        format!(
            "reading {} (the fleet CA certificate must be put there before enrolling)",
            ca_path.display()
        )
    })?;
    anyhow::ensure!(!args.admin.is_empty(), "--admin names no coordinator");
    let agent = agent(&ca_pem)?;
    let (key_pem, request) = CertificateRequest::generate()?;
    let body = serde_json::to_string(&Request {
        name: &args.name,
        token: &args.token,
        csr_pem: request.pem(),
    })?;
    let mut errors = Vec::new();
    for addr in &args.admin {
        match post(&agent, &format!("https://{addr}/v1/enroll"), &body) {
            Ok(answer) => {
                store_issued(dir, &args.name, &key_pem, &answer.chain_pem)?;
                return Ok(dir.join(format!("{}.pem", args.name)));
            }
            // A refusal is final (the token is wrong, used or expired): do not try elsewhere.
            Err(Failure::Refused(e)) => return Err(e),
            Err(Failure::Unreachable(e)) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    bail!("no coordinator answered: {}", errors.join("; "))
}

enum Failure {
    Refused(anyhow::Error),
    Unreachable(anyhow::Error),
}

fn agent(ca_pem: &[u8]) -> anyhow::Result<ureq::Agent> {
    let roots = rustls_pki_types_certs(ca_pem)?;
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build();
    Ok(ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(TIMEOUT))
        .build()
        .into())
}

fn rustls_pki_types_certs(pem: &[u8]) -> anyhow::Result<Vec<ureq::tls::Certificate<'static>>> {
    let certs = ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .context("ca.pem is not PEM")?;
    anyhow::ensure!(!certs.is_empty(), "ca.pem holds no certificate");
    Ok(certs)
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<Answer, Failure> {
    let mut url = url.to_owned();
    for _ in 0..MAX_HOPS {
        let mut resp = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| Failure::Unreachable(anyhow::Error::new(e)))?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .map_err(|e| Failure::Unreachable(anyhow::Error::new(e)))?;
        match (status, location) {
            (200, _) => {
                return serde_json::from_str(&text).map_err(|e| {
                    Failure::Unreachable(anyhow::anyhow!("unexpected answer from {url}: {e}"))
                });
            }
            (307 | 308, Some(next)) => url = next,
            (400..=499, _) => {
                return Err(Failure::Refused(anyhow::anyhow!(
                    "enrollment refused ({status}): {}",
                    text.trim()
                )));
            }
            _ => {
                return Err(Failure::Unreachable(anyhow::anyhow!(
                    "{url} answered {status}: {}",
                    text.trim()
                )));
            }
        }
    }
    Err(Failure::Unreachable(anyhow::anyhow!(
        "too many redirects from {url}"
    )))
}
