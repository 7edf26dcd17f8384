//! Signals that stop the daemon: the first `SIGTERM` or `SIGINT` starts a graceful stop; a
//! second `SIGINT` exits at once.
//!
//! It only turns signals into a future; what stopping means is the server's business.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves at the first `SIGTERM` or `SIGINT`. Installs the handlers when called, so call it
/// before the daemon says it is listening.
pub fn on_stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name}: stopping; in-flight requests may finish (a second SIGINT exits at once)");
        tokio::spawn(async move {
            if int.recv().await.is_some() {
                eprintln!("second SIGINT: exiting at once");
                std::process::exit(1);
            }
        });
    })
}
