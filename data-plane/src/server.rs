//! The HTTP server: routing, `x-request-id` and CORS on every answer, and a shutdown that
//! stops accepting and lets in-flight requests and streams finish (bounded).
use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{
        conn::auto,
        graceful::{GracefulShutdown, Watcher},
    },
};
use tokio::{
    net::{TcpListener, TcpSocket},
    sync::watch,
};

use router_startup::accept::Acceptor;

use crate::{
    app::App,
    body::{ResponseBody, empty},
    console,
    endpoints::{account, catalog, json, text},
    proxy::{
        self, auth,
        endpoint::Endpoint,
        error::{ApiError, ErrorCode},
    },
    watchdog::{self, Tracked, Watch, Watched},
};

/// Serves HTTP on the configured address until `shutdown` completes, then drains each
/// worker for up to the grace period.
///
/// Thread per core: each of `workers` threads runs its own single-threaded runtime, its own
/// listening socket on the same port (`SO_REUSEPORT`: the kernel spreads connections over
/// them) and its own upstream connection pool, so a request is served start to end on one
/// thread with no cross-thread wake-ups. On a 2-core machine this took the data plane from
/// 34 to 24 µs of CPU per request against a multi-threaded runtime (bench/README.md, run 3).
/// Shared state (policy, quota, spool, metrics) is behind `Arc`s and atomics as before.
pub async fn serve(app: App, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let listeners = bind(app.config.listen, app.config.worker_count())?;
    tracing::info!("{} worker threads", listeners.len());
    tracing::info!("listening on {}", listeners[0].local_addr()?);
    let (stop, stopping) = watch::channel(false);
    let mut finished = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let worker = App {
            http: crate::proxy::upstream::client(app.config.connect_timeout),
            sockets: Default::default(),
            ..app.clone()
        };
        let stopping = stopping.clone();
        let (done, finished_one) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        std::thread::Builder::new()
            .name(format!("router-worker-{index}"))
            .spawn(move || {
                let _ = done.send(run_worker(Arc::new(worker), listener, stopping));
            })
            .context("cannot start a worker thread")?;
        finished.push(finished_one);
    }
    // A worker that ends before the shutdown (its runtime could not start, say) takes the data
    // plane down with a clear error rather than leaving part of the connections unserved.
    let mut workers = futures::future::select_all(finished);
    let (result, rest) = tokio::select! {
        () = shutdown => {
            tracing::info!("shutting down: no new connections, waiting for in-flight requests");
            (Ok(()), None)
        }
        (ended, _, rest) = &mut workers => {
            let error = match ended {
                Ok(Err(error)) => error,
                Ok(Ok(())) | Err(_) => anyhow::anyhow!("a worker thread stopped on its own"),
            };
            tracing::error!("a worker thread ended early; shutting down");
            (Err(error), Some(rest))
        }
    };
    let _ = stop.send(true);
    for worker in rest.unwrap_or_else(|| workers.into_inner()) {
        if let Ok(Err(error)) = worker.await {
            tracing::error!(error = format!("{error:#}"), "a worker thread failed");
        }
    }
    result
}

/// `workers` listening sockets on `address`, all on the port the first one got.
fn bind(address: SocketAddr, workers: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let first = listen(address).with_context(|| format!("cannot listen on {address}"))?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(listen(bound).with_context(|| format!("cannot listen on {bound} again"))?);
    }
    Ok(listeners)
}

fn listen(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

/// One worker thread: its own runtime, accepting on its own socket until told to stop.
fn run_worker(
    app: Arc<App>,
    listener: std::net::TcpListener,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a worker runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        tokio::spawn(keep_timer_armed());
        accept(app, listener, async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        })
        .await;
        Ok(())
    })
}

/// Keeps a timer due within a second on this worker's runtime, forever.
///
/// Tokio's timer wakes its driver (a `write(2)` to an eventfd, then an extra `epoll_wait`)
/// whenever a new timer is due before the driver's next planned wake-up, and with no timer
/// armed every new one is. Each request arms its own (first-byte and idle timeouts, seconds
/// to minutes away), so without this each request on a quiet worker cost an extra wake-up.
async fn keep_timer_armed() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Accepts connections until `shutdown` completes, then drains for up to the grace.
///
/// A connection takes one of the `--max-connections` permits (shared by all workers) before it
/// is accepted, so beyond the cap new connections wait in the listen backlog; the acceptor
/// backs off while the process is out of descriptors.
async fn accept(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut acceptor = match Acceptor::new(listener) {
        Ok(acceptor) => acceptor,
        Err(error) => {
            tracing::error!(%error, "cannot accept on a worker's socket");
            return;
        }
    };
    let (header, keep_alive) = (app.config.header_read_timeout, app.config.keep_alive_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            accepted = acceptor.accept_when(|| Arc::clone(&app.connections).acquire_owned()) => accepted,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let _ = stream.set_nodelay(true);
        let watch = Watch::new();
        let io = Watched::new(stream, Arc::clone(&watch), permit);
        let connection = Connection {
            app: Arc::clone(&app),
            builder: builder.clone(),
            watcher: graceful.watcher(),
            watch,
            peer,
            timeouts: (header, keep_alive),
        };
        match &app.tls {
            None => {
                tokio::spawn(connection.serve(io, false));
            }
            // The handshake happens in the connection's task, within the header timeout: a
            // client that never finishes it holds its permit no longer than a slow head would.
            Some(tls) => {
                let handshake = tls.accept(io);
                tokio::spawn(async move {
                    match tokio::time::timeout(header, handshake).await {
                        Ok(Ok(io)) => connection.serve(io, true).await,
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake not done within the header timeout"),
                    }
                });
            }
        }
    }
    drop(acceptor);
    // WebSocket sessions are not hyper's connections any more: told apart, waited for alike.
    app.sockets.stop();
    let drained = async {
        tokio::join!(graceful.shutdown(), app.sockets.closed());
    };
    tokio::select! {
        () = drained => tracing::debug!("a worker's requests all finished"),
        () = tokio::time::sleep(app.config.shutdown_grace) => tracing::warn!("shutdown grace period over; closing what is left"),
    }
}

/// One accepted connection, to be served.
struct Connection {
    app: Arc<App>,
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    watch: Arc<Watch>,
    peer: SocketAddr,
    /// The header-read and keep-alive timeouts.
    timeouts: (Duration, Duration),
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 on `io` (`tls`: a TLS stream; its requests then carry
    /// `x-forwarded-proto: https`, as behind a terminating proxy) until the connection ends or
    /// overstays its timeouts.
    async fn serve<I>(self, io: I, tls: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { app, builder, watcher, watch, peer, timeouts: (header, keep_alive) } = self;
        let on_request = Arc::clone(&watch);
        let service = service_fn(move |mut request: Request<Incoming>| {
            let app = Arc::clone(&app);
            let busy = on_request.request();
            if tls {
                request.headers_mut().insert("x-forwarded-proto", HeaderValue::from_static("https"));
            }
            async move {
                let response = route(app, request, peer).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, busy)))
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
        match watchdog::guard(watcher.watch(connection), &watch, header, keep_alive).await {
            Some(Err(error)) => tracing::debug!(%error, "connection ended with an error"),
            Some(Ok(())) => {}
            None => tracing::debug!("connection closed: header or keep-alive timeout"),
        }
    }
}

/// The TLS acceptor for `--tls-cert` and `--tls-key` (PEM): HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "--tls-cert {}: no certificate in it", cert.display());
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("--tls-cert and --tls-key do not make a certificate and its key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A new request id (UUIDv7): one per HTTP request, and per request on a WebSocket.
pub(crate) fn request_id() -> Arc<str> {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Arc::from(&*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text))
}

/// Routes one request (from `peer`) and decorates its answer.
async fn route(app: Arc<App>, request: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
    let request_id = request_id();
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = dispatch(&app, request, Arc::clone(&request_id), peer).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    if let Some(allowed) = allowed_origin(&app.config.cors_origins, origin.as_ref()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-request-id"));
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

/// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
fn allowed_origin(configured: &str, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
    if configured.trim() == "*" {
        return Some(HeaderValue::from_static("*"));
    }
    let origin = origin?;
    let text = origin.to_str().ok()?;
    configured.split(',').map(str::trim).any(|o| o == text).then(|| origin.clone())
}

fn preflight(request: &Request<Incoming>) -> Response<ResponseBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    let asked = request.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        asked.unwrap_or(HeaderValue::from_static(
            "authorization, content-type, x-api-key, anthropic-version, anthropic-beta, openai-beta, x-csrf-token",
        )),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

async fn dispatch(
    app: &Arc<App>,
    request: Request<Incoming>,
    request_id: Arc<str>,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let method = request.method().clone();
    if method == Method::OPTIONS {
        return preflight(&request);
    }
    if method == Method::POST
        && let Some(endpoint) = Endpoint::from_path(without_doubled_v1(request.uri().path()))
    {
        return proxy::handle(app, endpoint, request, request_id, peer.ip()).await;
    }
    let path = without_doubled_v1(request.uri().path()).to_owned();
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => {
            text(StatusCode::OK, "text/plain; charset=utf-8", "Code Router\n")
        }
        (&Method::GET, "/v1/responses" | "/responses") => proxy::websocket::upgrade(app, request, peer.ip()),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        (&Method::GET, "/readyz") => {
            if app.is_ready() {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "not ready: no policy loaded yet\n",
                )
            }
        }
        (&Method::GET, "/metrics") => {
            let body = app.metrics.render(app.policy.load().version, app.reporter.depth());
            text(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        (&Method::GET, "/api/pricing") => json(StatusCode::OK, &catalog::pricing_json(&app.policy.load())),
        (&Method::GET, "/pricing") => {
            let lang = console::i18n::Lang::of_request(request.headers(), None);
            text(StatusCode::OK, "text/html; charset=utf-8", catalog::pricing_page(&app.policy.load(), lang))
        }
        _ if path == "/console" || path.starts_with("/console/") => {
            console::pages::handle(app, request, &path, peer).await
        }
        (&Method::POST, "/api/payments/stripe/webhook") => console::api::stripe_webhook(app, request).await,
        _ if path == "/api/account" || path.starts_with("/api/account/") => {
            console::api::handle(app, request, &path, peer).await
        }
        _ => keyed(app, request, &method, &path, peer.ip()).await,
    }
}

/// A path as if the client's base URL had no trailing `/v1`: `ANTHROPIC_BASE_URL=…/v1` (a
/// common mistake) makes Claude Code call `/v1/v1/messages`, which it reports as a problem
/// with the model.
fn without_doubled_v1(path: &str) -> &str {
    if path.starts_with("/v1/v1/") { &path[3..] } else { path }
}

/// Endpoints that need a key but are not proxied.
async fn keyed(
    app: &Arc<App>,
    request: Request<Incoming>,
    method: &Method,
    path: &str,
    peer: std::net::IpAddr,
) -> Response<ResponseBody> {
    let anthropic = request.headers().contains_key("anthropic-version");
    let known = matches!(
        (method, path),
        (
            &Method::GET,
            "/v1/models"
                | "/models"
                | "/api/me"
                | "/api/me/usage"
                | "/v1/dashboard/billing/subscription"
                | "/dashboard/billing/subscription"
                | "/v1/dashboard/billing/usage"
                | "/dashboard/billing/usage"
        ) | (&Method::POST, "/api/redeem")
    ) || (method == Method::GET && path.starts_with("/v1/models/"));
    if !known {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no route for {method} {}", proxy::error::echo(path)),
        )
        .response(anthropic);
    }
    let policy = app.policy.load_full();
    let now = crate::app::unix_micros();
    let caller = match auth::admit(&policy, request.headers(), now, &app.auth_backoff, peer) {
        Ok(caller) => caller,
        Err(error) => return error.response(anthropic),
    };
    let key_id = caller.key.id;
    let answer = match path {
        "/v1/models" | "/models" => Ok(catalog::list_models(&policy, &caller, request.headers())),
        "/api/me" => account::me(app, key_id).await,
        "/api/me/usage" => account::usage(app, key_id, request.uri().query()).await,
        "/v1/dashboard/billing/subscription" | "/dashboard/billing/subscription" => {
            account::subscription(app, key_id).await
        }
        "/v1/dashboard/billing/usage" | "/dashboard/billing/usage" => {
            account::billing_usage(app, key_id).await
        }
        "/api/redeem" => {
            let limit = app.config.max_body_bytes.min(64 * 1024);
            let (head, body) = request.into_parts();
            match proxy::request::read_body(&head.headers, body, limit, app.config.body_read_timeout).await {
                Ok(body) => account::redeem(app, key_id, &body).await,
                Err(error) => Err(error),
            }
        }
        _ => {
            let id = path.trim_start_matches("/v1/models/");
            catalog::get_model(&policy, &caller, id, anthropic).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::ModelNotFound,
                    format!("the model `{}` does not exist", proxy::error::echo(id)),
                )
            })
        }
    };
    answer.unwrap_or_else(|error| error.response(anthropic))
}
