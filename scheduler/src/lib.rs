//! Approximate Model Scheduling (AMS) for MCDNN: per request, choose a model variant and a place
//! so that accuracy is highest while energy, cloud cost and memory budgets hold.
//!
//! Pure: no I/O, no clock. Time, telemetry and randomness come in as arguments, so the
//! simulator, the coordinator and the node run the same code.
//!
//! - [`catalog`]: apps, variants, profiles, trunks ([`catalog::Catalog::paper`],
//!   [`catalog::Catalog::from_manifest`]).
//! - [`policy`]: online policies (`paper`, `mcdnn`, baselines) behind one trait.
//! - [`bound`]: an upper bound on mean accuracy for a trace.
//! - [`fleet`]: the fleet-wide plan with coupling constraints and a certified gap.
//! - [`load`]: measured paging costs, smoothed, fed back into a catalog's load profile.
//! - [`lp`]: the price-decomposed fractional optimum all three planners share.

pub mod bound;
pub mod catalog;
pub mod fleet;
pub mod load;
pub mod lp;
mod manifest_catalog;
pub mod options;
mod paper_catalog;
pub mod policy;
pub mod specialise;
pub mod state;

pub use catalog::{Catalog, CatalogError, Place, VariantKey};
pub use state::{Budgets, Constraints, DeviceState};
