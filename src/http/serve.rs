//! The accept loop, with the connection timeouts `axum::serve` does not set (slowloris):
//! - **header read**: a new connection's first byte, and a request's headers, must arrive
//!   within `header_read` (hyper arms it as soon as an HTTP/1.1 connection waits for its next
//!   request, so it also ends an idle keep-alive connection that sends nothing);
//! - **idle**: a connection on which no byte moves either way for `idle` is closed (HTTP/1.1
//!   and HTTP/2 alike);
//! - **body**: a request body that sends no data for `body` fails with 408;
//! - **request**: a request that takes longer than `request` in all, body included, gets 408.
//!
//! Connections are served on worker threads, one current-thread runtime each (see [`serve`]).
//!
//! Graceful shutdown: when `shutdown` resolves the loop stops accepting and every connection
//! finishes its requests in flight (the caller bounds how long that may take).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
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
///
/// The caller's runtime only accepts. Each connection is handed to one of `workers` threads,
/// each running a current-thread tokio runtime, in turn: a request, its backend calls and
/// their connections then run on one thread, and nothing wakes another thread or moves a task
/// between threads (on a multi-thread runtime, idle workers woken to steal and backend
/// answers handed across threads cost 10–23 % of a request's CPU under load on two cores;
/// docs/benchmarks-history.md §23). Connections are long-lived, so taking turns keeps the threads
/// evenly loaded.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    t: Timeouts,
    workers: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let pool = Workers::start(workers.max(1), &router, t)?;
    tokio::pin!(shutdown);
    let mut turn = 0usize;
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
        // Out of the accepting runtime's reactor, into the worker's when it arrives there.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "cannot hand the connection over");
                continue;
            }
        };
        pool.hand(turn, stream, peer);
        turn = turn.wrapping_add(1);
    }
    drop(listener);
    pool.finish().await;
    Ok(())
}

/// Accepted connections waiting for their worker to take them, per worker: a worker takes
/// each at once, so the queue fills only while that thread is busy (stalled); the next
/// connections then go to the other threads, and when every queue is full they are answered
/// 503 at once. The accept loop never waits.
const QUEUE: usize = 64;

/// What a connection gets when every serving thread's queue is full.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
connection: close\r\ncontent-length: 65\r\n\r\n{\"errors\":[{\"message\":\"the server is busy; retry in a second\"}]}\n";

/// The threads that serve connections, and how to stop them.
struct Workers {
    /// One queue of accepted connections per thread; a closed one ends that worker's serving.
    queues: Vec<tokio::sync::mpsc::Sender<(std::net::TcpStream, SocketAddr)>>,
    /// Each worker says here when its connections are done after the queues closed.
    done: Vec<tokio::sync::oneshot::Receiver<()>>,
    /// Dropped (with this value) to stop the workers at once, in-flight requests and all.
    _stop: tokio::sync::watch::Sender<()>,
}

impl Workers {
    fn start(count: usize, router: &Router, t: Timeouts) -> std::io::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let mut queues = Vec::with_capacity(count);
        let mut done = Vec::with_capacity(count);
        for n in 0..count {
            let (queue, incoming) = tokio::sync::mpsc::channel(QUEUE);
            let (finished, finish) = tokio::sync::oneshot::channel();
            // Blocking threads (large backend bodies parsed off the serving thread) bounded.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(16)
                .build()?;
            let router = router.clone();
            let mut stopped = stopped.clone();
            std::thread::Builder::new().name(format!("facade-http-{n}")).spawn(move || {
                crate::backends::use_lane(n);
                runtime.block_on(async move {
                    tokio::select! {
                        () = work(incoming, router, t) => {
                            let _ = finished.send(());
                        }
                        // Nothing is ever sent: this ends when the `Workers` value is dropped
                        // with the accept loop's future (the grace period ran out, or the
                        // server was dropped), and requests still in flight are dropped too.
                        _ = stopped.changed() => {}
                    }
                });
                // Blocking tasks still running get a moment, then the thread ends.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
            queues.push(queue);
            done.push(finish);
        }
        Ok(Self { queues, done, _stop: stop })
    }

    /// Hands a connection to worker `turn` (modulo their count) if its queue is empty, else to
    /// the next whose queue is, else to the one with the most room (a stalled thread's queue
    /// only grows, so new connections leave it alone); never waits. With every queue full the
    /// connection is answered 503.
    fn hand(&self, turn: usize, stream: std::net::TcpStream, peer: SocketAddr) {
        let n = self.queues.len();
        let order = (0..n).map(|k| &self.queues[(turn + k) % n]);
        let pick = order
            .clone()
            .find(|q| q.capacity() == q.max_capacity())
            .or_else(|| order.filter(|q| q.capacity() > 0).max_by_key(|q| q.capacity()));
        if let Some(queue) = pick {
            match queue.try_send((stream, peer)) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::TrySendError::Full((s, _)))
                | Err(tokio::sync::mpsc::error::TrySendError::Closed((s, _))) => return busy(s),
            }
        }
        tracing::warn!(peer = %peer, "every serving thread is busy: connection answered 503");
        busy(stream);
    }

    /// Stops handing out connections and waits until every worker's requests in flight are
    /// answered.
    async fn finish(mut self) {
        self.queues.clear();
        for done in std::mem::take(&mut self.done) {
            let _ = done.await;
        }
    }
}

/// Answers 503 on a connection no thread can take, without waiting for the client: one
/// non-blocking write (the answer fits any socket buffer), then the connection is closed.
fn busy(stream: std::net::TcpStream) {
    use std::io::Write;
    if stream.set_nonblocking(true).is_ok() {
        let _ = (&stream).write(BUSY);
    }
}

/// One worker: serves each connection it is handed until its queue closes, then lets the
/// connections finish their requests in flight.
async fn work(
    mut incoming: tokio::sync::mpsc::Receiver<(std::net::TcpStream, SocketAddr)>,
    router: Router,
    t: Timeouts,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(t.header_read);
    builder.http2().timer(TokioTimer::new());
    // Shared by the connections' tasks (a clone per connection copies both protocols' settings).
    let builder = std::sync::Arc::new(builder);
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer)) = incoming.recv().await {
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "cannot serve the connection");
                continue;
            }
        };
        let (builder, service, watcher) =
            (builder.clone(), TowerToHyperService::new(router.clone()), graceful.watcher());
        tokio::spawn(async move {
            // The first byte within the header timeout: the protocol sniffing of the auto
            // builder reads before hyper's own header timer is armed, so without this a
            // connection that sends nothing lived until the idle timeout (probe 2, L5).
            if !matches!(tokio::time::timeout(t.header_read, stream.readable()).await, Ok(Ok(()))) {
                tracing::debug!(peer = %peer, "nothing sent within the header timeout: closed");
                return;
            }
            let mut stream = TimeoutStream::new(stream);
            stream.set_read_timeout(Some(t.idle));
            stream.set_write_timeout(Some(t.idle));
            let io = TokioIo::new(Box::pin(stream));
            let connection = builder.serve_connection_with_upgrades(io, service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{Notify, mpsc};

    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(5),
        idle: Duration::from_secs(5),
        body: Duration::from_secs(5),
        request: Duration::from_secs(5),
    };

    /// Answers with the name of the thread that ran the handler; `/slow` first says it has
    /// started, then waits for the test to release it.
    fn router(started: mpsc::Sender<()>, release: Arc<Notify>) -> Router {
        let name = || std::thread::current().name().unwrap_or("").to_owned();
        Router::new().route("/", axum::routing::get(move || async move { name() })).route(
            "/slow",
            axum::routing::get(move || async move {
                let _ = started.send(()).await;
                release.notified().await;
                name()
            }),
        )
    }

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        answer.rsplit("\r\n\r\n").next().unwrap().to_owned()
    }

    #[tokio::test]
    async fn connections_are_served_by_the_workers_in_turn_and_shutdown_waits_for_requests() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started, mut has_started) = mpsc::channel(1);
        let release = Arc::new(Notify::new());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router(started, release.clone()), T, 2, async move {
            let _ = stopped.await;
        }));
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(get(addr, "/").await);
        }
        assert_eq!(names, ["facade-http-0", "facade-http-1", "facade-http-0", "facade-http-1"]);

        // A request in flight when the shutdown comes is still answered.
        let slow = tokio::spawn(get(addr, "/slow"));
        tokio::time::timeout(Duration::from_secs(10), has_started.recv())
            .await
            .expect("the slow request started")
            .unwrap();
        stop.send(()).unwrap();
        release.notify_one();
        assert_eq!(slow.await.unwrap(), "facade-http-0");
        server.await.unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed after shutdown");
    }

    /// A router whose `/stall` blocks its serving thread (a handler that never yields) until
    /// the test releases it; `stalled` says when it has.
    fn stalling() -> (Router, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (stalled_tx, stalled) = std::sync::mpsc::channel::<()>();
        let (release_tx, release) = std::sync::mpsc::channel::<()>();
        let release = Arc::new(std::sync::Mutex::new(release));
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" })).route(
            "/stall",
            axum::routing::get(move || {
                let (stalled_tx, release) = (stalled_tx.clone(), release.clone());
                async move {
                    let _ = stalled_tx.send(());
                    let _ = release.lock().unwrap().recv();
                    "released"
                }
            }),
        );
        (router, stalled, release_tx)
    }

    async fn until_stalled(stalled: std::sync::mpsc::Receiver<()>) {
        tokio::task::spawn_blocking(move || stalled.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the serving thread is stalled");
    }

    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_at_the_header_timeout_not_the_idle_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started, _) = mpsc::channel(1);
        let t = Timeouts { header_read: Duration::from_millis(200), idle: Duration::from_secs(600), ..T };
        let server = tokio::spawn(serve(
            listener,
            router(started, Arc::new(Notify::new())),
            t,
            1,
            std::future::pending(),
        ));
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        // Before (probe 2, L5) it lived until the idle timeout (here 600 s).
        let read = tokio::time::timeout(Duration::from_secs(30), silent.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed by the server: {read:?}");
        // A connection that speaks is served as before.
        assert_eq!(get(addr, "/").await, "facade-http-0");
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_serving_thread_does_not_stop_the_others() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (router, stalled, release) = stalling();
        let server = tokio::spawn(serve(listener, router, T, 2, std::future::pending()));
        let stall = tokio::spawn(get(addr, "/stall"));
        until_stalled(stalled).await;
        // 150 connections while thread 0 stalls: before, connections alternated and the accept
        // loop waited on thread 0's full queue after ~128, so at most ~64 were served; now
        // thread 0's queue takes at most its 64 and thread 1 serves the rest.
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..150)
            .map(|_| {
                let served = served.clone();
                tokio::spawn(async move {
                    let answer = get(addr, "/").await;
                    served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    answer
                })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while served.load(std::sync::atomic::Ordering::Relaxed) < 150 - QUEUE {
            assert!(std::time::Instant::now() < deadline, "only {served:?} served while thread 0 stalls");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!stall.is_finished(), "thread 0 was stalled all along");
        release.send(()).unwrap();
        assert_eq!(stall.await.unwrap(), "released");
        for c in calls {
            assert_eq!(c.await.unwrap(), "ok", "those queued on thread 0 are served after it");
        }
        server.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_every_queue_is_full_a_connection_is_answered_503_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (router, stalled, release) = stalling();
        let server = tokio::spawn(serve(listener, router, T, 1, std::future::pending()));
        let stall = tokio::spawn(get(addr, "/stall"));
        until_stalled(stalled).await;
        // The one thread's queue fills with connections that send nothing ...
        let mut held = Vec::new();
        for _ in 0..QUEUE {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // ... and the next is answered by the accept loop itself.
        let mut next = TcpStream::connect(addr).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), next.read_to_end(&mut answer))
            .await
            .expect("answered and closed")
            .unwrap();
        assert_eq!(answer, BUSY);
        release.send(()).unwrap();
        assert_eq!(stall.await.unwrap(), "released");
        drop(held);
        server.abort();
    }

    #[test]
    fn the_busy_answer_is_well_formed() {
        let text = std::str::from_utf8(BUSY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503") && head.contains("retry-after: 1"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head} / {}", body.len());
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok(), "{body}");
    }

    #[tokio::test]
    async fn dropping_the_server_drops_the_requests_in_flight() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (started, mut has_started) = mpsc::channel(1);
        let server = tokio::spawn(serve(listener, router(started, Arc::new(Notify::new())), T, 1, async {
            std::future::pending::<()>().await;
        }));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), has_started.recv()).await.expect("started").unwrap();
        server.abort();
        // The worker's runtime ends with its connections: the client sees the connection close
        // without an answer.
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection is closed");
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
}
