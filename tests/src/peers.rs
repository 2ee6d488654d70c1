//! Fake peers for attack tests: raw QUIC sessions holding a real fleet certificate (a stolen or
//! rogue device), a fake coordinator and a fake offload server. They speak the real protocol, so
//! what they try is exactly what an attacker with a valid certificate could.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use net::identity::{Ca, Identity, Kind};
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{
    Battery, BatterySource, CoordMsg, Hello, NodeMsg, OffloadReply, OffloadRequest,
    PROTOCOL_VERSION, Role,
};

use crate::Fleet;

/// A QUIC client endpoint on loopback presenting `identity`.
pub fn client(identity: &Identity) -> anyhow::Result<quinn::Endpoint> {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    endpoint.set_default_client_config(net::tls::client_config(identity)?);
    Ok(endpoint)
}

/// Enrolls a node (with `127.0.0.1` as a SAN, so it can also serve on loopback) and loads it.
pub fn node_identity(fleet: &Fleet, name: &str) -> anyhow::Result<Identity> {
    if !fleet.ca.join(format!("{name}.pem")).exists() {
        Ca::load(&fleet.ca)?.enroll(Kind::Node, name, &fleet.ca, &["127.0.0.1".into()], 30)?;
    }
    Ok(Identity::load(&fleet.ca, name)?)
}

/// A plausible hello from `name`: the fleet's catalog digest, a full battery.
pub fn hello(name: &str, class: &str, digest: &str, apps: &[&str]) -> Hello {
    Hello {
        node_id: name.into(),
        device_class: class.into(),
        role: Role::Device,
        protocol_version: PROTOCOL_VERSION,
        catalog_digests: vec![digest.into()],
        offload_addr: None,
        battery: Battery {
            capacity_j: 100.0,
            energy_left_j: 100.0,
            drain_w: 0.0,
            shift_end_unix_ms: 0,
            source: BatterySource::Model,
        },
        apps: apps.iter().map(|a| a.to_string()).collect(),
        watchlist_version: 0,
    }
}

/// An open session: the connection, its control stream and the coordinator's first answer.
pub struct Session {
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub answer: Option<CoordMsg>,
    /// Keeps the client endpoint alive as long as the session.
    pub endpoint: quinn::Endpoint,
}

/// Connects to the coordinator at `addr` as `identity` and says `hello`.
pub async fn say_hello(addr: &str, identity: &Identity, hello: Hello) -> anyhow::Result<Session> {
    let endpoint = client(identity)?;
    let conn = endpoint.connect(addr.parse()?, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    net::framing::write_frame(&mut send, &NodeMsg::Hello(hello)).await?;
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        net::framing::read_frame::<_, CoordMsg>(&mut recv, MAX_FRAME_BYTES),
    )
    .await
    .context("no answer to hello")??;
    Ok(Session {
        conn,
        send,
        recv,
        answer,
        endpoint,
    })
}

/// [`say_hello`], retried while the coordinator answers `Unavailable` (no leader yet, as right
/// after it starts), for up to 20 s.
pub async fn join(addr: &str, identity: &Identity, hello: Hello) -> anyhow::Result<Session> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = say_hello(addr, identity, hello.clone()).await?;
        let unavailable = matches!(
            s.answer,
            Some(CoordMsg::Error {
                code: wire::msg::ErrorCode::Unavailable,
                ..
            })
        );
        if !unavailable || tokio::time::Instant::now() > deadline {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a fake server saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub connections: AtomicU64,
    /// Frames read from clients (hellos to a fake coordinator, requests to a fake offload server).
    pub frames: AtomicU64,
}

impl Seen {
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

/// What a fake server answers.
#[derive(Debug, Clone, Copy)]
pub enum Fake {
    /// A coordinator: welcomes any hello and acknowledges every result ever (`u64::MAX`).
    Coordinator,
    /// An offload server: answers every request with a forged label.
    OffloadServer,
}

/// Runs a fake server presenting `identity` on `listen` until the runtime ends.
pub fn fake_server(
    identity: &Identity,
    listen: SocketAddr,
    kind: Fake,
) -> anyhow::Result<(quinn::Endpoint, Arc<Seen>)> {
    let endpoint = quinn::Endpoint::server(net::tls::server_config(identity)?, listen)?;
    let seen = Arc::new(Seen::default());
    let (ep, s) = (endpoint.clone(), seen.clone());
    tokio::spawn(async move {
        while let Some(incoming) = ep.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                s.connections.fetch_add(1, Ordering::Relaxed);
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(fake_stream(send, recv, kind, s.clone()));
                }
            });
        }
    });
    Ok((endpoint, seen))
}

async fn fake_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    kind: Fake,
    seen: Arc<Seen>,
) {
    match kind {
        Fake::Coordinator => {
            while let Ok(Some(msg)) =
                net::framing::read_frame::<_, NodeMsg>(&mut recv, MAX_FRAME_BYTES).await
            {
                seen.frames.fetch_add(1, Ordering::Relaxed);
                let answer = match msg {
                    NodeMsg::Hello(h) => CoordMsg::Welcome {
                        node_id: h.node_id,
                        leader: "fake".into(),
                        epoch: 0,
                    },
                    _ => CoordMsg::ResultsAck {
                        incarnation: 0,
                        up_to_seq: u64::MAX,
                    },
                };
                if net::framing::write_frame(&mut send, &answer).await.is_err() {
                    return;
                }
            }
        }
        Fake::OffloadServer => {
            while let Ok(Some(req)) =
                net::framing::read_frame::<_, OffloadRequest>(&mut recv, MAX_FRAME_BYTES).await
            {
                seen.frames.fetch_add(1, Ordering::Relaxed);
                let forged = OffloadReply {
                    id: req.id,
                    result: Ok((0, 0.99, 1.0)),
                };
                if net::framing::write_frame(&mut send, &forged).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resident memory of process `pid` in bytes (Linux `/proc`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb * 1024)
}

/// Opens up to `streams` streams on `session`'s connection, each announcing a frame of
/// [`MAX_FRAME_BYTES`] and sending only `sent` bytes of it. Returns the streams opened (the
/// transport's stream cap may refuse more) and keeps them open in the returned vector.
pub async fn half_sent_frames(
    conn: &quinn::Connection,
    streams: usize,
    sent: usize,
) -> Vec<quinn::SendStream> {
    let mut open = Vec::new();
    let chunk = vec![0x5Au8; sent];
    for _ in 0..streams {
        let Ok(Ok((mut send, _recv))) =
            tokio::time::timeout(Duration::from_millis(300), conn.open_bi()).await
        else {
            break;
        };
        let prefix = (MAX_FRAME_BYTES as u32).to_be_bytes();
        if send.write_all(&prefix).await.is_err() || send.write_all(&chunk).await.is_err() {
            break;
        }
        open.push(send);
    }
    open
}

/// `POST /v1/nodes/{name}/server` on the fleet's coordinator as its admin operator: approves (or
/// withdraws) `name` for the offload-server role, retrying while no leader is known (for up to
/// 10 s). Fails unless the write committed.
pub fn approve_server(fleet: &Fleet, name: &str, approved: bool) -> anyhow::Result<()> {
    let body = serde_json::json!({ "approved": approved }).to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = fleet.ops.post_json(
            &fleet.admin(),
            &format!("/v1/nodes/{name}/server"),
            &body,
            Duration::from_secs(10),
        )?;
        match r.status {
            200 => return Ok(()),
            503 if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            status => anyhow::bail!("approving {name}: HTTP {status}: {}", r.body.trim()),
        }
    }
}
