//! The coordinator as a replica set: peers from configuration, Raft over QUIC, and the leader
//! view that gates solving, plan pushes and node sessions.

pub mod leader;
pub mod peers;
pub mod transport;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wire::manifest::Manifest;

use crate::fleet::hub::{Hub, HubConfig};
use crate::fleet::plan::FleetPolicy;
use crate::raft::{InProcessNetwork, Replica, ReplicaConfig};

/// Hex sha256 of a manifest's JSON (a stand-in for the file's digest when only the parsed
/// manifest is at hand).
fn manifest_digest(manifest: &Manifest) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(
        serde_json::to_vec(manifest).unwrap_or_default(),
    ))
}

/// A one-replica coordinator hub (its own Raft group, bootstrapped in `data_dir`) that leads
/// once this returns: for benchmarks and in-process tests.
pub async fn standalone_hub(
    name: &str,
    manifest: Manifest,
    data_dir: &Path,
    node_addr: String,
    cancel: CancellationToken,
) -> anyhow::Result<Arc<Hub>> {
    let id = peers::id_of(name)?;
    let raft = Replica::start_with_shutdown(
        id,
        &[id],
        data_dir,
        InProcessNetwork::new().transport(id),
        ReplicaConfig {
            tick_interval: Duration::from_millis(20),
            ..ReplicaConfig::default()
        },
        cancel.child_token(),
    )?;
    let peers = peers::Peers::parse(
        &format!("{name}=127.0.0.1"),
        "127.0.0.1:1",
        "127.0.0.1:2",
        "127.0.0.1:3",
    )?;
    // What its virtual nodes announce: the digest of the manifest it runs.
    let catalog_digest = manifest_digest(&manifest);
    let hub = Arc::new(Hub::new(HubConfig {
        name: name.to_string(),
        manifest,
        catalog_digest,
        policy: FleetPolicy {
            cost_budget_usd: 1.0,
        },
        raft,
        self_id: id,
        peers,
        node_addr,
    }));
    tokio::spawn(leader::watch(hub.clone(), cancel));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !hub.is_leader() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the single replica did not elect itself"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(hub)
}
