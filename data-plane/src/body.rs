//! The response body type every handler returns, and helpers to build one.
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Any response body: whole, empty, or a stream passed through from upstream.
pub type ResponseBody = BoxBody<Bytes, std::io::Error>;

/// A body of exactly these bytes.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ResponseBody {
    Empty::new().map_err(|never: Infallible| match never {}).boxed()
}
