//! Per-connection timeouts (INTERFACE.md, "Hostile clients and lying upstreams"): a client has
//! `--header-read-timeout` to send a whole request head (from connecting for its first
//! request, from the head's first byte for the next ones) and may stay idle between requests
//! for `--keep-alive-timeout`; a connection that overstays either is closed.
//!
//! hyper's own `header_read_timeout` is not used: it restarts as soon as a connection goes idle,
//! so it would close every idle keep-alive connection after the (much shorter) header timeout,
//! and it does not run before the auto builder has seen enough bytes to tell HTTP/1 from
//! HTTP/2, so a connection that sends nothing at all would never time out.
//!
//! The connection's task tracks three facts, all in that one task (relaxed atomics only to be
//! `Send`): how many requests are in flight (from the service call until the answer's body is
//! dropped), when the last one ended, and when the first byte of the next head arrived. A
//! request costs two clock reads; a read while a request is in flight costs one load.
use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::OwnedSemaphorePermit,
    time::Instant,
};

use crate::body::ResponseBody;

/// What a connection's watchdog watches.
#[derive(Debug)]
pub struct Watch {
    opened: Instant,
    in_flight: AtomicU32,
    /// Requests started on this connection.
    started: AtomicU64,
    /// Milliseconds after `opened` when the last request ended.
    idle_since: AtomicU64,
    /// 1 + milliseconds after `opened` when the first byte of the next head arrived; 0: none.
    head_since: AtomicU64,
    /// Whether the connection was closed for overstaying a timeout.
    timed_out: AtomicBool,
}

impl Watch {
    /// A watch for a connection opened now.
    pub fn new() -> Arc<Watch> {
        Arc::new(Watch {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            started: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            timed_out: AtomicBool::new(false),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request has started; it lasts until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Relaxed);
        self.started.fetch_add(1, Relaxed);
        self.head_since.store(0, Relaxed);
        Busy(Arc::clone(self))
    }

    fn saw_bytes(&self) {
        if self.in_flight.load(Relaxed) == 0 && self.head_since.load(Relaxed) == 0 {
            self.head_since.store(self.millis() + 1, Relaxed);
        }
    }

    /// When the connection is due to be closed, in milliseconds after it opened, if it is not
    /// serving a request.
    fn deadline(&self, header: u64, keep_alive: u64) -> Option<u64> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        if self.started.load(Relaxed) == 0 {
            return Some(header);
        }
        Some(match self.head_since.load(Relaxed) {
            0 => self.idle_since.load(Relaxed).saturating_add(keep_alive),
            since => (since - 1).saturating_add(header),
        })
    }

    /// Completes when the connection has overstayed its header or keep-alive timeout.
    pub async fn expired(&self, header: Duration, keep_alive: Duration) {
        let header = u64::try_from(header.as_millis()).unwrap_or(u64::MAX);
        let keep_alive = u64::try_from(keep_alive.as_millis()).unwrap_or(u64::MAX);
        // Every deadline lies at least the shorter timeout after the event that set it, so a
        // busy connection is looked at again after that long.
        let recheck = header.min(keep_alive);
        loop {
            let now = self.millis();
            let wake = match self.deadline(header, keep_alive) {
                Some(due) if due <= now => {
                    self.timed_out.store(true, Relaxed);
                    return;
                }
                Some(due) => due,
                None => now.saturating_add(recheck),
            };
            tokio::time::sleep_until(self.opened + Duration::from_millis(wake)).await;
        }
    }
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        let watch = &self.0;
        if watch.in_flight.fetch_sub(1, Relaxed) == 1 {
            watch.idle_since.store(watch.millis(), Relaxed);
        }
    }
}

/// An answer's body that holds its request's [`Busy`] until it is dropped.
pub struct Tracked {
    body: ResponseBody,
    _busy: Busy,
}

impl Tracked {
    /// `body`, ending `busy` when dropped.
    pub fn new(body: ResponseBody, busy: Busy) -> Tracked {
        Tracked { body, _busy: busy }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket that tells its [`Watch`] when bytes arrive between requests.
///
/// When hyper closes a connection the client is still writing to (an early answer, a 413 or
/// a 401, to a large body), closing the socket with unread bytes would make the kernel reset
/// the connection, and the client could lose the answer it had not read yet. So a socket
/// dropped before the client's end of stream lingers a moment (reading and discarding, bounded
/// in time and bytes) after hyper has sent the answer and shut its side down.
///
/// It also holds the connection's `--max-connections` permit, so the permit lasts exactly as
/// long as the socket: through a WebSocket session too, which outlives hyper's connection.
pub struct Watched {
    inner: Option<TcpStream>,
    watch: Arc<Watch>,
    client_done: bool,
    _permit: OwnedSemaphorePermit,
}

/// How long, and how many bytes, a closed connection keeps reading what its client still sends.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 << 20;

impl Watched {
    /// `inner`, reporting to `watch`, holding `permit` until it is dropped.
    pub fn new(inner: TcpStream, watch: Arc<Watch>, permit: OwnedSemaphorePermit) -> Watched {
        Watched { inner: Some(inner), watch, client_done: false, _permit: permit }
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        match self.inner.as_mut() {
            Some(stream) => Pin::new(stream),
            // `inner` is only taken in `drop`.
            None => unreachable!("a socket used after it was dropped"),
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let Some(stream) = self.inner.take() else { return };
        if self.client_done || self.watch.timed_out.load(Relaxed) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + LINGER;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => left = left.saturating_sub(read),
            _ => break,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.stream().poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => self.watch.saw_bytes(),
            Poll::Ready(_) => self.client_done = true,
            Poll::Pending => {}
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

/// Runs `connection` until it ends or overstays its timeouts (then it is dropped: closed).
pub async fn guard<C: Future>(
    connection: C,
    watch: &Watch,
    header: Duration,
    keep_alive: Duration,
) -> Option<C::Output> {
    tokio::select! {
        ended = connection => Some(ended),
        () = watch.expired(header, keep_alive) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_the_connection() {
        let watch = Watch::new();
        assert_eq!(watch.deadline(10, 90), Some(10), "the first head is due from connecting");
        let busy = watch.request();
        assert_eq!(watch.deadline(10, 90), None, "a request in flight has no deadline");
        watch.saw_bytes();
        assert_eq!(watch.head_since.load(Relaxed), 0, "bytes of a body are not a head");
        drop(busy);
        let idle = watch.idle_since.load(Relaxed);
        assert_eq!(watch.deadline(10, 90), Some(idle + 90), "idle: the keep-alive timeout");
        watch.saw_bytes();
        let head = watch.head_since.load(Relaxed) - 1;
        assert_eq!(watch.deadline(10, 90), Some(head + 10), "a head begun: the header timeout");
        let _busy = watch.request();
        assert_eq!(watch.deadline(10, 90), None);
    }
}
