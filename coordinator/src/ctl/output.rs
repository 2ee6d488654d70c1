//! `-o table|json|yaml` for every `mcdnnctl` read: one flag, one function that prints a value in
//! the chosen format, so every command follows the same convention (as kubectl and etcdctl do).

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

/// How a read prints what it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
    /// YAML for scripts and config diffs.
    Yaml,
}

/// Prints `value` as JSON or YAML, or calls `table` to print it for people.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    out: &mut dyn Write,
    table: impl FnOnce(&T, &mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(value)?)?,
        Format::Yaml => write!(out, "{}", serde_yaml_ng::to_string(value)?)?,
        Format::Table => table(value, out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_prints_the_same_value() -> anyhow::Result<()> {
        let v = serde_json::json!({"name": "cam-1", "battery": 42});
        let run = |f| -> anyhow::Result<String> {
            let mut out = Vec::new();
            emit(f, &v, &mut out, |v, o| {
                writeln!(o, "NAME {}", v["name"].as_str().unwrap_or("-"))?;
                Ok(())
            })?;
            Ok(String::from_utf8(out)?)
        };
        assert_eq!(run(Format::Table)?, "NAME cam-1\n");
        assert!(run(Format::Json)?.contains("\"battery\": 42"));
        assert!(run(Format::Yaml)?.contains("name: cam-1"));
        Ok(())
    }
}
