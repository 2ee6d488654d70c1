//! Following the coordinator's assignment: the serving thread picks up a new assignment, or a
//! change in which variants are present, between frames and turns them into the policy's
//! constraints.

use std::collections::BTreeSet;

use scheduler::state::Constraints;
use wire::manifest::Manifest;
use wire::msg::{Assignment, SpecialisedRun};

use crate::agent::constraints;
use crate::face_variant::is_face_app;
use crate::handles::{AssignmentCell, ModelAvailability};

/// What the serving thread currently follows.
#[derive(Debug, Default)]
pub struct Follower {
    assignment: Option<Assignment>,
    /// `None`: models come from a local folder and every variant is present.
    present: Option<BTreeSet<String>>,
    seen_generation: u64,
    /// Assignments taken into use, and the newest one's epoch.
    pub applied: u64,
    pub last_epoch: u64,
}

impl Follower {
    /// Starts on whatever is held when serving begins (a persisted assignment the node resumed
    /// on is followed but not counted as applied in this run).
    pub fn start(cell: &AssignmentCell, models: &ModelAvailability) -> Self {
        let mut follower = Self {
            assignment: cell.take_fresh(),
            ..Self::default()
        };
        if let Some(present) = models.changed_since(&mut follower.seen_generation) {
            follower.present = present;
        }
        follower
    }

    /// Takes what the link and the fetcher published since; `true` when the constraints must
    /// be rebuilt.
    pub fn refresh(&mut self, cell: &AssignmentCell, models: &ModelAvailability) -> bool {
        let fresh = cell.take_fresh();
        if let Some(a) = &fresh {
            self.applied += 1;
            self.last_epoch = a.epoch;
        }
        let present = models.changed_since(&mut self.seen_generation);
        let changed = fresh.is_some() || present.is_some();
        if let Some(a) = fresh {
            self.assignment = Some(a);
        }
        if let Some(p) = present {
            self.present = p;
        }
        changed
    }

    pub fn present(&self) -> Option<&BTreeSet<String>> {
        self.present.as_ref()
    }

    /// The specialised head the assignment gives `app`, if any.
    pub fn specialised(&self, app: &str) -> Option<&SpecialisedRun> {
        self.assignment
            .as_ref()?
            .apps
            .iter()
            .find(|a| a.app == app)?
            .specialised
            .as_ref()
    }

    /// The policy's constraints: the assignment's when the policy `follows_plan` (standalone
    /// ones otherwise, or before any assignment), offloading allowed when the operator fixed a
    /// server, narrowed to the variants present.
    pub fn constraints(
        &self,
        manifest: &Manifest,
        apps: &[String],
        can_offload: bool,
        fixed_target: bool,
        follows_plan: bool,
    ) -> Constraints {
        let mut c = match self.assignment.as_ref().filter(|_| follows_plan) {
            Some(a) => {
                tracing::info!(epoch = a.epoch, "following assignment");
                constraints::from_assignment(a, can_offload)
            }
            None => constraints::standalone(can_offload),
        };
        if fixed_target {
            c.offload_forbidden = false;
        }
        // Face requests stay on the device: offloading sends the catalog's gray input.
        c.device_only = apps
            .iter()
            .filter(|a| is_face_app(manifest, a))
            .cloned()
            .collect();
        if let Some(present) = &self.present {
            // Each app falls back only to variants that serve it (a fleet catalog holds gray
            // and face variants side by side).
            for app in apps {
                let names: Vec<String> =
                    manifest.variants_for(app).map(|v| v.name.clone()).collect();
                constraints::restrict_to_available(
                    &mut c,
                    std::slice::from_ref(app),
                    &names,
                    present,
                );
            }
        }
        c
    }
}
