//! End-to-end tests: the real `router-control-plane` and `routerctl` binaries, on SQLite and
//! on PostgreSQL, each test with a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

/// Runs each listed `async fn NAME(Backend)` once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() {
                    super::$name(router_tests::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    super::$name(router_tests::Backend::Postgres).await;
                }
            }
        )*
    };
}

mod admin;
mod affinity;
mod agents;
mod aliases;
mod console;
mod console_api;
mod console_pages;
mod conversion;
mod convert_http;
mod health;
mod hostile;
mod import;
mod ledger;
mod lifecycle;
mod limits;
mod log_secrets;
mod payments;
mod protocols;
mod proxy;
mod quickstart;
mod quota;
mod quota_dp;
mod sdk;
mod security;
mod setup;
mod tls;
mod usage;
mod ws;
