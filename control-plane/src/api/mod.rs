//! The gRPC edge: authentication, the two services, and conversions to and from `router.v1`.
pub mod admin;
pub mod auth;
pub mod convert;
pub mod feed;
pub mod node;
pub mod usage;
