//! `mcdnnctl node token NAME [--ttl 1h]` and `mcdnnctl node revoke NAME` (`node` is an alias of
//! `nodes`): an admin operator lets a device enroll once, or cuts a lost one off for good.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};

use super::cluster::{Target, post};
use super::output;
use crate::enrollment::{TokenIssued, TokenRequest};

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

/// Makes a token for `name` and prints the secret (once).
pub fn token(name: &str, ttl: Duration, t: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    let req = TokenRequest {
        name: name.to_owned(),
        ttl_s: Some(ttl.as_secs_f64()),
    };
    let answer = post(t, "/v1/tokens", &serde_json::to_string(&req)?)
        .with_context(|| format!("making an enrollment token for {name}"))?;
    let issued: TokenIssued = serde_json::from_str(&answer.body).context("parsing the token")?;
    output::emit(t.output, &issued, out, |issued, out| {
        writeln!(
            out,
            "{}\n(one-time enrollment token for {name}, valid for {ttl:?}; it is not shown again)",
            issued.token
        )?;
        Ok(())
    })
}

/// Revokes `name` through the leader.
pub fn revoke(name: &str, t: &Target, out: &mut dyn Write) -> anyhow::Result<()> {
    let answer = post(t, &format!("/v1/nodes/{name}/revoke"), "{}")?;
    let v: serde_json::Value = serde_json::from_str(&answer.body).context("parsing the answer")?;
    if v["revoked"] != *name {
        bail!("unexpected answer: {v}");
    }
    writeln!(out, "revoked {name} (index {})", v["index"])?;
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
