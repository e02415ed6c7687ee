//! The accept loop, with the connection timeouts `axum::serve` does not set (slowloris):
//! - **header read**: a request's headers must arrive within `header_read` (hyper arms it as
//!   soon as an HTTP/1.1 connection waits for its next request, so it also ends an idle
//!   keep-alive connection that sends nothing);
//! - **idle**: a connection on which no byte moves either way for `idle` is closed (HTTP/1.1
//!   and HTTP/2 alike);
//! - **body**: a request body that sends no data for `body` fails with 408;
//! - **request**: a request that takes longer than `request` in all, body included, gets 408.
//!
//! Graceful shutdown: when `shutdown` resolves the loop stops accepting and every connection
//! finishes its requests in flight (the caller bounds how long that may take).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_io_timeout::TimeoutStream;

/// Connection and request timeouts (`[server]` in config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
    pub body: Duration,
    pub request: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then waits for the connections'
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    t: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(t.header_read);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_read_timeout(Some(t.idle));
        stream.set_write_timeout(Some(t.idle));
        let io = TokioIo::new(Box::pin(stream));
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection_with_upgrades(io, service).into_owned();
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
