//! A UDP forwarder between one QUIC client and a server that can be told to drop everything: a
//! network partition on one machine, without root or namespaces.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Context;
use tokio::net::UdpSocket;

pub struct UdpProxy {
    pub addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    /// Datagrams dropped while partitioned.
    pub dropped: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl UdpProxy {
    /// Forwards datagrams from whoever talks to the proxy to `upstream`, and back to the most
    /// recent client.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("proxy runtime")?;
        let (front, back) = runtime.block_on(async {
            Ok::<_, std::io::Error>((
                UdpSocket::bind("127.0.0.1:0").await?,
                UdpSocket::bind("127.0.0.1:0").await?,
            ))
        })?;
        let addr = front.local_addr()?;
        let (front, back) = (Arc::new(front), Arc::new(back));
        let blackhole = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back, hole, dropped, client) = (
                front.clone(),
                back.clone(),
                blackhole.clone(),
                dropped.clone(),
                client.clone(),
            );
            runtime.spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    if hole.load(Ordering::Relaxed) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    *client.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
                    let _ = back.send_to(&buf[..n], upstream).await;
                }
            });
        }
        {
            let (hole, dropped) = (blackhole.clone(), dropped.clone());
            runtime.spawn(async move {
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, _)) = back.recv_from(&mut buf).await {
                    if hole.load(Ordering::Relaxed) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let to = *client.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(to) = to {
                        let _ = front.send_to(&buf[..n], to).await;
                    }
                }
            });
        }
        Ok(Self {
            addr,
            blackhole,
            dropped,
            runtime: Some(runtime),
        })
    }

    /// Drops every datagram both ways while `on`.
    pub fn partition(&self, on: bool) {
        self.blackhole.store(on, Ordering::Relaxed);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
