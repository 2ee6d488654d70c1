//! A fleet catalog: one file naming several catalogs (`models/fleet.json` =
//! `{"source": ..., "include": ["catalog.json", "face/catalog.json"]}`) so the scheduler plans
//! every app of all of them together, and coordinator and nodes hold one manifest.
//!
//! Merging keeps each catalog's meaning: its apps get their catalog's input kind, its file paths
//! are rewritten relative to the fleet file's folder, and the device classes, which describe the
//! same hardware in every catalog, must agree.

use std::path::{Component, Path};

use serde::Deserialize;

use super::{InputKind, Manifest, ManifestError};

/// Most catalogs one fleet file may name.
const MAX_INCLUDES: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Includes {
    source: String,
    include: Vec<String>,
}

/// `Some` when `text` is a fleet catalog (an object with `include`), `None` for a plain one.
pub(super) fn parse(text: &str) -> Result<Option<Includes>, ManifestError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?;
    if value.get("include").is_none() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| ManifestError::Parse(format!("fleet catalog: {e}")))
}

/// Reads each included catalog with `read` (paths under `dir`) and merges them in order.
pub(super) fn merge(
    dir: &Path,
    includes: &Includes,
    mut read: impl FnMut(&Path) -> Result<Manifest, ManifestError>,
) -> Result<Manifest, ManifestError> {
    if includes.include.is_empty() || includes.include.len() > MAX_INCLUDES {
        return Err(ManifestError::Invalid(format!(
            "a fleet catalog includes 1 to {MAX_INCLUDES} catalogs, not {}",
            includes.include.len()
        )));
    }
    let mut merged: Option<Manifest> = None;
    for name in &includes.include {
        let rel = Path::new(name);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(ManifestError::Invalid(format!(
                "included catalog {name}: give a path below the fleet catalog's folder"
            )));
        }
        let part = read(&dir.join(rel))
            .map_err(|e| ManifestError::Invalid(format!("included catalog {name}: {e}")))?;
        let part = relocated(part, rel.parent().unwrap_or(Path::new("")));
        merged = Some(match merged {
            None => part,
            Some(m) => joined(m, part, name)?,
        });
    }
    let mut merged = merged.ok_or_else(|| ManifestError::Invalid("no catalog included".into()))?;
    merged.source = includes.source.clone();
    merged.validate()?;
    Ok(merged)
}

/// `part` with its apps' input kinds explicit and its files named from the fleet file's folder.
fn relocated(mut part: Manifest, folder: &Path) -> Manifest {
    let kind: InputKind = part.input.kind;
    for app in &mut part.apps {
        app.kind.get_or_insert(kind);
    }
    let prefix = |file: &mut String| {
        *file = folder.join(&*file).to_string_lossy().into_owned();
    };
    for v in &mut part.variants {
        prefix(&mut v.trunk.file);
        v.heads.iter_mut().for_each(|h| prefix(&mut h.file.file));
    }
    if let Some(d) = &mut part.detector {
        prefix(&mut d.file.file);
    }
    part
}

fn joined(mut into: Manifest, part: Manifest, name: &str) -> Result<Manifest, ManifestError> {
    let clash = |what: &str, which: &str| {
        ManifestError::Invalid(format!(
            "included catalog {name}: {what} {which} is already in an earlier catalog"
        ))
    };
    if let Some(a) = part.apps.iter().find(|a| into.app(&a.name).is_some()) {
        return Err(clash("app", &a.name));
    }
    if let Some(v) = part
        .variants
        .iter()
        .find(|v| into.variant(&v.name).is_some())
    {
        return Err(clash("variant", &v.name));
    }
    match (&into.detector, part.detector) {
        (Some(_), Some(_)) => return Err(clash("a detector", "(one per fleet)")),
        (None, detector) => into.detector = detector,
        (Some(_), None) => {}
    }
    for dc in part.device_classes {
        match into.device_class(&dc.name) {
            Some(known) if *known != dc => {
                return Err(ManifestError::Invalid(format!(
                    "included catalog {name}: device class {} differs from an earlier catalog's",
                    dc.name
                )));
            }
            Some(_) => {}
            None => into.device_classes.push(dc),
        }
    }
    into.apps.extend(part.apps);
    into.variants.extend(part.variants);
    Ok(into)
}
