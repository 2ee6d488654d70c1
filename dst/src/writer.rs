//! An operator writing policy like the chaos writer: ids counting up, each write retried with
//! the same id (after a redirect, or a silence, to another replica) until it is acknowledged,
//! so a lost acknowledgement makes a retry the state machine must not apply twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::REPLICAS;
use crate::exchange::{ToClient, ToCoord};
use crate::net::{Addr, Envelope, Payload, SimNet};
use crate::rng::SimRng;
use crate::trace::Trace;

/// How long a write waits for its answer before it is sent again elsewhere.
const PATIENCE: Duration = Duration::from_millis(1500);

/// One acknowledged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteAck {
    pub write_id: u64,
    pub index: u64,
    pub attempts: u32,
}

#[derive(Debug, Clone, Default)]
pub struct WriterEvidence {
    pub acked: Vec<WriteAck>,
    /// The writer stopped starting writes and its last one was acknowledged.
    pub done: bool,
}

pub struct WriterActor {
    pub w: usize,
    pub net: SimNet,
    pub trace: Trace,
    pub rng: SimRng,
    pub producing: Arc<AtomicBool>,
    pub evidence: Arc<Mutex<WriterEvidence>>,
}

impl WriterActor {
    pub fn spawn(self) -> JoinHandle<()> {
        let inbox = self.net.inbox(Addr::Writer(self.w));
        tokio::spawn(self.run(inbox))
    }

    async fn run(self, mut inbox: mpsc::UnboundedReceiver<Envelope>) {
        let mut target = self.w % REPLICAS.len();
        let mut write_id = 0;
        while self.producing.load(Ordering::Relaxed) {
            write_id += 1;
            let mut attempts = 0;
            let index = loop {
                attempts += 1;
                let msg = ToCoord::Write {
                    writer: self.w,
                    write_id,
                };
                let (me, to) = (Addr::Writer(self.w), Addr::Replica(REPLICAS[target]));
                self.net.send(me, to, Payload::ToCoord(msg));
                match self.answer(&mut inbox, write_id).await {
                    Some(Ok(index)) => break index,
                    Some(Err(leader)) => {
                        target = leader
                            .and_then(|l| REPLICAS.iter().position(|&r| r == l))
                            .unwrap_or((target + 1) % REPLICAS.len());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    None => target = (target + 1) % REPLICAS.len(),
                }
            };
            self.trace.event(format!(
                "writer {} write {write_id} acked at index {index} after {attempts} attempts",
                self.w
            ));
            self.evidence
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .acked
                .push(WriteAck {
                    write_id,
                    index,
                    attempts,
                });
            tokio::time::sleep(Duration::from_millis(self.rng.between(20, 300))).await;
        }
        self.evidence.lock().unwrap_or_else(|e| e.into_inner()).done = true;
    }

    /// The answer to `write_id`: `Ok(index)`, `Err(leader hint)` for a redirect, `None` after
    /// silence. Answers to earlier writes (late or duplicated) are skipped.
    async fn answer(
        &self,
        inbox: &mut mpsc::UnboundedReceiver<Envelope>,
        write_id: u64,
    ) -> Option<Result<u64, Option<u64>>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let env = tokio::time::timeout_at(deadline, inbox.recv())
                .await
                .ok()??;
            match env.payload {
                Payload::ToClient(ToClient::WriteOk {
                    write_id: id,
                    index,
                }) if id == write_id => {
                    return Some(Ok(index));
                }
                Payload::ToClient(ToClient::WriteRejected {
                    write_id: id,
                    reason,
                }) if id == write_id => {
                    self.trace.violation(format!(
                        "writer {}: write {write_id} refused by the state machine: {reason}",
                        self.w
                    ));
                    return Some(Ok(0));
                }
                Payload::ToClient(ToClient::Redirect { leader }) => return Some(Err(leader)),
                _ => {}
            }
        }
    }
}
