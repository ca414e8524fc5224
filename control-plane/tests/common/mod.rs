//! A database of the test's own: a fresh SQLite file, or a fresh PostgreSQL database that is
//! dropped afterwards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use rand::{Rng, distr::Alphanumeric};
use router_control_plane::db::Db;

/// PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("ROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A random lowercase alphanumeric string.
pub fn random_name(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(|c| char::from(c).to_ascii_lowercase()).collect()
}

/// Runs each listed `async fn NAME(Backend)` once on SQLite and once on PostgreSQL (the test
/// file imports `Backend`).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn sqlite() {
                    super::$name(super::Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn postgres() {
                    super::$name(super::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database.
    Postgres,
}

/// A migrated database, removed when dropped.
pub struct TestDb {
    /// The connected handle.
    pub db: Db,
    /// `DATABASE_URL`.
    pub url: String,
    dir: Option<PathBuf>,
    pg_name: Option<String>,
}

impl TestDb {
    /// Creates and migrates an empty database (needs the multi-threaded runtime).
    pub async fn create(backend: Backend) -> TestDb {
        TestDb::create_then(backend, async |_| {}).await
    }

    /// Creates an empty database, lets `before` do what it likes with it (given its URL:
    /// run some migrations, write rows), then connects, which applies the other migrations.
    pub async fn create_then(backend: Backend, before: impl AsyncFnOnce(&str)) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("router-cp-test-{}", random_name(12)));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}", dir.join("router.db").display());
                before(&url).await;
                let db = Db::connect(&url).await.unwrap();
                TestDb { db, url, dir: Some(dir), pg_name: None }
            }
            Backend::Postgres => {
                let name = format!("t_{}", random_name(16));
                let admin = postgres_admin_url();
                let mut conn = AsyncPgConnection::establish(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin} ({e})"));
                conn.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                before(&url).await;
                let db = Db::connect(&url).await.unwrap();
                TestDb { db, url, dir: None, pg_name: Some(name) }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take() {
            // Drop may run inside a runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let mut conn = AsyncPgConnection::establish(&postgres_admin_url()).await?;
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
                    anyhow::Ok(())
                })
            })
            .join();
        }
    }
}
