//! The node endpoint's socket and QUIC transport, sized so that a flood from many nodes is held
//! back by flow control instead of by packet loss.
//!
//! Session readers pace themselves by their identity's rates (`session_reader`), so what a
//! flooding node sends beyond them waits in its stream's receive window: that window bounds what
//! one connection can make the coordinator buffer (quinn's default is 1.25 MiB a stream). The
//! socket's receive buffer absorbs the bursts the windows still allow: quinn's endpoint task
//! reads the socket for a bounded time per turn, and with a thousand busy sessions a turn comes
//! late; a packet the kernel drops costs its connection a retransmission timeout, and a few in a
//! row its life (idle timeout), while connections that were lucky keep going.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

/// Bytes a node may have in flight on one stream beyond what the coordinator has read: about
/// three packets, so a thousand flooding connections hold a few MiB in flight, which the socket
/// buffer absorbs (measured with `mcdnnctl bench telemetry --nodes 1000`: with 256 KiB windows
/// a quarter of the connections never got a report through, with 8 KiB a few, with 4 KiB none).
/// A telemetry report is under 1 KiB and a 256-result batch about 15 KiB, so a node on a
/// 100 ms-RTT link still moves 40 KiB/s, several of its batches a second.
pub const STREAM_WINDOW: u32 = 4 * 1024;
/// The same over all streams of one connection (the control stream and a blob stream).
pub const CONNECTION_WINDOW: u32 = 2 * STREAM_WINDOW;
/// The receive buffer asked of the kernel for the node socket. Linux caps it at
/// `net.core.rmem_max` (often 208 KiB: raise it, as for any busy QUIC server); the size
/// granted is logged.
pub const SOCKET_RECV_BUFFER: usize = 8 << 20;

/// The coordinator's own keep-alive on node connections. Nodes ping at most every
/// `wire::msg::MAX_LIVENESS_PING_INTERVAL` and every packet received restarts this timer, so on
/// a healthy session it never fires: pings go one way only. It keeps a client that does not
/// ping (a tool, a node of a bench) from idling out; a node that stopped pinging and answering
/// is ended by the idle timeout.
pub const NODE_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_millis(2000);

const _: () = assert!(
    NODE_KEEP_ALIVE.as_millis() > wire::msg::MAX_LIVENESS_PING_INTERVAL.as_millis()
        && NODE_KEEP_ALIVE.as_millis() < net::tls::NODE_IDLE_TIMEOUT.as_millis()
);

/// Room for a node's datagrams, which are pings: never read, so a few are held and the oldest
/// dropped as new ones come (256 bytes per connection, 2.5 MB for 10 000 nodes). quinn
/// advertises it as the largest datagram frame; a datagram that does not fit with quinn's
/// per-datagram bookkeeping is a protocol violation that closes that node's connection.
pub const PING_DATAGRAM_BUFFER: usize = 256;

/// `config` with the node endpoint's receive windows, keep-alive, idle timeout and ping
/// datagrams (keeping the rest of its transport).
pub fn node_server_config(mut config: quinn::ServerConfig) -> quinn::ServerConfig {
    let mut transport = net::tls::node_session_transport(Some(NODE_KEEP_ALIVE));
    transport
        .stream_receive_window(STREAM_WINDOW.into())
        .receive_window(CONNECTION_WINDOW.into())
        .datagram_receive_buffer_size(Some(PING_DATAGRAM_BUFFER));
    config.transport_config(Arc::new(transport));
    config
}

/// Binds the node endpoint on `addr` with [`node_server_config`] and a large receive buffer.
pub fn bind(config: quinn::ServerConfig, addr: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)
        .with_context(|| format!("binding the node endpoint on {addr}"))?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())
        .context("preparing the node endpoint's socket")?;
    if let Err(e) = state.set_recv_buffer_size((&socket).into(), SOCKET_RECV_BUFFER) {
        tracing::warn!(error = %e, "could not enlarge the node socket's receive buffer");
    }
    let granted = state.recv_buffer_size((&socket).into()).unwrap_or(0);
    if granted < SOCKET_RECV_BUFFER {
        tracing::info!(
            granted,
            wanted = SOCKET_RECV_BUFFER,
            "the node socket's receive buffer is capped by net.core.rmem_max"
        );
    }
    let runtime =
        quinn::default_runtime().context("the node endpoint needs a tokio runtime to run on")?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(node_server_config(config)),
        socket,
        runtime,
    )
    .with_context(|| format!("starting the node endpoint on {addr}"))
}
