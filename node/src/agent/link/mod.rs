//! The link to the coordinator: a QUIC session (mutual TLS) carrying hello, telemetry every
//! interval, results, and assignments back. Every decision (where to connect and when, what to
//! send, which acks and assignments to take) is made by the I/O-free [`core::LinkCore`]; this
//! shell decodes frames into its events and carries out its actions. The link never blocks
//! serving: while it is down the serving thread keeps following the last assignment.

pub mod core;
mod report;
mod up;
mod watchlist;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use net::clock::SharedClock;
use net::identity::Kind;
use net::tls;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use wire::codec::MAX_FRAME_BYTES;
use wire::msg::{CoordMsg, Hello, NodeMsg, PROTOCOL_VERSION, Role};

use self::core::{Action, Event, LinkCore};
use self::up::Up;
use crate::credentials::Credentials;
use crate::handles::{
    AssignmentCell, BlobStreams, CoordinatorLink, OffloadCounters, TelemetryCell, WatchlistCell,
};
use crate::spool::Spool;
use crate::store::NodeStore;

/// Static facts the link announces and needs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub node_id: String,
    pub device_class: String,
    pub role: Role,
    pub offload_addr: Option<String>,
    pub apps: Vec<String>,
    pub catalog_digest: String,
    pub coordinators: Vec<String>,
    pub telemetry_interval: Duration,
}

/// The state the link reads and writes, shared with the other tasks.
#[derive(Clone)]
pub struct LinkHandles {
    pub assignment: AssignmentCell,
    pub telemetry: TelemetryCell,
    pub offload: OffloadCounters,
    pub coordinator: CoordinatorLink,
    /// Where accepted results wait for the coordinator's ack.
    pub spool: Option<Spool>,
    pub store: NodeStore,
    pub clock: SharedClock,
    /// Where pushed watchlists go (memory only).
    pub watchlist: WatchlistCell,
}

/// A handshake on a live link takes milliseconds.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer to hello comes at once from a live coordinator.
const WELCOME_WITHIN: net::framing::Deadlines = net::framing::Deadlines {
    idle: Duration::from_secs(5),
    frame: Duration::from_secs(5),
};
/// A connection after the QUIC handshake: its control stream, and once welcomed, the frames
/// its reader task decodes and the session's timers.
struct Live {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: Option<quinn::RecvStream>,
    up: Option<Up>,
}

/// Runs until `cancel`: connect, serve the session, back off, repeat.
pub async fn run(
    cfg: LinkConfig,
    credentials: Arc<Credentials>,
    handles: LinkHandles,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let endpoint = quinn::Endpoint::client(SocketAddr::from(([0, 0, 0, 0], 0)))
        .context("binding the node's QUIC client socket")?;
    let held = handles.assignment.read(|a| a.map(|a| a.epoch));
    let mut core = LinkCore::new(
        cfg.coordinators.clone(),
        held,
        rand::rngs::StdRng::from_entropy(),
    );
    let mut shell = Shell {
        cfg: &cfg,
        credentials: &credentials,
        handles: &handles,
        endpoint: &endpoint,
        cancel: &cancel,
        live: None,
        addr: String::new(),
    };
    let mut actions: VecDeque<Action> = core.handle(Event::Start).into();
    'link: loop {
        while let Some(action) = actions.pop_front() {
            match shell.execute(action).await {
                Step::Continue => {}
                Step::Event(event) => actions.extend(shell.feed(&mut core, event)),
                Step::Stop => break 'link,
            }
        }
        let event = shell.next_event().await;
        actions.extend(shell.feed(&mut core, event));
    }
    handles.coordinator.disconnected();
    endpoint.close(0u32.into(), b"node stopping");
    Ok(())
}

/// What executing an action led to.
enum Step {
    Continue,
    /// Feed this to the core.
    Event(Event),
    Stop,
}

fn failed(e: anyhow::Error) -> Step {
    Step::Event(Event::Failed(format!("{e:#}")))
}

struct Shell<'a> {
    cfg: &'a LinkConfig,
    credentials: &'a Credentials,
    handles: &'a LinkHandles,
    endpoint: &'a quinn::Endpoint,
    cancel: &'a CancellationToken,
    live: Option<Live>,
    /// The coordinator of the current (or last) connection.
    addr: String,
}

impl Shell<'_> {
    /// Hands `event` to the core, logging how a session ended.
    fn feed(&self, core: &mut LinkCore, event: Event) -> Vec<Action> {
        match &event {
            Event::Failed(error) => {
                tracing::warn!(coordinator = %self.addr, %error, "coordinator session ended");
            }
            Event::Frame(CoordMsg::Redirect { leader_addr }) => {
                tracing::info!(from = %self.addr, to = %leader_addr, "redirected to the leader");
            }
            Event::Tick { .. } => {
                let actions = core.handle(event);
                if actions.iter().any(|a| matches!(a, Action::Connect { .. })) {
                    tracing::warn!(coordinator = %self.addr, "nothing received from the coordinator for three ping intervals; trying the next replica");
                }
                return actions;
            }
            _ => {}
        }
        core.handle(event)
    }

    async fn execute(&mut self, action: Action) -> Step {
        match self.try_execute(action).await {
            Ok(step) => step,
            Err(e) => failed(e),
        }
    }

    async fn try_execute(&mut self, action: Action) -> anyhow::Result<Step> {
        match action {
            Action::Connect { addr, after } => {
                if let Some(live) = self.live.take() {
                    live.conn.close(0u32.into(), b"reconnecting");
                    tracing::debug!(coordinator = %self.addr, "session ended");
                }
                self.handles.coordinator.disconnected();
                if self.cancel.is_cancelled() {
                    return Ok(Step::Event(Event::Stop));
                }
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = self.cancel.cancelled() => return Ok(Step::Event(Event::Stop)),
                }
                self.addr = addr;
                let live = self.connect().await?;
                self.live = Some(live);
                let acked_up_to = match &self.handles.spool {
                    Some(s) => s.acked_up_to()?,
                    None => 0,
                };
                Ok(Step::Event(Event::Connected { acked_up_to }))
            }
            Action::Ping => {
                if let Some(live) = &self.live {
                    // A ping that cannot go (the connection is closing) shows as silence.
                    if let Err(e) = live.conn.send_datagram(bytes::Bytes::new()) {
                        tracing::debug!(error = %e, "could not ping the coordinator");
                    }
                }
                Ok(Step::Continue)
            }
            Action::IgnoreLiveness { reason } => {
                tracing::warn!(coordinator = %self.addr, %reason, "ignoring the coordinator's ping interval");
                Ok(Step::Continue)
            }
            Action::SendHello => {
                let live = self.live.as_mut().context("no connection")?;
                let hello = Hello {
                    node_id: self.cfg.node_id.clone(),
                    device_class: self.cfg.device_class.clone(),
                    role: self.cfg.role.clone(),
                    protocol_version: PROTOCOL_VERSION,
                    catalog_digests: vec![self.cfg.catalog_digest.clone()],
                    offload_addr: self.cfg.offload_addr.clone(),
                    battery: self
                        .handles
                        .telemetry
                        .battery()
                        .unwrap_or_else(wire::msg::Battery::unreported),
                    apps: self.cfg.apps.clone(),
                    watchlist_version: self.handles.watchlist.version(),
                };
                net::framing::write_frame(&mut live.send, &NodeMsg::Hello(hello)).await?;
                let recv = live.recv.as_mut().context("no control stream")?;
                match net::framing::read_frame_within::<_, CoordMsg>(
                    recv,
                    MAX_FRAME_BYTES,
                    WELCOME_WITHIN,
                )
                .await?
                {
                    Some(msg) => Ok(Step::Event(Event::Frame(msg))),
                    None => bail!("coordinator closed the stream after hello"),
                }
            }
            Action::Welcomed { leader, epoch } => {
                tracing::info!(node_id = %self.cfg.node_id, %leader, epoch, coordinator = %self.addr, "connected to the coordinator");
                let live = self.live.as_mut().context("no connection")?;
                let recv = live.recv.take().context("no control stream")?;
                self.handles
                    .coordinator
                    .connected(BlobStreams::new(live.conn.clone()));
                live.up = Some(Up::start(
                    recv,
                    self.cfg,
                    self.credentials,
                    &live.conn,
                    self.handles,
                ));
                Ok(Step::Continue)
            }
            Action::SendTelemetry { seq } => {
                let live = self.live.as_mut().context("no connection")?;
                let rtt_ms = live
                    .up
                    .as_ref()
                    .map_or(0.0, |u| u.rtt_ms)
                    .max(live.conn.rtt().as_secs_f64() * 1e3);
                let telemetry = report::telemetry(seq, self.handles, rtt_ms);
                net::framing::write_frame(&mut live.send, &NodeMsg::Telemetry(telemetry)).await?;
                Ok(Step::Continue)
            }
            Action::ReadResults { after, max } => {
                let spool = self.handles.spool.as_ref().context("no spool")?;
                Ok(Step::Event(Event::ResultsRead(
                    spool.batch_after(after, max)?,
                )))
            }
            Action::SendResults(batch) => {
                let live = self.live.as_mut().context("no connection")?;
                net::framing::write_frame(&mut live.send, &NodeMsg::Results(batch)).await?;
                Ok(Step::Continue)
            }
            Action::AckSpool { incarnation, up_to } => {
                if let Some(spool) = &self.handles.spool
                    && !spool.ack(up_to)?
                {
                    refuse_ack(spool, incarnation, up_to);
                }
                Ok(Step::Continue)
            }
            Action::RefuseAck { incarnation, up_to } => {
                if let Some(spool) = &self.handles.spool {
                    refuse_ack(spool, incarnation, up_to);
                }
                Ok(Step::Continue)
            }
            Action::InstallAssignment(a) => {
                // Persisted before use, so a node restarted offline resumes on it.
                if let Err(e) = self.handles.store.save_assignment(&a) {
                    tracing::error!(error = %e, "could not persist the assignment; using it anyway");
                }
                self.handles.assignment.offer(a);
                Ok(Step::Continue)
            }
            Action::AckAssignment { epoch } => {
                let live = self.live.as_mut().context("no connection")?;
                net::framing::write_frame(&mut live.send, &NodeMsg::Ack { epoch }).await?;
                Ok(Step::Continue)
            }
            Action::StartRenewal => {
                let live = self.live.as_mut().context("no connection")?;
                let up = live.up.as_mut().context("session not up")?;
                let csr_pem = up.renewal.start(self.credentials)?;
                net::framing::write_frame(&mut live.send, &NodeMsg::Renew { csr_pem }).await?;
                Ok(Step::Continue)
            }
            Action::FinishRenewal { chain_pem } => {
                if let Some(up) = self.live.as_mut().and_then(|l| l.up.as_mut()) {
                    up.renewal.finish(self.credentials, &chain_pem);
                }
                Ok(Step::Continue)
            }
            Action::RenewalRefused { reason } => {
                if let Some(up) = self.live.as_mut().and_then(|l| l.up.as_mut()) {
                    up.renewal.refused(self.credentials, &reason);
                }
                Ok(Step::Continue)
            }
            Action::ReplaceRevocations(names) => {
                self.credentials.revoked.replace(names);
                Ok(Step::Continue)
            }
            Action::Goodbye => {
                if let Some(mut live) = self.live.take() {
                    let _ = net::framing::write_frame(&mut live.send, &NodeMsg::Bye).await;
                    let _ = live.send.finish();
                    // Let the coordinator read the goodbye and close first, so it sees an
                    // orderly end rather than a lost connection.
                    let _ = tokio::time::timeout(Duration::from_secs(1), live.conn.closed()).await;
                    live.conn.close(0u32.into(), b"bye");
                }
                Ok(Step::Continue)
            }
            Action::Stopped => Ok(Step::Stop),
        }
    }

    /// Opens a QUIC connection to the current address and checks it is a coordinator.
    async fn connect(&self) -> anyhow::Result<Live> {
        let addr = &self.addr;
        let sock = tokio::net::lookup_host(addr)
            .await
            .with_context(|| format!("resolving {addr}"))?
            .next()
            .with_context(|| format!("{addr} resolves to nothing"))?;
        // Each connection presents the current certificate, so a renewed one is used from the
        // next connection on.
        let client = self.credentials.coordinator_client_config()?;
        let connecting = self
            .endpoint
            .connect_with(client, sock, &tls::server_name_for(addr))
            .context("starting the QUIC handshake")?;
        // A dead replica never answers: give up well before the idle timeout and try the next.
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .with_context(|| format!("no QUIC handshake from {addr} within {HANDSHAKE_TIMEOUT:?}"))?
            .with_context(|| format!("QUIC/TLS handshake with {addr}"))?;
        // Any fleet certificate chains to the CA; only a coordinator's may steer this node.
        let peer = tls::peer(&conn).context("reading the coordinator's certificate")?;
        if peer.kind != Kind::Coordinator {
            conn.close(0u32.into(), b"not a coordinator");
            bail!(
                "{addr} presented the certificate of {} {:?}, not a coordinator; refusing it",
                peer.kind,
                peer.name
            );
        }
        let (send, recv) = conn.open_bi().await.context("opening the control stream")?;
        Ok(Live {
            conn,
            send,
            recv: Some(recv),
            up: None,
        })
    }

    /// Waits for what happens next on an established session.
    async fn next_event(&mut self) -> Event {
        let Some(up) = self.live.as_mut().and_then(|l| l.up.as_mut()) else {
            // Only a welcomed session waits for events; anything else is a fault of the shell.
            return Event::Failed("no session to wait on".into());
        };
        tokio::select! {
            _ = self.cancel.cancelled() => Event::Stop,
            _ = up.ticker.tick() => Event::TelemetryDue,
            _ = up.results_ticker.tick(), if self.handles.spool.is_some() => {
                match self.handles.spool.as_ref().map(Spool::acked_up_to) {
                    Some(Ok(acked_up_to)) => Event::ResultsDue { acked_up_to },
                    Some(Err(e)) => Event::Failed(format!("reading the spool: {e}")),
                    None => Event::Failed("no spool".into()),
                }
            }
            () = up.renewal.due() => Event::RenewalDue,
            // The timer's own instant: the silence is measured on the same time as the ticks.
            at = up.liveness.tick() => Event::Tick {
                now: at.into_std(),
                datagrams: self.live.as_ref().map_or(0, |l| l.conn.stats().udp_rx.datagrams),
            },
            msg = up.frames.recv() => match msg {
                None => Event::Failed("coordinator stream reader ended".into()),
                Some(Err(e)) => Event::Failed(format!("{e:#}")),
                Some(Ok(None)) => Event::Failed("coordinator closed the control stream".into()),
                Some(Ok(Some(msg))) => Event::Frame(msg),
            },
        }
    }
}

/// An acknowledgement for results this node did not send (in this session, of that
/// incarnation, or at all) is logged, counted and ignored, so a confused or forged coordinator
/// cannot make the spool drop results it never received.
fn refuse_ack(spool: &Spool, incarnation: u64, up_to: u64) {
    let refused = spool.refuse_ack();
    tracing::warn!(
        incarnation,
        up_to,
        refused,
        "ignoring a results ack for results this node did not send"
    );
}
