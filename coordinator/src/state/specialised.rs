//! The replicated specialised variants: app -> name -> metadata and head bytes. The head rides in
//! the Raft entry (a few kilobytes), so every replica can serve it as a shard after a failover.
//! An entry is checked again on apply, so a bad or oversized one changes nothing anywhere.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wire::head::Head;

use super::command::SpecialisedVariant;
use super::outcome::ApplyOutcome;

/// Specialised variants live at once per app (older ones must be collected first).
pub const MAX_PER_APP: usize = 4;
/// Apps that may hold specialised variants.
pub const MAX_APPS: usize = 32;
const MAX_NAME: usize = 128;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Specialised(BTreeMap<String, BTreeMap<String, SpecialisedVariant>>);

/// Why `v` cannot be registered, if it cannot.
pub fn check(v: &SpecialisedVariant) -> Result<(), String> {
    if [&v.app, &v.variant, &v.base_variant]
        .iter()
        .any(|s| s.is_empty() || s.len() > MAX_NAME)
    {
        return Err(format!("names must be 1-{MAX_NAME} bytes"));
    }
    let head = Head::decode(&v.head).map_err(|e| e.to_string())?;
    if hex::encode(Sha256::digest(&v.head)) != v.digest {
        return Err("digest does not match the head's bytes".into());
    }
    if head.classes != v.classes {
        return Err("classes differ from the head's".into());
    }
    if !(0.0..=100.0).contains(&v.accuracy) {
        return Err(format!("accuracy {} is not a percentage", v.accuracy));
    }
    Ok(())
}

impl Specialised {
    pub fn all(&self) -> &BTreeMap<String, BTreeMap<String, SpecialisedVariant>> {
        &self.0
    }

    pub fn add(&mut self, v: &SpecialisedVariant) -> ApplyOutcome {
        if let Err(e) = check(v) {
            return ApplyOutcome::Rejected(format!("specialised variant {}: {e}", v.variant));
        }
        if !self.0.contains_key(&v.app) && self.0.len() >= MAX_APPS {
            return ApplyOutcome::Rejected(format!("more than {MAX_APPS} specialised apps"));
        }
        let app = self.0.entry(v.app.clone()).or_default();
        if !app.contains_key(&v.variant) && app.len() >= MAX_PER_APP {
            return ApplyOutcome::Rejected(format!(
                "{} already has {MAX_PER_APP} specialised variants; collect one first",
                v.app
            ));
        }
        app.insert(v.variant.clone(), v.clone());
        ApplyOutcome::Applied
    }

    pub fn remove(&mut self, app: &str, variant: &str) -> ApplyOutcome {
        let removed = self
            .0
            .get_mut(app)
            .and_then(|vs| vs.remove(variant))
            .is_some();
        if self.0.get(app).is_some_and(BTreeMap::is_empty) {
            self.0.remove(app);
        }
        if removed {
            ApplyOutcome::Applied
        } else {
            ApplyOutcome::Rejected(format!("no specialised variant {app}/{variant}"))
        }
    }

    /// The head whose sha256 is `digest`, from any app.
    pub fn head(&self, digest: &str) -> Option<&[u8]> {
        self.0
            .values()
            .flat_map(BTreeMap::values)
            .find(|v| v.digest == digest)
            .map(|v| v.head.as_slice())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A valid variant of `app` named `name`.
    pub fn variant(app: &str, name: &str) -> SpecialisedVariant {
        let head = Head {
            dim: 2,
            classes: vec![1, 3],
            weights: vec![0.5; 6],
            bias: vec![0.0; 3],
        }
        .encode()
        .expect("head");
        SpecialisedVariant {
            app: app.into(),
            variant: name.into(),
            base_variant: "quarter".into(),
            classes: vec![1, 3],
            digest: hex::encode(Sha256::digest(&head)),
            head,
            accuracy: 95.0,
        }
    }

    #[test]
    fn bounded_and_checked() {
        let mut s = Specialised::default();
        for i in 0..MAX_PER_APP {
            assert_eq!(
                s.add(&variant("g", &format!("v{i}"))),
                ApplyOutcome::Applied
            );
        }
        assert!(matches!(
            s.add(&variant("g", "one-more")),
            ApplyOutcome::Rejected(_)
        ));
        assert_eq!(
            s.add(&variant("g", "v0")),
            ApplyOutcome::Applied,
            "replacing is fine"
        );
        let mut bad = variant("c", "x");
        bad.digest = "00".repeat(32);
        assert!(matches!(s.add(&bad), ApplyOutcome::Rejected(_)));
        let mut bad = variant("c", "x");
        bad.classes = vec![1];
        assert!(matches!(s.add(&bad), ApplyOutcome::Rejected(_)));
        let mut bad = variant("c", "x");
        bad.head.truncate(10);
        assert!(matches!(s.add(&bad), ApplyOutcome::Rejected(_)));
        assert!(
            !s.all().contains_key("c"),
            "a refused entry changes nothing"
        );
        let digest = variant("g", "v1").digest;
        assert!(s.head(&digest).is_some());
        assert_eq!(s.remove("g", "v1"), ApplyOutcome::Applied);
        assert!(matches!(s.remove("g", "v1"), ApplyOutcome::Rejected(_)));
    }
}
