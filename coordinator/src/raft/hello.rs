//! Replica-to-replica control messages that travel beside Raft's own: `Hello` (cluster id and
//! what a replica's disk holds, used to refuse foreign peers and to form a brand-new cluster)
//! and `Rejoin` (a replica that came back with an empty disk asks the leader to make it a
//! learner until it has caught up).
//!
//! They ride in a raft `Message` of type `MsgUnreachable`, a type raft-rs only ever creates
//! locally and never sends to a peer, tagged with a magic prefix in `context`; the driver takes
//! them out before anything reaches raft-rs. So the transports (QUIC, in-process) need no
//! change, and the certificate check on `from` covers them as it covers Raft traffic.

use raft::prelude::{Message, MessageType};

use super::cluster_id::ClusterId;

const MAGIC: &[u8; 6] = b"MCDNNc";
const VERSION: u8 = 1;
const KIND_HELLO: u8 = 1;
const KIND_REJOIN: u8 = 2;
/// magic, version, kind, cluster id, genesis digest, disk, wants-reply.
const LEN: usize = 6 + 1 + 1 + 8 + 8 + 1 + 1;

/// What a replica's disk holds, as far as forming or rejoining a cluster is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    /// Nothing: never initialised (or wiped), and not yet decided what to do.
    Empty,
    /// Only the initial snapshot: no entry was ever appended, so nothing was ever committed
    /// or voted on beyond it.
    Genesis,
    /// A log beyond genesis: the cluster has formed.
    Data,
    /// Came back with an empty disk into a cluster that had formed; catching up as a learner.
    Rejoining,
}

impl Disk {
    fn code(self) -> u8 {
        match self {
            Disk::Empty => 0,
            Disk::Genesis => 1,
            Disk::Data => 2,
            Disk::Rejoining => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Disk::Empty,
            1 => Disk::Genesis,
            2 => Disk::Data,
            3 => Disk::Rejoining,
            _ => return None,
        })
    }
}

/// One replica's introduction of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub cluster: ClusterId,
    /// [`super::cluster_id::genesis_digest`] of the genesis this replica has or would write.
    pub genesis: u64,
    pub disk: Disk,
    /// Answer with our own `Hello` (false in answers, so two replicas never ping-pong).
    pub wants_reply: bool,
}

/// A control message between replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Hello(Hello),
    /// Sender lost its disk; the leader should take it through learner and back to voter.
    Rejoin {
        cluster: ClusterId,
    },
}

/// Wraps `control` into a raft message from `from` to `to`.
pub fn encode(from: u64, to: u64, control: Control) -> Message {
    let (kind, cluster, genesis, disk, reply) = match control {
        Control::Hello(h) => (
            KIND_HELLO,
            h.cluster,
            h.genesis,
            h.disk.code(),
            h.wants_reply,
        ),
        Control::Rejoin { cluster } => (KIND_REJOIN, cluster, 0, 0, false),
    };
    let mut ctx = Vec::with_capacity(LEN);
    ctx.extend_from_slice(MAGIC);
    ctx.push(VERSION);
    ctx.push(kind);
    ctx.extend_from_slice(&cluster.0.to_be_bytes());
    ctx.extend_from_slice(&genesis.to_be_bytes());
    ctx.push(disk);
    ctx.push(u8::from(reply));
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgUnreachable);
    m.from = from;
    m.to = to;
    m.context = ctx.into();
    m
}

/// Why a message that claims to be a control message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("control message of {0} bytes, expected {LEN}")]
    Length(usize),
    #[error("control message version {0} is not understood (this replica speaks {VERSION})")]
    Version(u8),
    #[error("control message kind {0} is unknown")]
    Kind(u8),
    #[error("disk state code {0} is unknown")]
    Disk(u8),
}

/// `None` when `m` is ordinary Raft traffic; otherwise the control message, or why it is bad.
pub fn decode(m: &Message) -> Option<Result<Control, ControlError>> {
    if m.get_msg_type() != MessageType::MsgUnreachable || !m.context.starts_with(MAGIC) {
        return None;
    }
    Some(parse(&m.context))
}

fn parse(b: &[u8]) -> Result<Control, ControlError> {
    if b.len() != LEN {
        return Err(ControlError::Length(b.len()));
    }
    let u64_at = |at: usize| {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        u64::from_be_bytes(x)
    };
    if b[6] != VERSION {
        return Err(ControlError::Version(b[6]));
    }
    let cluster = ClusterId(u64_at(8));
    match b[7] {
        KIND_HELLO => Ok(Control::Hello(Hello {
            cluster,
            genesis: u64_at(16),
            disk: Disk::from_code(b[24]).ok_or(ControlError::Disk(b[24]))?,
            wants_reply: b[25] != 0,
        })),
        KIND_REJOIN => Ok(Control::Rejoin { cluster }),
        k => Err(ControlError::Kind(k)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips() {
        let hello = Control::Hello(Hello {
            cluster: ClusterId(7),
            genesis: 99,
            disk: Disk::Rejoining,
            wants_reply: true,
        });
        for c in [
            hello,
            Control::Rejoin {
                cluster: ClusterId(7),
            },
        ] {
            let m = encode(1, 2, c);
            assert_eq!((m.from, m.to), (1, 2));
            assert_eq!(decode(&m).unwrap().unwrap(), c);
        }
    }

    #[test]
    fn raft_traffic_is_not_control() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgHeartbeat);
        m.context = b"MCDNNc".to_vec().into();
        assert!(decode(&m).is_none());
        m.set_msg_type(MessageType::MsgUnreachable);
        m.context = b"other".to_vec().into();
        assert!(decode(&m).is_none());
    }

    #[test]
    fn malformed_control_is_an_error() {
        let good = encode(
            1,
            2,
            Control::Rejoin {
                cluster: ClusterId(1),
            },
        );
        let mut short = good.clone();
        short.context = good.context[..10].to_vec().into();
        assert_eq!(decode(&short), Some(Err(ControlError::Length(10))));
        let mut bad = good.context.to_vec();
        bad[7] = 9;
        let mut m = good.clone();
        m.context = bad.clone().into();
        assert_eq!(decode(&m), Some(Err(ControlError::Kind(9))));
        bad[6] = 2;
        m.context = bad.into();
        assert_eq!(decode(&m), Some(Err(ControlError::Version(2))));
        let mut hello = encode(
            1,
            2,
            Control::Hello(Hello {
                cluster: ClusterId(1),
                genesis: 0,
                disk: Disk::Empty,
                wants_reply: false,
            }),
        );
        let mut b = hello.context.to_vec();
        b[24] = 42;
        hello.context = b.into();
        assert_eq!(decode(&hello), Some(Err(ControlError::Disk(42))));
    }
}
