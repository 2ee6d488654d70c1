//! The operator API client (HTTPS with an operator certificate, through `ureq` on rustls) and a
//! plain client for the health port. Used by `mcdnnctl`, the demo and the test tools.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use net::identity::Identity;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// A response: status code, `Location` header if any, body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// An HTTPS client that trusts only the fleet CA and presents an operator identity.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn agent(tls: Option<TlsConfig>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(10)));
    if let Some(tls) = tls {
        config = config.tls_config(tls);
    }
    config.build().into()
}

impl Client {
    /// Loads `<dir>/<name>.pem`, `.key` and `ca.pem` (as `mcdnnctl enroll operator` writes
    /// them) and presents that certificate.
    pub fn load(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let identity = Identity::load(dir, name).with_context(|| {
            format!(
                "loading operator identity {name} from {} (mcdnnctl enroll operator {name} \
                 --role admin|read-only; then --identity-dir / --identity)",
                dir.display()
            )
        })?;
        // ureq takes the key as PEM (its DER constructor needs a key kind it does not export);
        // the identity above has already checked these files.
        let key_path = dir.join(format!("{name}.key"));
        let key_pem =
            std::fs::read(&key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key = PrivateKey::from_pem(&key_pem)
            .with_context(|| format!("{} is not a PEM private key", key_path.display()))?;
        let chain: Vec<Certificate<'static>> = identity
            .cert_chain()
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        Ok(Self::with_tls(
            identity.ca_certs(),
            Some(ClientCert::new_with_certs(&chain, key)),
        ))
    }

    /// A client with no certificate (a device enrolling with a token), trusting `ca_pem`.
    pub fn anonymous(ca_pem: &[u8]) -> anyhow::Result<Self> {
        use rustls_pki_types::pem::PemObject;
        let roots = rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .context("the fleet CA file is not PEM certificates")?;
        anyhow::ensure!(!roots.is_empty(), "the fleet CA file holds no certificate");
        Ok(Self::with_tls(&roots, None))
    }

    fn with_tls(
        roots: &[rustls_pki_types::CertificateDer<'static>],
        cert: Option<ClientCert>,
    ) -> Self {
        let roots = roots
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .client_cert(cert)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        Self {
            agent: agent(Some(tls)),
        }
    }

    /// One request to `https://{addr}{path}`; `body` is sent as JSON.
    pub fn request(
        &self,
        method: &str,
        addr: &str,
        path: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        send(
            &self.agent,
            method,
            &format!("https://{addr}{path}"),
            body,
            timeout,
        )
    }

    /// GETs `path` and returns the body of a 200 response.
    pub fn get(&self, addr: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
        ok_body(self.request("GET", addr, path, None, timeout)?, addr, path)
    }

    /// GETs `path` as bytes (at most `limit`) from a 200 response; any other status is an
    /// error carrying the status and the server's message, and its `Location` if it redirected.
    pub fn get_bytes(
        &self,
        addr: &str,
        path: &str,
        timeout: Duration,
        limit: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let url = format!("https://{addr}{path}");
        let mut response = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.body_mut().read_to_string().unwrap_or_default();
            bail!("GET {path} from {addr}: HTTP {status}: {}", body.trim());
        }
        response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .with_context(|| format!("reading {path} from {addr}"))
    }

    /// POSTs JSON, following one 307 redirect (a follower pointing at the leader).
    pub fn post_json(
        &self,
        addr: &str,
        path: &str,
        body: &str,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let r = self.request("POST", addr, path, Some(body), timeout)?;
        match (r.status, &r.location) {
            (307, Some(loc)) => {
                let url = if loc.starts_with("https://") {
                    loc.clone()
                } else {
                    bail!("the coordinator redirected to {loc:?}, which is not an https URL")
                };
                send(&self.agent, "POST", &url, Some(body), timeout)
            }
            _ => Ok(r),
        }
    }
}

/// GETs `path` from a health port (plain HTTP).
pub fn health_request(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    send(
        &agent(None),
        "GET",
        &format!("http://{addr}{path}"),
        None,
        timeout,
    )
}

/// GETs `path` from a health port and returns the body of a 200 response.
pub fn health_get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
    ok_body(health_request(addr, path, timeout)?, addr, path)
}

/// The HTTP status of `path` on a health port (e.g. 503 from `/readyz` without a leader).
pub fn health_status(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<u16> {
    Ok(health_request(addr, path, timeout)?.status)
}

fn ok_body(r: Response, addr: &str, path: &str) -> anyhow::Result<String> {
    if r.status != 200 {
        bail!(
            "GET {path} from {addr}: HTTP {}: {}",
            r.status,
            r.body.trim()
        );
    }
    Ok(r.body)
}

fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let result = match (method, body) {
        ("GET", _) => agent
            .get(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call(),
        ("POST", body) => agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("content-type", "application/json")
            .send(body.unwrap_or("")),
        (other, _) => bail!("unsupported method {other}"),
    };
    let mut response = result.with_context(|| format!("{method} {url}"))?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .body_mut()
        .read_to_string()
        .with_context(|| format!("reading the answer to {method} {url}"))?;
    Ok(Response {
        status,
        location,
        body,
    })
}
