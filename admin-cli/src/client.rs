//! The connection to the control plane's AdminService, with the admin token on every call.
use std::time::Duration;

use router_proto::{pb::admin_service_client::AdminServiceClient, tls::ClientTls};
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use crate::error::{Error, error_chain};

/// How long to wait for the TCP connection, so a wrong endpoint fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the connection to be usable (TCP plus the HTTP/2 handshake).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one admin call may take; admin calls are small, so this only catches a hung server.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest answer accepted.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// An AdminService client that sends the admin token with every request.
pub type Admin = AdminServiceClient<InterceptedService<Channel, BearerAuth>>;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub struct BearerAuth(MetadataValue<Ascii>);

impl BearerAuth {
    /// The header value for `token`; refuses a token that cannot travel in a header.
    pub fn new(token: &str) -> Result<BearerAuth, Error> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Error::MissingToken);
        }
        let mut value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
            Error::Invalid("the admin token contains characters not allowed in a header".into())
        })?;
        // Keeps the token out of any debug output of the request.
        value.set_sensitive(true);
        Ok(BearerAuth(value))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// Checks that `endpoint` is an `http://` or `https://` URL and turns it into a tonic endpoint.
pub fn endpoint(endpoint: &str) -> Result<Endpoint, Error> {
    let invalid = || {
        Error::Invalid(format!(
            "invalid --endpoint {endpoint:?}: expected a URL such as http://127.0.0.1:50051"
        ))
    };
    // Without a scheme the URL would parse as something else and fail obscurely later.
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(invalid());
    }
    Ok(Endpoint::from_shared(endpoint.to_owned())
        .map_err(|_| invalid())?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT))
}

/// Connects to the control plane at `url` and authenticates every call with `token`.
pub async fn connect(url: &str, token: &str, tls: ClientTls<'_>) -> Result<Admin, Error> {
    let auth = BearerAuth::new(token)?;
    let endpoint = tls.apply(url, endpoint(url)?).map_err(Error::Invalid)?;
    let unreachable = |detail: String| Error::Unreachable { endpoint: url.to_owned(), detail };
    let channel = tokio::time::timeout(HANDSHAKE_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| unreachable(format!("no answer within {}s", HANDSHAKE_TIMEOUT.as_secs())))?
        .map_err(|error| unreachable(error_chain(&error)))?;
    // A page of 10,000 usage records can pass tonic's default 4 MiB.
    Ok(AdminServiceClient::with_interceptor(channel, auth).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_sent_as_bearer() {
        let mut auth = BearerAuth::new("s3cret").expect("a valid token");
        let request = auth.call(Request::new(())).expect("the interceptor never refuses");
        assert_eq!(
            request.metadata().get("authorization").map(|value| value.to_str().ok()),
            Some(Some("Bearer s3cret"))
        );
        assert!(matches!(BearerAuth::new("  "), Err(Error::MissingToken)));
        assert!(matches!(BearerAuth::new("bad\ntoken"), Err(Error::Invalid(_))));
    }

    #[test]
    fn endpoints_need_a_scheme() {
        assert!(endpoint("http://127.0.0.1:50051").is_ok());
        assert!(endpoint("127.0.0.1:50051").is_err());
        assert!(endpoint("http://bad host").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_clear_error() {
        // Port 1 on localhost is closed on any sane machine: the connection is refused at once.
        let Err(error) = connect("http://127.0.0.1:1", "t", ClientTls::default()).await else {
            panic!("connected to a closed port")
        };
        let message = error.to_string();
        assert!(message.starts_with("cannot reach the control plane at http://127.0.0.1:1: "));
    }
}
