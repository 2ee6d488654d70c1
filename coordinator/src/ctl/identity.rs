//! `mcdnnctl ca init` and `mcdnnctl enroll`: creating the fleet CA and issuing certificates.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use net::identity::{CA_CERT_FILE, CA_KEY_FILE, Ca, IssuingCa, Kind, OperatorRole};

/// Environment variable naming the CA directory.
pub const CA_DIR_ENV: &str = "MCDNN_CA_DIR";
/// CA directory used when neither `--dir` nor `MCDNN_CA_DIR` is given.
pub const DEFAULT_CA_DIR: &str = "./fleet-ca";
/// Certificate lifetime when `--days` is not given.
pub const DEFAULT_DAYS: u32 = 365;

/// Arguments of `mcdnnctl ca init`.
#[derive(Debug, Clone, Args)]
pub struct CaInitArgs {
    /// Directory for the new CA's `ca.key` and `ca.pem` (created if missing).
    #[arg(long, env = CA_DIR_ENV, default_value = DEFAULT_CA_DIR)]
    pub dir: PathBuf,
}

/// Arguments of `mcdnnctl ca issuing`.
#[derive(Debug, Clone, Args)]
pub struct CaIssuingArgs {
    /// Directory of the root fleet CA (kept offline apart from this).
    #[arg(long, env = CA_DIR_ENV, default_value = DEFAULT_CA_DIR)]
    pub dir: PathBuf,
    /// Where to write `issuing.key`, `issuing.pem` (and `ca.pem`): a coordinator's identity
    /// folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Signs an issuing CA for the coordinators with the root CA.
pub fn ca_issuing(args: &CaIssuingArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = Ca::load(&args.dir)
        .with_context(|| format!("loading the root fleet CA from {}", args.dir.display()))?;
    let cert = IssuingCa::create(&root, &args.out)
        .with_context(|| format!("creating an issuing CA in {}", args.out.display()))?;
    writeln!(
        out,
        "created issuing CA {cert} (key mode 0600): copy {dir} to every coordinator replica's identity folder; they sign node certificates with it (token enrollment, renewal)",
        cert = cert.display(),
        dir = args.out.display(),
    )?;
    Ok(())
}

/// What a certificate is for (the `<kind>` in `<name>.<kind>.mcdnn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A device or server node agent.
    Node,
    /// A coordinator replica (also valid for localhost and 127.0.0.1).
    Coordinator,
    /// A person or tool using the admin API.
    Operator,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Node => Kind::Node,
            KindArg::Coordinator => Kind::Coordinator,
            KindArg::Operator => Kind::Operator,
        }
    }
}

/// Arguments of `mcdnnctl enroll`.
#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// What the certificate is for.
    pub kind: KindArg,
    /// Name of the node/coordinator/operator: 1-63 of a-z, 0-9 and '-'.
    pub name: String,
    /// Directory of the fleet CA (from `mcdnnctl ca init`).
    #[arg(long, env = CA_DIR_ENV, default_value = DEFAULT_CA_DIR)]
    pub dir: PathBuf,
    /// Where to write `<name>.key`, `<name>.pem` and a copy of `ca.pem`.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Extra DNS name or IP address the certificate is valid for, e.g. a Kubernetes pod's
    /// hostname (repeatable).
    #[arg(long = "san", value_name = "HOST")]
    pub sans: Vec<String>,
    /// Days the certificate stays valid.
    #[arg(long, default_value_t = DEFAULT_DAYS)]
    pub days: u32,
    /// For an operator: what the certificate may do on the operator API (read-only by default;
    /// `admin` may also write policies, change members, revoke and approve nodes).
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Option<OperatorRole>,
}

fn parse_role(s: &str) -> Result<OperatorRole, String> {
    s.parse()
        .map_err(|e: net::identity::IdentityError| e.to_string())
}

/// Creates a fleet CA and reports where it is.
pub fn ca_init(args: &CaInitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = &args.dir;
    Ca::init(dir).with_context(|| format!("creating a fleet CA in {}", dir.display()))?;
    writeln!(
        out,
        "created fleet CA in {dir}:\n  {key}  private key (mode 0600): keep it secret, ideally \
         offline\n  {pem}  certificate: every node and coordinator trusts it\nnext: mcdnnctl \
         enroll coordinator <name> --dir {dir}",
        dir = dir.display(),
        key = dir.join(CA_KEY_FILE).display(),
        pem = dir.join(CA_CERT_FILE).display(),
    )?;
    Ok(())
}

/// Issues a certificate signed by the fleet CA and reports what was written.
pub fn enroll(args: &EnrollArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ca = Ca::load(&args.dir).with_context(|| {
        format!(
            "loading the fleet CA from {} (create one with `mcdnnctl ca init`, or point --dir / \
             {CA_DIR_ENV} at it)",
            args.dir.display()
        )
    })?;
    let kind = Kind::from(args.kind);
    let done = match (kind, args.role) {
        (Kind::Operator, role) => {
            anyhow::ensure!(
                args.sans.is_empty(),
                "operator certificates carry no extra SANs (they are clients only)"
            );
            ca.enroll_operator(
                &args.name,
                &args.out,
                role.unwrap_or(OperatorRole::ReadOnly),
                args.days,
            )
        }
        (_, Some(_)) => anyhow::bail!("--role is for operator certificates only"),
        (_, None) => ca.enroll(kind, &args.name, &args.out, &args.sans, args.days),
    }
    .with_context(|| format!("enrolling {kind} {:?}", args.name))?;
    writeln!(
        out,
        "enrolled {peer} as {id}, valid for {days} days\n  SANs: {sans}\n  {key}  private key \
         (mode 0600)\n  {cert}  certificate\n  {ca}  fleet CA",
        peer = done.peer,
        id = done.peer.dns_name(),
        days = args.days,
        sans = done.sans.join(", "),
        key = done.key_path.display(),
        cert = done.cert_path.display(),
        ca = done.ca_path.display(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::identity::Identity;

    #[test]
    fn init_then_enroll_then_load() -> anyhow::Result<()> {
        let tmp = std::env::temp_dir().join(format!("mcdnnctl-test-{}", std::process::id()));
        // A leftover from a crashed run with the same pid would make `ca init` refuse.
        let _ = std::fs::remove_dir_all(&tmp);
        let ca_dir = tmp.join("ca");
        let mut log = Vec::new();
        ca_init(
            &CaInitArgs {
                dir: ca_dir.clone(),
            },
            &mut log,
        )?;
        let err = ca_init(
            &CaInitArgs {
                dir: ca_dir.clone(),
            },
            &mut log,
        )
        .expect_err("second init must fail");
        assert!(
            format!("{err:#}").contains("refusing to overwrite"),
            "{err:#}"
        );
        let args = EnrollArgs {
            kind: KindArg::Node,
            name: "cam-1".to_owned(),
            dir: ca_dir,
            out: tmp.join("cam-1"),
            sans: vec![],
            days: 30,
            role: None,
        };
        enroll(&args, &mut log)?;
        let id = Identity::load(&args.out, "cam-1")?;
        assert_eq!(id.peer().dns_name(), "cam-1.node.mcdnn");
        let text = String::from_utf8(log)?;
        assert!(text.contains("cam-1.node.mcdnn"), "{text}");
        std::fs::remove_dir_all(&tmp)?;
        Ok(())
    }
}
