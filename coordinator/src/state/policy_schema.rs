//! The policy schema: which keys an operator may write, their types and ranges, and the size
//! bounds of every field of a write. The admin API checks a write with [`validate`] before
//! proposing it (400 with the reason) and the state machine checks it again when the entry
//! applies (a bad entry already in a log is `Rejected` and changes nothing), so both sides use
//! this one function.
//!
//! Only keys the coordinator really reads are listed: a key nobody reads would be a setting
//! that silently does nothing.

use std::ops::RangeInclusive;

use super::command::PolicyValue;

/// Longest policy key, bytes.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest writer name, bytes (operator certificate names are far shorter).
pub const MAX_WRITER_BYTES: usize = 128;
/// Longest text value, bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// The type and allowed values of one key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyKind {
    /// A finite number inside the range (base units: USD, joules, seconds).
    Number(RangeInclusive<f64>),
}

/// One writable key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub key: &'static str,
    pub kind: KeyKind,
    /// What it changes, for error messages and `mcdnnctl policy get`.
    pub help: &'static str,
}

/// The policy key that overrides the configured fleet cloud budget.
pub const COST_BUDGET_KEY: &str = "fleet.cost_budget_usd";

/// Every key operators may write.
pub const SCHEMA: &[KeySpec] = &[KeySpec {
    key: COST_BUDGET_KEY,
    // A million dollars over one shift is far above any real fleet's cloud spend; anything
    // beyond is a typo (the finding: 1e300 was accepted and applied).
    kind: KeyKind::Number(0.0..=1_000_000.0),
    help: "the fleet's cloud budget over the shift, USD (overrides --fleet-cost-budget-usd)",
}];

/// The names of every writable key, comma separated (for "unknown key" errors).
pub fn known_keys() -> String {
    SCHEMA.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
}

/// Checks one write against the schema and the size bounds. `Err` says what is wrong and
/// what would be accepted.
pub fn validate(key: &str, value: &PolicyValue, writer: &str) -> Result<(), String> {
    if writer.is_empty() || writer.len() > MAX_WRITER_BYTES {
        return Err(format!(
            "writer must be 1..={MAX_WRITER_BYTES} bytes, got {}",
            writer.len()
        ));
    }
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key must be 1..={MAX_KEY_BYTES} bytes, got {}",
            key.len()
        ));
    }
    if let PolicyValue::Text(t) = value
        && t.len() > MAX_TEXT_BYTES
    {
        return Err(format!(
            "text value of {} bytes exceeds the {MAX_TEXT_BYTES}-byte limit",
            t.len()
        ));
    }
    let Some(spec) = SCHEMA.iter().find(|s| s.key == key) else {
        return Err(format!(
            "unknown policy key {key:?}; known keys: {}",
            known_keys()
        ));
    };
    match (&spec.kind, value) {
        // Unset returns the key to its configured default.
        (_, PolicyValue::Unset) => Ok(()),
        (KeyKind::Number(range), PolicyValue::Number(v)) => {
            if v.is_finite() && range.contains(v) {
                Ok(())
            } else {
                Err(format!(
                    "{key} must be a finite number in [{}, {}], got {v}",
                    range.start(),
                    range.end()
                ))
            }
        }
        (KeyKind::Number(_), PolicyValue::Text(_)) => {
            Err(format!("{key} takes a number ({}), not text", spec.help))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "fleet.cost_budget_usd";

    #[test]
    fn accepts_known_keys_in_range_and_unset() {
        assert_eq!(validate(KEY, &PolicyValue::Number(0.05), "ops"), Ok(()));
        assert_eq!(validate(KEY, &PolicyValue::Number(0.0), "ops"), Ok(()));
        assert_eq!(validate(KEY, &PolicyValue::Number(1e6), "ops"), Ok(()));
        assert_eq!(validate(KEY, &PolicyValue::Unset, "ops"), Ok(()));
    }

    #[test]
    fn an_unknown_key_names_the_known_ones() {
        let e = validate("fleet.cost_budgt_usd", &PolicyValue::Number(1.0), "ops").unwrap_err();
        assert!(e.contains("unknown policy key"), "{e}");
        assert!(e.contains(KEY), "{e}");
    }

    #[test]
    fn out_of_range_non_finite_and_wrong_type_are_refused() {
        for v in [1e300, -0.01, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = validate(KEY, &PolicyValue::Number(v), "ops").unwrap_err();
            assert!(e.contains("finite number in [0, 1000000]"), "{v}: {e}");
        }
        let e = validate(KEY, &PolicyValue::Text("cheap".into()), "ops").unwrap_err();
        assert!(e.contains("takes a number"), "{e}");
    }

    #[test]
    fn sizes_are_bounded() {
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        assert!(validate(&long, &PolicyValue::Unset, "ops").is_err());
        assert!(validate("", &PolicyValue::Unset, "ops").is_err());
        let writer = "w".repeat(MAX_WRITER_BYTES + 1);
        assert!(validate(KEY, &PolicyValue::Unset, &writer).is_err());
        assert!(validate(KEY, &PolicyValue::Unset, "").is_err());
        let text = PolicyValue::Text("t".repeat(1_900_000));
        let e = validate(KEY, &text, "ops").unwrap_err();
        assert!(e.contains("exceeds the 1024-byte limit"), "{e}");
    }
}
