//! Public face of a replica: [`Replica::start`], its configuration and the cloneable
//! [`ReplicaHandle`] through which the rest of the coordinator proposes, reads and manages
//! membership. The Raft work itself happens in [`super::driver`].

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use raft::prelude::{ConfChangeType, Message};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::driver::{Driver, Request};
use super::error::{ProposeError, ReplicaError, StepError};
use super::transport::Transport;
use super::types::{ReplicaConfig, Role, Status};
use super::view::RaftView;
use crate::state::{Command, FleetState};

/// Starts replicas.
pub struct Replica;

impl Replica {
    /// Opens the log in `data_dir`, builds the raft node and spawns its driver task (must be
    /// called inside a tokio runtime).
    ///
    /// `peers` (stable ids, StatefulSet ordinal + 1, including `id`) is the configured replica
    /// set, the same on every start: with an empty disk the replica asks them whether to form a
    /// new cluster (they become its voters) or rejoin the existing one.
    pub fn start(
        id: u64,
        peers: &[u64],
        data_dir: impl AsRef<Path>,
        transport: Arc<dyn Transport>,
        config: ReplicaConfig,
    ) -> Result<ReplicaHandle, ReplicaError> {
        Self::start_with_shutdown(
            id,
            peers,
            data_dir,
            transport,
            config,
            CancellationToken::new(),
        )
    }

    /// Like [`Replica::start`], stopping when `shutdown` (e.g. a child of the daemon's
    /// cancellation tree) is cancelled.
    pub fn start_with_shutdown(
        id: u64,
        peers: &[u64],
        data_dir: impl AsRef<Path>,
        transport: Arc<dyn Transport>,
        config: ReplicaConfig,
        shutdown: CancellationToken,
    ) -> Result<ReplicaHandle, ReplicaError> {
        let (req_tx, req_rx) = mpsc::channel(1024);
        let (msg_tx, msg_rx) = mpsc::channel(config.inbound_queue.max(1));
        let proposal_timeout = config.proposal_timeout;
        let driver = Driver::open(
            id,
            peers,
            data_dir.as_ref(),
            transport,
            config,
            req_rx,
            msg_rx,
            shutdown.clone(),
        )?;
        let state = driver.shared_state();
        let applied = driver.applied_watch();
        let view = driver.view_watch();
        let task = tokio::spawn(driver.run());
        Ok(ReplicaHandle {
            inner: Arc::new(HandleInner {
                id,
                requests: req_tx,
                inbound: msg_tx,
                state,
                applied,
                view,
                shutdown,
                task: Mutex::new(Some(task)),
                proposal_timeout,
            }),
        })
    }
}

struct HandleInner {
    id: u64,
    requests: mpsc::Sender<Request>,
    inbound: mpsc::Sender<Message>,
    state: Arc<RwLock<FleetState>>,
    applied: watch::Receiver<u64>,
    view: watch::Receiver<RaftView>,
    shutdown: CancellationToken,
    task: Mutex<Option<JoinHandle<Result<(), ReplicaError>>>>,
    proposal_timeout: Duration,
}

/// Cloneable handle to a running replica.
#[derive(Clone)]
pub struct ReplicaHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for ReplicaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaHandle")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl ReplicaHandle {
    /// This replica's id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Hands an inbound raft message to the replica without waiting. A full queue drops it
    /// (raft retransmits).
    pub fn step(&self, msg: Message) -> Result<(), StepError> {
        self.inner.inbound.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StepError::Busy,
            mpsc::error::TrySendError::Closed(_) => StepError::Stopped,
        })
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .requests
            .send(make(tx))
            .await
            .map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)
    }

    /// Waits for an answer bounded by the proposal timeout.
    async fn request_timed(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<u64, ProposeError>>) -> Request,
    ) -> Result<u64, ProposeError> {
        let timeout = self.inner.proposal_timeout;
        match tokio::time::timeout(timeout, self.request(make)).await {
            Ok(r) => r?,
            Err(_) => Err(ProposeError::Timeout(timeout)),
        }
    }

    /// Proposes `cmd`; resolves with the index it was applied at once it is committed and
    /// applied on this replica. Fails with [`ProposeError::NotLeader`] on a follower or if
    /// leadership is lost before then (the outcome is then unknown: the entry may still
    /// commit, so retries must be idempotent), and with [`ProposeError::Rejected`] if the
    /// state machine refused the committed command.
    pub async fn propose(&self, cmd: Command) -> Result<u64, ProposeError> {
        self.request_timed(|reply| Request::Propose { cmd, reply })
            .await
    }

    /// Adds `id` as a voter; resolves once the change is applied here. The new replica starts
    /// with an empty disk and is brought up to date with a snapshot.
    pub async fn add_member(&self, id: u64) -> Result<u64, ProposeError> {
        self.request_timed(|reply| Request::ConfChange {
            change: ConfChangeType::AddNode,
            node: id,
            force: false,
            reply,
        })
        .await
    }

    /// Removes member `id`; resolves once the change is applied here. Refused (with
    /// [`ProposeError::MembershipRefused`]) when `id` is not a member or the remaining voters
    /// could not commit; shrinking below three voters needs [`Self::remove_member_forced`].
    pub async fn remove_member(&self, id: u64) -> Result<u64, ProposeError> {
        self.remove_member_forced(id, false).await
    }

    /// [`Self::remove_member`], allowing the group to shrink below three voters when `force`.
    pub async fn remove_member_forced(&self, id: u64, force: bool) -> Result<u64, ProposeError> {
        self.request_timed(|reply| Request::ConfChange {
            change: ConfChangeType::RemoveNode,
            node: id,
            force,
            reply,
        })
        .await
    }

    /// Asks the leader (this replica) to hand leadership to `to`. Returns once the transfer
    /// has started; watch [`ReplicaHandle::status`] for the outcome.
    pub async fn transfer_leader(&self, to: u64) -> Result<(), ProposeError> {
        self.request(|reply| Request::TransferLeader { to, reply })
            .await?
    }

    /// If this replica leads, hands leadership to the most up-to-date other voter and waits
    /// (up to `timeout`) until it no longer leads; used before a leader exits (SIGTERM).
    /// Returns the chosen transferee, or `None` if this replica was not the leader.
    pub async fn step_down(&self, timeout: Duration) -> Result<Option<u64>, ProposeError> {
        let st = self.status().await?;
        if st.role != Role::Leader {
            return Ok(None);
        }
        let Some(to) = st
            .progress
            .iter()
            .filter(|(id, _)| **id != st.id && st.voters.contains(id))
            .max_by_key(|(id, p)| (p.matched, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
        else {
            // A single-member group has nobody to hand over to.
            return Ok(None);
        };
        self.transfer_leader(to).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.status().await?.role != Role::Leader {
                return Ok(Some(to));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProposeError::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts an election on this replica.
    pub async fn campaign(&self) -> Result<(), ProposeError> {
        self.request(|reply| Request::Campaign { reply }).await?
    }

    /// Current raft status.
    pub async fn status(&self) -> Result<Status, ProposeError> {
        self.request(|reply| Request::Status { reply }).await
    }

    /// A copy of the applied fleet state.
    pub fn state(&self) -> FleetState {
        self.with_state(FleetState::clone)
    }

    /// Reads the applied fleet state without copying it.
    pub fn with_state<R>(&self, f: impl FnOnce(&FleetState) -> R) -> R {
        // The driver never panics while holding the lock mid-update of a consistent state
        // (apply is infallible once decoded), so a poisoned lock still holds a valid state.
        let guard = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        f(&guard)
    }

    /// Leader, role, term, commit and applied, updated by the driver whenever Raft changes
    /// them (the channel closes when the driver stops).
    pub fn raft_view(&self) -> watch::Receiver<RaftView> {
        self.inner.view.clone()
    }

    /// Index of the last entry applied here.
    pub fn applied_index(&self) -> u64 {
        *self.inner.applied.borrow()
    }

    /// Waits until entries up to `index` are applied here (e.g. before reading state on a
    /// follower after a write acknowledged elsewhere).
    pub async fn wait_applied(&self, index: u64) -> Result<(), ProposeError> {
        let mut rx = self.inner.applied.clone();
        rx.wait_for(|&a| a >= index)
            .await
            .map(|_| ())
            .map_err(|_| ProposeError::Stopped)
    }

    /// Whether the driver task is still running.
    pub fn is_running(&self) -> bool {
        self.inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stops the replica and waits for its task to end (the sled database is closed when it
    /// returns, so the same directory can be reopened). Returns the error that stopped the
    /// replica, if it had stopped on its own.
    pub async fn shutdown(&self) -> Result<(), ReplicaError> {
        self.inner.shutdown.cancel();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match task {
            Some(t) => t.await.map_err(|e| ReplicaError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}
