//! The fleet's status and metrics as a test reads them, and waiting until they show something.

use std::time::{Duration, Instant};

use anyhow::bail;
use mcdnn_coordinator::ctl::{demo, http};
use mcdnn_coordinator::fleet::status::{FleetStatus, NodeStatus};

use crate::Fleet;

impl Fleet {
    pub fn status(&self) -> anyhow::Result<FleetStatus> {
        demo::fetch_status(&self.ops, &self.admin())
    }

    pub fn metrics(&self) -> anyhow::Result<String> {
        http::health_get(&self.health(), "/metrics", Duration::from_secs(2))
    }

    /// Polls `/status` until `pred` holds.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&FleetStatus) -> bool,
    ) -> anyhow::Result<FleetStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = self.status()
                && pred(&s)
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last status {:?}",
                    self.status().ok()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`Fleet::wait_for`] node `id` to be listed and to satisfy `pred`.
    pub fn wait_for_node(
        &self,
        what: &str,
        timeout: Duration,
        id: &str,
        pred: impl Fn(&NodeStatus) -> bool,
    ) -> anyhow::Result<FleetStatus> {
        self.wait_for(what, timeout, |s| {
            s.nodes.iter().any(|n| n.id == id && pred(n))
        })
    }
}
