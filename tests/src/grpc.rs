//! gRPC clients of the control plane's admin and node services, presenting a token.
/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A gRPC channel that sends `token`.
pub type Authed = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Connects to `endpoint`, presenting `token` (empty: no authorization header at all).
pub async fn connect(endpoint: &str, token: &str) -> anyhow::Result<Authed> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect().await?;
    let value = if token.is_empty() { "Bearer".parse()? } else { format!("Bearer {token}").parse()? };
    Ok(tonic::service::interceptor::InterceptedService::new(channel, Bearer(value)))
}

/// An admin client presenting `token`.
pub async fn admin_client(
    endpoint: &str,
    token: &str,
) -> anyhow::Result<router_proto::pb::admin_service_client::AdminServiceClient<Authed>> {
    Ok(router_proto::pb::admin_service_client::AdminServiceClient::new(connect(endpoint, token).await?))
}

/// A plane client presenting `token`.
pub async fn node_client(
    endpoint: &str,
    token: &str,
) -> anyhow::Result<router_proto::pb::node_service_client::NodeServiceClient<Authed>> {
    Ok(router_proto::pb::node_service_client::NodeServiceClient::new(connect(endpoint, token).await?))
}
