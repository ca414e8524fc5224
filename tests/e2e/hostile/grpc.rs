//! Malformed protobuf on the control plane's gRPC services is the client's fault:
//! `INVALID_ARGUMENT`, never `INTERNAL`, on the admin and the plane API, unary and streaming.
use bytes::{BufMut, Bytes};
use router_tests::{Backend, ControlPlane, TestDb, connect};
use tonic::{
    Code,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Sends raw bytes as the request message; never decodes an answer (only the status matters).
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put(item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        use bytes::Buf;
        buf.advance(buf.remaining());
        Ok(Some(()))
    }
}

/// The status of calling `path` (unary when `streaming` is false) with `body` as the message.
async fn call(endpoint: &str, token: &str, path: &'static str, body: &'static [u8], streaming: bool) -> Code {
    let mut grpc = tonic::client::Grpc::new(connect(endpoint, token).await.unwrap());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(path);
    let request = tonic::Request::new(Bytes::from_static(body));
    let result = if streaming {
        grpc.server_streaming(request, path, RawCodec).await.map(|_| ())
    } else {
        grpc.unary(request, path, RawCodec).await.map(|_| ())
    };
    result.err().map_or(Code::Ok, |status| status.code())
}

/// Not protobuf: a field tag with wire type 7 (none exists), then a truncated length.
const GARBAGE: &[u8] = b"\xff\xff\xff\xff\x0f\x0a\xff";

#[tokio::test(flavor = "multi_thread")]
async fn malformed_protobuf_is_invalid_argument() {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let cp = ControlPlane::start(&db).unwrap();
    let (admin, node) = (cp.admin_token.as_str(), cp.node_token.as_str());
    for (token, path, streaming) in [
        (admin, "/router.v1.AdminService/ListChannels", false),
        (admin, "/router.v1.AdminService/AddAccount", false),
        (node, "/router.v1.NodeService/GetKeyStatus", false),
        (node, "/router.v1.NodeService/WatchPolicy", true),
    ] {
        assert_eq!(
            call(&cp.endpoint, token, path, GARBAGE, streaming).await,
            Code::InvalidArgument,
            "{path}"
        );
    }
    // The same call with a well-formed (empty) message is served: the refusal was the bytes.
    assert_eq!(call(&cp.endpoint, admin, "/router.v1.AdminService/ListChannels", b"", false).await, Code::Ok);
}
