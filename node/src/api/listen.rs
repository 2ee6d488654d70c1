//! The API's listeners: a loopback TCP address and a Unix socket, each with a cap on open
//! connections (a connection over the cap is closed at once) and hyper's header timeout.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Api, handler};

/// The API is for processes on this device: only a loopback address may be given.
pub fn check_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "--api-listen {addr}: the local inference API is for processes on this device, so it \
         listens on a loopback address only (127.0.0.1:PORT or [::1]:PORT)"
    );
    Ok(())
}

/// Binds the Unix socket at `path` with mode 0600. A socket left there by a node that is gone
/// (nobody answers on it) is replaced; a live one, or anything that is not a socket, is an
/// error. The socket is made under a temporary name, restricted, then renamed into place, so
/// the path never exists with wider permissions.
pub fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "--api-socket {}: exists and is not a socket; not replacing it",
            path.display()
        );
        anyhow::ensure!(
            std::os::unix::net::UnixStream::connect(path).is_err(),
            "--api-socket {}: another process is serving on it",
            path.display()
        );
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let name = path.file_name().context("--api-socket needs a file name")?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).with_context(|| format!("binding {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving the socket to {}", path.display()))?;
    Ok(listener)
}

async fn http1<IO>(api: Arc<Api>, io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = api.limits().header_timeout;
    let service = hyper::service::service_fn(move |req| handler::handle(api.clone(), req));
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "API connection ended with an error");
    }
}

/// Spawns one connection if a slot is free; over the cap the connection is dropped.
fn spawn_connection<IO>(api: &Arc<Api>, slots: &Arc<Semaphore>, io: IO, cancel: &CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        tracing::debug!("API connection refused: at the connection cap");
        return;
    };
    let (api, cancel) = (api.clone(), cancel.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = http1(api, io) => {}
        }
        drop(permit);
    });
}

pub async fn serve_tcp(api: Arc<Api>, listener: TcpListener, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(api.limits().max_connections));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                spawn_connection(&api, &slots, stream, &cancel);
            }
            Err(e) => tracing::warn!(error = %e, "API accept failed"),
        }
    }
}

pub async fn serve_unix(api: Arc<Api>, listener: UnixListener, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(api.limits().max_connections));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => spawn_connection(&api, &slots, stream, &cancel),
            Err(e) => tracing::warn!(error = %e, "API accept failed"),
        }
    }
}
