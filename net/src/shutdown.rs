//! The stop signal every MCDNN daemon obeys: SIGINT or SIGTERM (what Kubernetes and systemd send).

/// Resolves on the first SIGINT or SIGTERM.
pub async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        // Without a SIGTERM handler only Ctrl-C stops the process.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
