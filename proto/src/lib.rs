//! The wire contract between Code Router's planes and the value types both sides must agree on.
//!
//! `pb` is generated from `router/v1/router.proto` at build time (protox, no system `protoc`).
//! `money` and `cost` are here, beside the contract, because the control plane, the data plane
//! and routerctl must compute and print money identically.
#![forbid(unsafe_code)]

pub mod codec;
pub mod cost;
pub mod money;
pub mod protocols;
pub mod tls;

pub use cost::{CostError, Tariff, TokenPrices, TokenUsage, cost};
pub use money::{AmountError, Money, Multiplier};

/// Generated protobuf messages and gRPC services of package `router.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("router.v1");

    /// Encoded descriptor set of `router.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/router_descriptor.bin"));
}
