//! The usage quarantine: reports refused as invalid (no retry could record them), kept with
//! the reason and the report as it arrived, so that they never block the reports queued behind
//! them and an operator can still see them (`routerctl usage --quarantined`).
use super::keys::sha256_hex;
use crate::{db::Db, db::schema::usage_quarantine, error::StoreResult, with_conn, write_tx};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// Longest text kept of a refused report's request id or node id (the raw report keeps it all).
const MAX_KEPT_TEXT: usize = 200;

/// A refused report to set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused<'a> {
    /// Its request id, as sent.
    pub request_id: &'a str,
    /// Its key id, as sent.
    pub key_id: i64,
    /// Why it was refused.
    pub reason: &'a str,
    /// The report as received (protobuf).
    pub raw: Vec<u8>,
}

/// A quarantined report as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = usage_quarantine, check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct QuarantineRow {
    /// Row id (insertion order).
    pub id: i64,
    /// The data plane that sent it.
    pub node_id: String,
    /// Its request id (printable, cut to 200 characters).
    pub request_id: String,
    /// Its key id.
    pub key_id: i64,
    /// Why it was refused.
    pub reason: String,
    /// The report as received (protobuf `UsageReport`).
    pub report: Vec<u8>,
    /// Unix micros.
    pub received_at: i64,
}

/// Text that any backend stores: control characters (NUL among them) replaced, cut short.
fn printable(text: &str) -> String {
    text.chars().take(MAX_KEPT_TEXT).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

/// Sets `refused` reports from data plane `node_id` aside; a report already there (a
/// replayed batch) is kept once. Returns how many were new.
pub async fn put(db: &Db, node_id: &str, refused: &[Refused<'_>], now: i64) -> StoreResult<usize> {
    if refused.is_empty() {
        return Ok(0);
    }
    let node_id = printable(node_id);
    write_tx!(db, |conn| {
        let mut added = 0;
        for entry in refused {
            // Per data plane: two nodes may send byte-identical reports.
            let digest = sha256_hex(&[node_id.as_bytes(), b"\0", &entry.raw].concat());
            added += diesel::insert_into(usage_quarantine::table)
                .values((
                    usage_quarantine::digest.eq(digest),
                    usage_quarantine::node_id.eq(&node_id),
                    usage_quarantine::request_id.eq(printable(entry.request_id)),
                    usage_quarantine::key_id.eq(entry.key_id),
                    usage_quarantine::reason.eq(printable(entry.reason)),
                    usage_quarantine::report.eq(&entry.raw),
                    usage_quarantine::received_at.eq(now),
                ))
                .on_conflict(usage_quarantine::digest)
                .do_nothing()
                .execute(conn)
                .await?;
        }
        Ok(added)
    })
}

/// The newest `limit` quarantined reports, newest first.
pub async fn list(db: &Db, limit: i64) -> StoreResult<Vec<QuarantineRow>> {
    with_conn!(db, |conn| {
        Ok(usage_quarantine::table
            .select(QuarantineRow::as_select())
            .order(usage_quarantine::id.desc())
            .limit(limit)
            .load(conn)
            .await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_text_is_printable_and_short() {
        assert_eq!(printable("a\0b\nc"), "a\u{fffd}b\u{fffd}c");
        assert_eq!(printable(&"x".repeat(1000)).len(), MAX_KEPT_TEXT);
    }
}
