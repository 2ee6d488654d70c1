//! What the HTTP handlers share (axum's router state): the few handles they use, not the
//! whole replica.

use std::sync::Arc;

use crate::cluster::leader::LeaderWatch;
use crate::enrollment::Enrollment;
use crate::fleet::Replan;
use crate::fleet::metrics::Metrics;
use crate::fleet::prom::Histograms;
use crate::fleet::status::StatusSources;
use crate::raft::ReplicaHandle;
use crate::supervisor::Health;

pub struct AdminState {
    pub raft: ReplicaHandle,
    pub leader: LeaderWatch,
    pub metrics: Arc<Metrics>,
    pub histograms: Arc<Histograms>,
    /// Whether every worker of this replica still runs (`/readyz` fails at once when not).
    pub health: Health,
    /// Wakes the solve loop after a write that changes what it plans with.
    pub replan: Replan,
    pub enrollment: Enrollment,
    pub status: StatusSources,
    /// The face models that turn watchlist photos into descriptors (`--face-models`).
    pub faces: Option<Arc<crate::faces::FaceService>>,
}
