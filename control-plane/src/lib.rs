//! Code Router's control plane: owns all state in one database (SQLite or PostgreSQL) and
//! serves the admin API (routerctl) and the plane API (data planes) over gRPC.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod password;
pub mod payments;
pub mod secrets;
pub mod server;
pub mod store;
