//! Trace and connectivity files.
//!
//! Trace CSV: header `time_s,app,class` (class may be empty) with an optional `node` column.
//! Connectivity CSV: header `time_s,connected` (`connected` is 1/0 or true/false); the state
//! holds from its time until the next row; before the first row the device is connected.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub time_s: f64,
    pub app: String,
    pub class: Option<String>,
    pub node: Option<String>,
}

/// Connectivity over time: sorted (time, connected) changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connectivity {
    pub changes: Vec<(f64, bool)>,
}

impl Connectivity {
    /// Whether the device is connected at `t`.
    pub fn at(&self, t: f64) -> bool {
        let i = self.changes.partition_point(|&(ct, _)| ct <= t);
        if i == 0 { true } else { self.changes[i - 1].1 }
    }

    /// Share of [0, horizon) connected.
    pub fn fraction(&self, horizon_s: f64) -> f64 {
        if horizon_s <= 0.0 {
            return 1.0;
        }
        let mut up = 0.0;
        let mut t = 0.0;
        let mut state = true;
        for &(ct, c) in &self.changes {
            let ct = ct.clamp(0.0, horizon_s);
            if state {
                up += ct - t;
            }
            t = ct;
            state = c;
        }
        if state {
            up += horizon_s - t;
        }
        up / horizon_s
    }
}

fn column(headers: &csv::StringRecord, name: &str) -> Option<usize> {
    headers.iter().position(|h| h.trim() == name)
}

/// Reads a trace CSV; rows are sorted by time (stable, so same-time rows keep file order).
pub fn read_trace(path: &Path) -> Result<Vec<Request>> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening trace {}", path.display()))?;
    let headers = rdr.headers().context("reading the trace header")?.clone();
    let (Some(ti), Some(ai)) = (column(&headers, "time_s"), column(&headers, "app")) else {
        bail!(
            "trace {} needs a header with time_s and app columns",
            path.display()
        );
    };
    let ci = column(&headers, "class");
    let ni = column(&headers, "node");
    let mut out = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("trace line {}", line + 2))?;
        let field = |i: Option<usize>| {
            i.and_then(|i| rec.get(i))
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let time_s: f64 = field(Some(ti))
            .with_context(|| format!("trace line {}: missing time_s", line + 2))?
            .parse()
            .with_context(|| format!("trace line {}: time_s is not a number", line + 2))?;
        if !time_s.is_finite() || time_s < 0.0 {
            bail!(
                "trace line {}: time_s must be a non-negative number",
                line + 2
            );
        }
        let app =
            field(Some(ai)).with_context(|| format!("trace line {}: missing app", line + 2))?;
        out.push(Request {
            time_s,
            app,
            class: field(ci),
            node: field(ni),
        });
    }
    if out.is_empty() {
        // An empty trace would make every figure computed on it hold vacuously.
        bail!("trace {} has no requests", path.display());
    }
    out.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
    Ok(out)
}

/// Reads a connectivity CSV.
pub fn read_connectivity(path: &Path) -> Result<Connectivity> {
    let mut rdr = csv::Reader::from_path(path)
        .with_context(|| format!("opening connectivity {}", path.display()))?;
    let headers = rdr
        .headers()
        .context("reading the connectivity header")?
        .clone();
    let (Some(ti), Some(ci)) = (column(&headers, "time_s"), column(&headers, "connected")) else {
        bail!(
            "connectivity {} needs time_s and connected columns",
            path.display()
        );
    };
    let mut changes = Vec::new();
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.with_context(|| format!("connectivity line {}", line + 2))?;
        let t: f64 = rec
            .get(ti)
            .map(str::trim)
            .unwrap_or("")
            .parse()
            .with_context(|| format!("connectivity line {}: time_s is not a number", line + 2))?;
        let c = match rec
            .get(ci)
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("1" | "true" | "yes") => true,
            Some("0" | "false" | "no") => false,
            other => bail!(
                "connectivity line {}: connected is {other:?}, want 1/0",
                line + 2
            ),
        };
        if !t.is_finite() {
            bail!("connectivity line {}: time_s must be finite", line + 2);
        }
        changes.push((t, c));
    }
    changes.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(Connectivity { changes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("mcdnn-sim-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(name);
        let mut f = std::fs::File::create(&path).expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        path
    }

    #[test]
    fn reads_trace_with_optional_columns() -> Result<()> {
        let p = write(
            "t.csv",
            "time_s,app,class,node\n2.0,deepface,,n1\n1.5,object_alexnet,cat,n2\n",
        );
        let t = read_trace(&p)?;
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].app, "object_alexnet");
        assert_eq!(t[1].class, None);
        assert_eq!(t[1].node.as_deref(), Some("n1"));
        Ok(())
    }

    #[test]
    fn bad_rows_are_errors_not_panics() {
        let p = write("bad.csv", "time_s,app\nabc,deepface\n");
        assert!(read_trace(&p).is_err());
        let p = write("bad2.csv", "foo,bar\n1,2\n");
        assert!(read_trace(&p).is_err());
        let p = write("empty.csv", "time_s,app\n");
        assert!(read_trace(&p).is_err());
        let p = write("c.csv", "time_s,connected\n1,maybe\n");
        assert!(read_connectivity(&p).is_err());
    }

    #[test]
    fn connectivity_lookup() -> Result<()> {
        let p = write("c2.csv", "time_s,connected\n10,0\n20,1\n");
        let c = read_connectivity(&p)?;
        assert!(c.at(5.0));
        assert!(!c.at(15.0));
        assert!(c.at(25.0));
        assert!((c.fraction(40.0) - 0.75).abs() < 1e-9);
        Ok(())
    }
}
