//! Reading their database: SQLite (`sqlite:///path`), PostgreSQL (`postgres://…`) or MySQL
//! (`mysql://…`), with diesel as the control plane uses it.
//!
//! Their schemas drift between releases (columns come and go), so each table's columns are
//! looked up first and a column that is missing reads as empty. Every value is read as text
//! (cast in SQL) and parsed here, so one query shape serves the three backends.
use std::collections::BTreeMap;

use diesel::{QueryableByName, sql_types::Nullable, sql_types::Text};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, sync_connection_wrapper::SyncConnectionWrapper,
};

use super::{Flavor, TheirChannel, TheirCode, TheirData, TheirToken, TheirUser};
use crate::error::Error;

/// Up to twelve text cells of a row (`c0`…`c11`), `NULL` as `None`.
#[derive(Debug, QueryableByName)]
struct Cells {
    #[diesel(sql_type = Nullable<Text>)]
    c0: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c1: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c2: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c3: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c4: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c5: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c6: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c7: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c8: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c9: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c10: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    c11: Option<String>,
}

impl Cells {
    fn text(&self, index: usize) -> String {
        let cells = [
            &self.c0, &self.c1, &self.c2, &self.c3, &self.c4, &self.c5, &self.c6, &self.c7, &self.c8,
            &self.c9, &self.c10, &self.c11,
        ];
        cells.get(index).and_then(|c| c.as_deref()).unwrap_or("").to_owned()
    }

    fn int(&self, index: usize) -> i64 {
        let text = self.text(index);
        let text = text.trim();
        // Some drivers print integral floats with a fraction (`5.0`).
        text.parse().ok().or_else(|| text.strip_suffix(".0").and_then(|t| t.parse().ok())).unwrap_or(0)
    }

    fn flag(&self, index: usize) -> bool {
        matches!(self.text(index).trim(), "1" | "t" | "true" | "TRUE")
    }
}

#[derive(Debug, QueryableByName)]
struct ColumnName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// How the backends spell what differs.
#[derive(Debug, Clone, Copy)]
struct Dialect {
    quote: char,
    text: &'static str,
}

impl Dialect {
    fn quoted(self, name: &str) -> String {
        format!("{q}{name}{q}", q = self.quote)
    }

    /// `SELECT` of `columns` as `c0…` (a missing one as NULL), padded to twelve cells.
    fn select(self, table: &str, columns: &[&str], present: &[String], only_live: bool) -> String {
        let cells: Vec<String> = (0..12)
            .map(|i| match columns.get(i) {
                Some(column) if present.iter().any(|p| p == column) => {
                    format!("CAST({} AS {}) AS c{i}", self.quoted(column), self.text)
                }
                _ => format!("CAST(NULL AS {}) AS c{i}", self.text),
            })
            .collect();
        let mut sql = format!("SELECT {} FROM {}", cells.join(", "), self.quoted(table));
        // gorm's soft delete: a row with `deleted_at` set is gone for them.
        if only_live && present.iter().any(|p| p == "deleted_at") {
            sql.push_str(&format!(" WHERE {} IS NULL", self.quoted("deleted_at")));
        }
        sql.push_str(&format!(" ORDER BY {}", self.quoted(columns[0])));
        sql
    }
}

const CHANNEL_COLUMNS: [&str; 12] = [
    "id",
    "type",
    "key",
    "status",
    "name",
    "weight",
    "base_url",
    "models",
    "group",
    "model_mapping",
    "priority",
    "other",
];
const USER_COLUMNS: [&str; 5] = ["id", "username", "status", "quota", "group"];
const CODE_COLUMNS: [&str; 5] = ["id", "key", "status", "quota", "expired_time"];

fn token_columns(flavor: Flavor) -> [&'static str; 11] {
    let models = match flavor {
        Flavor::OneApi => "models",
        Flavor::NewApi => "model_limits",
    };
    [
        "id",
        "user_id",
        "key",
        "status",
        "name",
        "expired_time",
        "remain_quota",
        "unlimited_quota",
        models,
        "group",
        "model_limits_enabled",
    ]
}

fn rows_to_data(flavor: Flavor, tables: Tables) -> TheirData {
    let channels = tables
        .channels
        .iter()
        .map(|r| TheirChannel {
            id: r.int(0),
            kind: r.int(1),
            key: r.text(2),
            status: r.int(3),
            name: r.text(4),
            weight: r.int(5),
            base_url: r.text(6),
            models: r.text(7),
            group: r.text(8),
            model_mapping: r.text(9),
            priority: r.int(10),
            other: r.text(11),
        })
        .collect();
    let users = tables
        .users
        .iter()
        .map(|r| TheirUser {
            id: r.int(0),
            username: r.text(1),
            status: r.int(2),
            quota: r.int(3),
            group: r.text(4),
        })
        .collect();
    let tokens = tables
        .tokens
        .iter()
        .map(|r| TheirToken {
            id: r.int(0),
            user_id: r.int(1),
            key: r.text(2),
            status: r.int(3),
            name: r.text(4),
            expired_time: r.int(5),
            remain_quota: r.int(6),
            unlimited_quota: r.flag(7),
            // new-api keeps a model list that only counts while its switch is on.
            models: if flavor == Flavor::OneApi || r.flag(10) { r.text(8) } else { String::new() },
            group: r.text(9),
        })
        .collect();
    let codes = tables
        .codes
        .iter()
        .map(|r| TheirCode {
            id: r.int(0),
            key: r.text(1),
            status: r.int(2),
            quota: r.int(3),
            expired_time: r.int(4),
        })
        .collect();
    let options = tables.options.iter().map(|r| (r.text(0), r.text(1))).collect::<BTreeMap<_, _>>();
    TheirData { channels, users, tokens, codes, options }
}

#[derive(Default)]
struct Tables {
    channels: Vec<Cells>,
    users: Vec<Cells>,
    tokens: Vec<Cells>,
    codes: Vec<Cells>,
    options: Vec<Cells>,
}

/// Reads every table the import maps, on any diesel-async connection.
macro_rules! read_tables {
    ($conn:expr, $dialect:expr, $columns_sql:expr, $flavor:expr) => {{
        let conn = $conn;
        let dialect: Dialect = $dialect;
        let mut tables = Tables::default();
        let wanted: [(&str, Vec<&str>, bool); 5] = [
            ("channels", CHANNEL_COLUMNS.to_vec(), false),
            ("users", USER_COLUMNS.to_vec(), true),
            ("tokens", token_columns($flavor).to_vec(), true),
            ("redemptions", CODE_COLUMNS.to_vec(), true),
            ("options", vec!["key", "value"], false),
        ];
        for (table, columns, only_live) in wanted {
            let present: Vec<String> = diesel::sql_query($columns_sql(table))
                .load::<ColumnName>(conn)
                .await
                .map_err(|e| Error::Invalid(format!("cannot read the columns of {table}: {e}")))?
                .into_iter()
                .map(|c| c.name.to_lowercase())
                .collect();
            if present.is_empty() {
                return Err(Error::Invalid(format!(
                    "their database has no table {table}: is this a new-api or one-api database?"
                )));
            }
            let rows: Vec<Cells> = diesel::sql_query(dialect.select(table, &columns, &present, only_live))
                .load(conn)
                .await
                .map_err(|e| Error::Invalid(format!("cannot read {table}: {e}")))?;
            match table {
                "channels" => tables.channels = rows,
                "users" => tables.users = rows,
                "tokens" => tables.tokens = rows,
                "redemptions" => tables.codes = rows,
                _ => tables.options = rows,
            }
        }
        Ok::<Tables, Error>(tables)
    }};
}

/// Reads their database at `url`.
pub async fn read(flavor: Flavor, url: &str) -> Result<TheirData, Error> {
    let cannot = |e: &dyn std::fmt::Display| Error::Invalid(format!("cannot open {}: {e}", redact(url)));
    let tables = if let Some(path) = url.strip_prefix("sqlite://") {
        if !std::path::Path::new(path).is_file() {
            return Err(Error::Invalid(format!("no SQLite database at {path}")));
        }
        let mut conn = SyncConnectionWrapper::<diesel::SqliteConnection>::establish(path)
            .await
            .map_err(|e| cannot(&e))?;
        let dialect = Dialect { quote: '"', text: "TEXT" };
        read_tables!(
            &mut conn,
            dialect,
            |t: &str| format!("SELECT name AS name FROM pragma_table_info('{t}')"),
            flavor
        )?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut conn = AsyncPgConnection::establish(url).await.map_err(|e| cannot(&e))?;
        let dialect = Dialect { quote: '"', text: "TEXT" };
        let columns = |t: &str| {
            format!(
                "SELECT column_name::text AS name FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{t}'"
            )
        };
        read_tables!(&mut conn, dialect, columns, flavor)?
    } else if url.starts_with("mysql://") {
        let mut conn = diesel_async::AsyncMysqlConnection::establish(url).await.map_err(|e| cannot(&e))?;
        let dialect = Dialect { quote: '`', text: "CHAR" };
        let columns = |t: &str| {
            format!(
                "SELECT CAST(column_name AS CHAR) AS name FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = '{t}'"
            )
        };
        read_tables!(&mut conn, dialect, columns, flavor)?
    } else {
        return Err(Error::Invalid(format!(
            "unsupported --from {:?}: expected sqlite:///path, postgres://… or mysql://…",
            redact(url)
        )));
    };
    Ok(rows_to_data(flavor, tables))
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
