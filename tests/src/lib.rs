//! Harness for the end-to-end tests: real binaries on ephemeral ports, each test with its own
//! database (a fresh SQLite file, or a fresh PostgreSQL database dropped afterwards).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod control_plane;
mod data_plane;
mod db;
mod gateway;
mod grpc;
pub mod http_client;
pub mod mock;
mod process;
mod wait;

pub use control_plane::{ControlPlane, nanos, routerctl, routerctl_json};
pub use data_plane::DataPlane;
pub use db::{Backend, TestDb, postgres_admin_url};
pub use gateway::{Gateway, GatewayBuilder, Stack};
pub use grpc::{Authed, Bearer, admin_client, connect, node_client};
pub use process::{Process, bin, bin_dir};
pub use wait::eventually;

use rand::{Rng, distr::Alphanumeric};

/// A random lowercase alphanumeric string.
pub fn random_name(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(|c| char::from(c).to_ascii_lowercase()).collect()
}
