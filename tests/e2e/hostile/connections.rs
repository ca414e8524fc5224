//! Hostile clients at the connection level (INTERFACE.md, "Hostile clients and lying
//! upstreams"), with raw sockets: slow heads, stalled bodies and idle connections are closed,
//! `--max-connections` holds new connections in the backlog, and running out of descriptors
//! neither spins nor floods the log.
use std::time::{Duration, Instant};

use router_tests::{DataPlane, Gateway, eventually, http_client};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

pub(super) fn address(dp: &DataPlane) -> String {
    dp.url.trim_start_matches("http://").to_owned()
}

pub(super) async fn connect(dp: &DataPlane) -> TcpStream {
    TcpStream::connect(address(dp)).await.unwrap()
}

/// Reads until the server closes the connection; what it sent, and when it closed.
pub(super) async fn read_to_close(stream: &mut TcpStream, within: Duration) -> (String, Instant) {
    let mut text = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut text)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {within:?}: {}",
        String::from_utf8_lossy(&text)
    );
    (String::from_utf8_lossy(&text).into_owned(), Instant::now())
}

/// Reads one answer to a `GET` (no body or a `Content-Length` one), leaving the connection open.
async fn read_answer(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut text = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await.ok()?.ok()?;
        if read == 0 {
            return None;
        }
        text.extend_from_slice(&buffer[..read]);
        let answer = String::from_utf8_lossy(&text).into_owned();
        if let Some(end) = answer.find("\r\n\r\n") {
            let length = answer[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if text.len() >= end + 4 + length {
                return Some(answer);
            }
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_head_is_closed_after_the_header_timeout() {
    let gw = Gateway::start(router_tests::Backend::Sqlite, &["--header-read-timeout", "1"]).await;
    let opened = Instant::now();
    let mut silent = connect(&gw.dp).await;
    let mut half = connect(&gw.dp).await;
    half.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: applic").await.unwrap();
    for stream in [&mut silent, &mut half] {
        let (sent, closed) = read_to_close(stream, Duration::from_secs(8)).await;
        assert!(!sent.starts_with("HTTP/1.1 200"), "{sent}");
        assert!(closed - opened >= Duration::from_millis(900), "closed before the timeout");
    }
    // A whole head in time is served.
    let mut prompt = connect(&gw.dp).await;
    prompt.write_all(HEALTHZ).await.unwrap();
    let answer = read_answer(&mut prompt, Duration::from_secs(5)).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_gets_408() {
    let gw = Gateway::start(router_tests::Backend::Sqlite, &["--body-read-timeout", "1"]).await;
    let mut stream = connect(&gw.dp).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: {}\r\ncontent-type: \
         application/json\r\ncontent-length: 200\r\n\r\n{{\"model\": \"gpt-4o-mini\",",
        gw.bearer()
    );
    let sent = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (answer, closed) = read_to_close(&mut stream, Duration::from_secs(8)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"invalid_request\""), "{answer}");
    assert!(closed - sent >= Duration::from_millis(900), "answered before the timeout");
    assert_eq!(gw.mock.calls(), 0);
}

/// The console's bodies (the sign-in form and JSON, the payment webhook) are small: one that
/// stalls, or trickles in a byte at a time within the per-piece timeout, is a 408 once the
/// body read timeout has passed in all.
#[tokio::test(flavor = "multi_thread")]
async fn console_bodies_that_stall_or_trickle_get_408() {
    let gw = Gateway::start(router_tests::Backend::Sqlite, &["--body-read-timeout", "1"]).await;
    for path in ["/api/account/login", "/console/login", "/api/payments/stripe/webhook"] {
        for trickle in [false, true] {
            let mut stream = connect(&gw.dp).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                 content-length: 4000\r\n\r\n{{\"email\":"
            );
            let sent = Instant::now();
            stream.write_all(head.as_bytes()).await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            // A byte every 300 ms: each piece well within the 1-s timeout, the whole body
            // never (4000 bytes would take 20 minutes).
            let trickling = tokio::spawn(async move {
                if trickle {
                    loop {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        if writer.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                }
                writer
            });
            let mut answer = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(8), reader.read_to_end(&mut answer)).await;
            trickling.abort();
            let answer = String::from_utf8_lossy(&answer);
            assert!(read.is_ok(), "{path} (trickle {trickle}): still open after 8 s: {answer}");
            assert!(answer.starts_with("HTTP/1.1 408"), "{path} (trickle {trickle}): {answer}");
            let took = sent.elapsed();
            assert!(took >= Duration::from_millis(900), "{path}: answered before the timeout");
            assert!(took < Duration::from_secs(5), "{path} (trickle {trickle}): took {took:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed() {
    let gw = Gateway::start(
        router_tests::Backend::Sqlite,
        &["--header-read-timeout", "1", "--keep-alive-timeout", "3"],
    )
    .await;
    let mut stream = connect(&gw.dp).await;
    stream.write_all(HEALTHZ).await.unwrap();
    let answer = read_answer(&mut stream, Duration::from_secs(5)).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle = Instant::now();
    // Idle for longer than the header timeout: still open, a keep-alive connection.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    let answer =
        read_answer(&mut stream, Duration::from_secs(5)).await.expect("kept alive past the header timeout");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let idle_again = Instant::now();
    let (_, closed) = read_to_close(&mut stream, Duration::from_secs(10)).await;
    assert!(closed - idle_again >= Duration::from_millis(2800), "closed after {:?}", closed - idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let gw = Gateway::start(router_tests::Backend::Sqlite, &["--max-connections", "2"]).await;
    let mut first = connect(&gw.dp).await;
    first.write_all(HEALTHZ).await.unwrap();
    assert!(read_answer(&mut first, Duration::from_secs(5)).await.is_some());
    let mut second = connect(&gw.dp).await;
    second.write_all(HEALTHZ).await.unwrap();
    assert!(read_answer(&mut second, Duration::from_secs(5)).await.is_some());
    // The third is connected (the listen backlog) but not served while two are open.
    let mut third = connect(&gw.dp).await;
    third.write_all(HEALTHZ).await.unwrap();
    assert!(read_answer(&mut third, Duration::from_secs(1)).await.is_none(), "served beyond the cap");
    drop(first);
    let answer = read_answer(&mut third, Duration::from_secs(5)).await.expect("served once one closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// User and system CPU time of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 a second).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(Iterator::count).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn descriptor_exhaustion_neither_spins_nor_floods_the_log() {
    let gw = Gateway::start(router_tests::Backend::Sqlite, &[]).await;
    let spool = gw.db.dir.join("limited-spool");
    let dp = DataPlane::start_under(&gw.cp, &spool, &["--workers", "2"], &["prlimit", "--nofile=96:96"])
        .await
        .unwrap();
    assert!(dp.process.log().contains("descriptor limit limit=96"), "{}", dp.process.log());
    let pid = dp.process.id();
    // Open connections until the data plane can take no more descriptors.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(connect(&dp).await);
    }
    let full =
        eventually(Duration::from_secs(10), || async { (open_descriptors(pid) >= 96).then_some(()) }).await;
    assert!(full.is_some(), "the data plane never ran out of descriptors ({} open)", open_descriptors(pid));
    let before = cpu_time(pid);
    let waited = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    assert!(
        spent < Duration::from_millis(500),
        "{spent:?} of CPU in {:?} out of descriptors",
        waited.elapsed()
    );
    let log = dp.process.log();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(
        warnings <= 10 && log.len() < 64 * 1024,
        "{warnings} warnings, {} bytes of log:\n{log}",
        log.len()
    );
    assert!(log.contains("cannot accept connections"), "{log}");
    drop(held);
    let healthz = format!("{}/healthz", dp.url);
    let served = eventually(Duration::from_secs(10), || async {
        http_client::get(&healthz, &[]).await.ok().filter(|a| a.status == 200)
    })
    .await;
    assert!(served.is_some(), "not serving again after the connections closed:\n{}", dp.process.log());
}
