//! A bare forwarder: no auth, no parsing. Method, path, headers and body go upstream
//! unchanged and the answer streams back; its cost is the physical limit a gateway is
//! compared against.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::cli::ForwardArgs;

type Upstream = Client<HttpConnector, Incoming>;

struct Forwarder {
    client: Upstream,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
}

/// Serves until the process is stopped; prints `listening on ADDR` on stdout once bound.
pub async fn serve(args: ForwardArgs) -> anyhow::Result<()> {
    let upstream: Uri = args.upstream.parse()?;
    let scheme = upstream.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
    let authority =
        upstream.authority().cloned().ok_or_else(|| anyhow::anyhow!("--upstream needs a host"))?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1024).build(connector);
    let forwarder = Arc::new(Forwarder { client, scheme, authority });

    let listener = TcpListener::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let forwarder = Arc::clone(&forwarder);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let forwarder = Arc::clone(&forwarder);
                async move { forwarder.forward(request).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Forwarder {
    async fn forward(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Either<Incoming, Full<Bytes>>>, std::convert::Infallible> {
        let (mut parts, body) = request.into_parts();
        let mut uri = Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone());
        if let Some(path) = parts.uri.path_and_query() {
            uri = uri.path_and_query(path.clone());
        }
        match uri.build() {
            Ok(uri) => parts.uri = uri,
            Err(_) => return Ok(bad_gateway()),
        }
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => Ok(response.map(Either::Left)),
            Err(_) => Ok(bad_gateway()),
        }
    }
}

fn bad_gateway() -> Response<Either<Incoming, Full<Bytes>>> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(b"bad gateway"))));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
