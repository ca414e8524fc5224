//! The spool never blocks behind one record: a control plane that keeps refusing a batch (an
//! old one, or a report no version accepts) gets its reports one at a time, the refused ones
//! are set aside in the spool directory (counted in metrics) and every other one is delivered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashSet,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use router_data_plane::{control, metrics::Metrics, report::Reporter};
use router_proto::pb;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Response, Status, Streaming,
    codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http},
    server::{Grpc, NamedService, StreamingService},
};

/// A control plane that only takes usage reports: it refuses (and ends the stream on) any batch
/// holding a report of the model `poison`, like a control plane that cannot record it.
#[derive(Clone, Default)]
struct FakeControlPlane {
    recorded: Arc<Mutex<HashSet<String>>>,
}

impl NamedService for FakeControlPlane {
    const NAME: &'static str = "router.v1.NodeService";
}

impl StreamingService<pb::UsageBatch> for FakeControlPlane {
    type Response = pb::UsageAck;
    type ResponseStream = ReceiverStream<Result<pb::UsageAck, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<pb::UsageBatch>>) -> Self::Future {
        let recorded = Arc::clone(&self.recorded);
        Box::pin(async move {
            let mut batches = request.into_inner();
            let (acks, receiver) = mpsc::channel(16);
            tokio::spawn(async move {
                while let Ok(Some(batch)) = batches.message().await {
                    if batch.reports.iter().any(|r| r.model == "poison") {
                        let _ = acks.send(Err(Status::invalid_argument("a poison report"))).await;
                        return;
                    }
                    let count = u32::try_from(batch.reports.len()).unwrap();
                    recorded.lock().unwrap().extend(batch.reports.into_iter().map(|r| r.request_id));
                    let ack =
                        pb::UsageAck { batch_id: batch.batch_id, recorded: count, ..pb::UsageAck::default() };
                    if acks.send(Ok(ack)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(ReceiverStream::new(receiver)))
        })
    }
}

impl<B> Service<http::Request<B>> for FakeControlPlane
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            if request.uri().path() != "/router.v1.NodeService/ReportUsage" {
                return Ok(Status::unimplemented("only usage reports").into_http());
            }
            Ok(Grpc::new(tonic_prost::ProstCodec::default()).streaming(service, request).await)
        })
    }
}

fn report(request_id: String, model: &str) -> pb::UsageReport {
    pb::UsageReport {
        request_id,
        key_id: 1,
        model: model.into(),
        status: "ok".into(),
        ..pb::UsageReport::default()
    }
}

fn metric(metrics: &Metrics, name: &str) -> Option<u64> {
    metrics
        .render(0, 0)
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reports_are_set_aside_and_the_rest_delivered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let fake = FakeControlPlane::default();
    let recorded = Arc::clone(&fake.recorded);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(fake)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let spool = std::env::temp_dir().join(format!("spool-isolation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let client = control::node_client(&format!("http://{address}"), "token", Default::default()).unwrap();
    let metrics = Arc::new(Metrics::default());
    let (_stop, stopped) = watch::channel(false);
    let reporter = Reporter::start(client, "dp-test".into(), &spool, Arc::clone(&metrics), stopped).unwrap();
    let mut honest = Vec::new();
    for i in 0..40 {
        let poison = i == 7 || i == 23;
        let id = format!("request-{i:02}");
        reporter.record(report(id.clone(), if poison { "poison" } else { "gpt" })).unwrap();
        if !poison {
            honest.push(id);
        }
    }
    assert!(
        reporter.drained(Duration::from_secs(30)).await,
        "the spool is stuck at depth {}",
        reporter.depth()
    );
    let delivered = recorded.lock().unwrap().clone();
    assert_eq!(delivered, honest.into_iter().collect::<HashSet<_>>(), "every other report was delivered");
    assert_eq!(metric(&metrics, "router_usage_reports_set_aside_total"), Some(2));
    // The refused ones are kept, in the spool's record format, for an operator.
    let kept = std::fs::read(spool.join(router_data_plane::report::spool::SET_ASIDE)).unwrap();
    assert!(kept.windows(10).any(|w| w == b"request-07"));
    assert!(kept.windows(10).any(|w| w == b"request-23"));
    // New reports are batched again and go out.
    reporter.record(report("after".into(), "gpt")).unwrap();
    assert!(reporter.drained(Duration::from_secs(10)).await);
    assert!(recorded.lock().unwrap().contains("after"));
    let _ = std::fs::remove_dir_all(&spool);
}
