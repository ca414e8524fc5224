//! The accept loop both planes share: it never fails, never spins and never floods the log.
//!
//! When the process (`EMFILE`) or the system (`ENFILE`) runs out of descriptors, or the kernel
//! out of memory for sockets (`ENOMEM`, `ENOBUFS`), `accept(2)` fails at once for as long as
//! the shortage lasts. Retrying at once burns a core and writes a warning per try; instead the
//! acceptor sleeps 10 ms, doubling to 1 s, and warns once per such episode. Connections that
//! arrive meanwhile wait in the listen backlog.
use std::{future::Future, io, net::SocketAddr, time::Duration};

use futures::Stream;
use tokio::{
    io::unix::AsyncFd,
    net::{TcpListener, TcpStream},
};

/// The first pause after a failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two tries.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Accepts from one listener, backing off while accepting fails.
#[derive(Debug)]
pub struct Acceptor {
    listener: AsyncFd<std::net::TcpListener>,
    /// The next pause, when the last accept failed.
    pause: Option<Duration>,
    /// Failures in the current episode.
    failures: u64,
}

impl Acceptor {
    /// Accepts from `listener`.
    pub fn new(listener: TcpListener) -> io::Result<Acceptor> {
        // Non-blocking, as tokio leaves it. `AsyncFd::new` is deprecated because an arbitrary
        // `AsRawFd` may close or swap its descriptor while registered; a `TcpListener` owns
        // its descriptor for its whole life, which is what `register` asks of its caller (and
        // this crate forbids `unsafe`).
        #[allow(deprecated)]
        let listener = AsyncFd::new(listener.into_std()?)?;
        Ok(Acceptor { listener, pause: None, failures: 0 })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.get_ref().local_addr()
    }

    /// The next connection.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let (stream, peer, ()) = self.accept_when(|| async {}).await;
        (stream, peer)
    }

    /// The next connection, accepted only once a connection is waiting on this listener and
    /// a future of `ready` has completed (a permit, say: while it is pending, connections
    /// wait in the listen backlog). Errors that concern one connection (it was reset before
    /// it was accepted) are skipped; any other error starts or continues a back-off episode.
    pub async fn accept_when<P, F: Future<Output = P>>(
        &mut self,
        mut ready: impl FnMut() -> F,
    ) -> (TcpStream, SocketAddr, P) {
        loop {
            // A permit is taken only when a connection is waiting here, and given back when
            // there was none after all, so that a listener with nothing to accept holds none
            // (several listeners may share one cap).
            let accepted = match self.listener.readable().await {
                Ok(mut guard) => {
                    let ready = ready().await;
                    match guard.try_io(|listener| listener.get_ref().accept()) {
                        Ok(accepted) => accepted.map(|accepted| (accepted, ready)),
                        Err(_would_block) => continue,
                    }
                }
                Err(error) => Err(error),
            };
            let error = match accepted.and_then(|((stream, peer), ready)| {
                stream.set_nonblocking(true)?;
                Ok((TcpStream::from_std(stream)?, peer, ready))
            }) {
                Ok((stream, peer, ready)) => {
                    if self.pause.take().is_some() {
                        tracing::info!(failures = self.failures, "accepting connections again");
                        self.failures = 0;
                    }
                    return (stream, peer, ready);
                }
                Err(error) => error,
            };
            if is_per_connection(&error) {
                tracing::debug!(%error, "a connection ended before it was accepted");
                continue;
            }
            let pause = match self.pause {
                None => {
                    tracing::warn!(
                        %error,
                        "cannot accept connections; backing off (new connections wait in the listen \
                         backlog)"
                    );
                    FIRST_PAUSE
                }
                Some(pause) => (pause * 2).min(LONGEST_PAUSE),
            };
            self.failures += 1;
            self.pause = Some(pause);
            tokio::time::sleep(pause).await;
        }
    }

    /// The connections as a stream that never ends and never yields an error (for servers
    /// that take a stream of connections, such as tonic's), each with `TCP_NODELAY` and, when
    /// `keepalive` is given, TCP keep-alive probes after that much idle time.
    pub fn into_stream(
        self,
        keepalive: Option<Duration>,
    ) -> impl Stream<Item = io::Result<TcpStream>> + Send + 'static {
        futures::stream::unfold(self, move |mut acceptor| async move {
            let (stream, _) = acceptor.accept().await;
            let _ = stream.set_nodelay(true);
            if let Some(idle) = keepalive {
                let probes = socket2::TcpKeepalive::new().with_time(idle).with_interval(idle);
                if let Err(error) = socket2::SockRef::from(&stream).set_tcp_keepalive(&probes) {
                    tracing::debug!(%error, "cannot set TCP keep-alive");
                }
            }
            Some((Ok(stream), acceptor))
        })
    }
}

/// Whether an accept error concerns only the connection being accepted.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Raises this process's descriptor soft limit to its hard limit; returns the limit now in
/// force (the figure to log), or why it could not be read or raised.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepts_and_skips_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut acceptor = Acceptor::new(listener).expect("acceptor");
        let client = tokio::spawn(TcpStream::connect(address));
        let (_, peer) = acceptor.accept().await;
        let client = client.await.expect("join").expect("connect");
        assert_eq!(peer, client.local_addr().expect("local"));
    }

    #[test]
    fn the_limit_can_be_read() {
        assert!(raise_descriptor_limit().expect("rlimit") >= 3);
    }
}
