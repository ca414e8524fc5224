//! A database of each test's own: a fresh SQLite file, or a fresh PostgreSQL database dropped
//! afterwards.
use std::path::PathBuf;

use anyhow::Context;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::random_name;

/// PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("ROUTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Which database backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in a temporary file.
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// A database of the test's own, removed when dropped.
pub struct TestDb {
    /// The backend.
    pub backend: Backend,
    /// `DATABASE_URL` for the control plane.
    pub url: String,
    /// A temporary folder (SQLite file, spools, logs).
    pub dir: PathBuf,
    pg_name: Option<String>,
}

impl TestDb {
    /// Creates an empty database.
    pub async fn create(backend: Backend) -> anyhow::Result<TestDb> {
        let dir = std::env::temp_dir().join(format!("router-test-{}", random_name(12)));
        std::fs::create_dir_all(&dir)?;
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.join("router.db").display());
                Ok(TestDb { backend, url, dir, pg_name: None })
            }
            Backend::Postgres => {
                let name = format!("t_{}", random_name(16));
                let admin = postgres_admin_url();
                let mut conn = AsyncPgConnection::establish(&admin)
                    .await
                    .with_context(|| format!("cannot reach PostgreSQL at {admin} (is it running?)"))?;
                conn.batch_execute(&format!("CREATE DATABASE {name}")).await?;
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                Ok(TestDb { backend, url, dir, pg_name: Some(name) })
            }
        }
    }

    /// Every row of every table, as text: for checking that a secret is stored nowhere.
    pub async fn dump(&self) -> anyhow::Result<String> {
        match self.backend {
            Backend::Sqlite => {
                let mut text = Vec::new();
                for entry in std::fs::read_dir(&self.dir)? {
                    let path = entry?.path();
                    if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("router.db")) {
                        text.extend(std::fs::read(&path)?);
                    }
                }
                Ok(String::from_utf8_lossy(&text).into_owned())
            }
            Backend::Postgres => {
                #[derive(diesel::QueryableByName)]
                struct Row {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    text: String,
                }
                use diesel_async::RunQueryDsl;
                let mut conn = AsyncPgConnection::establish(&self.url).await?;
                let tables: Vec<Row> =
                    diesel::sql_query("SELECT tablename AS text FROM pg_tables WHERE schemaname = 'public'")
                        .load(&mut conn)
                        .await?;
                let mut dump = String::new();
                for table in tables {
                    let rows: Vec<Row> = diesel::sql_query(format!(
                        "SELECT row_to_json(t)::text AS text FROM \"{}\" t",
                        table.text
                    ))
                    .load(&mut conn)
                    .await?;
                    for row in rows {
                        dump.push_str(&row.text);
                        dump.push('\n');
                    }
                }
                Ok(dump)
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop runs outside any runtime guarantee: use a thread with its own.
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
