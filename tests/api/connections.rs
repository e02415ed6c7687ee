//! Connections: how the server treats slow, silent and idle clients.

/// Hostile and careless input against this feature (the security probes' cases): each gets a
/// clear answer, the server keeps serving, and no other tenant or device is affected.
mod hostile_input {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use crate::attack::*;

    use crate::helpers::spawn_with;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_and_silent_clients_are_disconnected() {
        let app = spawn_with(|c| {
            c.server.header_read_timeout_ms = 400;
            c.server.idle_timeout_ms = 1_500;
            c.server.body_timeout_ms = 400;
            c.server.request_timeout_ms = 1_000;
        })
        .await;
        let addr = app.base.trim_start_matches("http://").to_owned();
        let connect = || TcpStream::connect(addr.clone());
        // Partial headers, then silence.
        let mut s = connect().await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        assert!(closed_within(&mut s, Duration::from_secs(10)).await.is_ok(), "silent headers");
        // Headers one byte at a time, slower than the header timeout allows in all.
        let mut s = connect().await.unwrap();
        let mut closed = false;
        for b in b"GET /healthz HTTP/1.1\r\nHost: slowloris.example\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n" {
            if s.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            // Pacing the attack (a slow client), not waiting for the server.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed || closed_within(&mut s, Duration::from_secs(10)).await.is_ok(), "trickled headers");
        // A body that stops arriving.
        let mut s = connect().await.unwrap();
        s.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n{\"qu")
            .await
            .unwrap();
        let answer = closed_within(&mut s, Duration::from_secs(10)).await.expect("stalled body");
        let answer = String::from_utf8_lossy(&answer).to_lowercase();
        assert!(
            answer.starts_with("http/1.1 4") && answer.contains("not received within the designated timeout"),
            "{answer}"
        );
        // An idle keep-alive connection after one request.
        let mut s = connect().await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = closed_within(&mut s, Duration::from_secs(10)).await.expect("idle keep-alive");
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
        healthy(&app).await;
    }
}
