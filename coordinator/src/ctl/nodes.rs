//! `mcdnnctl node token NAME [--ttl 1h]` and `mcdnnctl node revoke NAME`: an admin operator
//! lets a device enroll once, or cuts a lost one off for good.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::cluster::{Target, post_as};
use crate::enrollment::{TokenIssued, TokenRequest};

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Make a one-time enrollment token for NAME (printed once; only its hash is stored).
    /// The device then runs `mcdnn-node enroll --name NAME --token TOKEN --admin HOST:PORT`.
    Token {
        name: String,
        /// How long the token works: a number with s, m, h or d (e.g. 30m, 1h, 7d).
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke NAME: refused at every handshake on every replica, its live session closed,
    /// offload servers told; it can never renew or enroll again.
    Revoke {
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `90`, `90s`, `30m`, `1h`, `7d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        other => return Err(format!("unknown unit {other:?}; use s, m, h or d")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30m or 1h"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

pub fn node(cmd: &NodeCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Token { name, ttl, target } => {
            let req = TokenRequest {
                name: name.clone(),
                ttl_s: Some(ttl.as_secs_f64()),
            };
            let issued: TokenIssued = post_as(target, "/v1/tokens", &serde_json::to_string(&req)?)
                .with_context(|| format!("making an enrollment token for {name}"))?;
            if target.json {
                writeln!(out, "{}", serde_json::to_string(&issued)?)?;
            } else {
                writeln!(
                    out,
                    "{token}\n(one-time enrollment token for {name}, valid for {ttl:?}; it is \
                     not shown again)",
                    token = issued.token,
                )?;
            }
        }
        NodeCommand::Revoke { name, target } => {
            let path = format!("/v1/nodes/{name}/revoke");
            let answer: serde_json::Value = post_as(target, &path, "{}")?;
            if answer["revoked"] != *name {
                bail!("unexpected answer: {answer}");
            }
            writeln!(out, "revoked {name} (index {})", answer["index"])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_parse_with_units_and_refuse_nonsense() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1y", "-1h", "1e400s"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
