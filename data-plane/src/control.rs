//! The gRPC connection to the control plane, shared by the policy watch, the key-holder
//! endpoints and (with the quota work) leases and usage reports.
use std::time::Duration;

use router_proto::{pb::node_service_client::NodeServiceClient, tls::ClientTls};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

/// Adds the node token to every call.
#[derive(Clone)]
pub struct NodeToken(MetadataValue<Ascii>);

impl Interceptor for NodeToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A client of the control plane's `NodeService`; cheap to clone.
pub type NodeClient = NodeServiceClient<InterceptedService<Channel, NodeToken>>;

/// A lazily connecting client: the data plane starts (and keeps serving) without the control
/// plane; calls fail fast while it is away and the channel reconnects by itself.
pub fn node_client(url: &str, node_token: &str, tls: ClientTls<'_>) -> anyhow::Result<NodeClient> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| anyhow::anyhow!("bad control plane URL {url:?}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let endpoint = tls.apply(url, endpoint).map_err(anyhow::Error::msg)?;
    let token: MetadataValue<Ascii> = format!("Bearer {node_token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("the node token must be printable ASCII"))?;
    let channel = endpoint.connect_lazy();
    Ok(NodeServiceClient::new(InterceptedService::new(channel, NodeToken(token)))
        .max_decoding_message_size(256 * 1024 * 1024))
}
