//! Storage: one module per entity, each a set of async functions over [`Db`](crate::db::Db).
//!
//! Every function that changes the policy (what data planes enforce) bumps the policy version
//! in the same transaction and stamps the changed row with it, so a watcher can be sent
//! "everything changed since version N". Money moves only through
//! [`TxConn::post`](crate::db::TxConn::post), which writes the balance and its ledger entry
//! together.
pub mod accounts;
pub mod channels;
pub mod codes;
pub mod groups;
pub mod keys;
pub mod ledger;
pub mod models;
pub mod policy;
pub mod pricing;
pub mod usage;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{StoreError, StoreResult};

/// Microseconds in a UTC day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Now, in unix microseconds.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The UTC day (days since the unix epoch) of a time in unix microseconds.
pub fn utc_day(unix_micros: i64) -> i64 {
    unix_micros.div_euclid(MICROS_PER_DAY)
}

/// What was spent "today" given a counter and the day it was last written on.
pub fn spent_on(day: i64, counter_day: i64, counter: i64) -> i64 {
    if counter_day == day { counter } else { 0 }
}

/// Entity names: what routerctl users type, so no blanks, control characters or commas.
pub fn check_name(kind: &str, name: &str) -> StoreResult<()> {
    if name.is_empty() {
        return Err(StoreError::invalid(format!("{kind} name must not be empty")));
    }
    if name.len() > 200 {
        return Err(StoreError::invalid(format!("{kind} name is longer than 200 bytes")));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
        return Err(StoreError::invalid(format!(
            "{kind} name {name:?} must not contain blanks, commas or control characters"
        )));
    }
    Ok(())
}

/// Checks that an amount is zero or more.
pub fn check_non_negative(what: &str, nanos: i64) -> StoreResult<()> {
    if nanos < 0 {
        return Err(StoreError::invalid(format!("{what} must not be negative")));
    }
    Ok(())
}

/// Cleans a list of model names: trimmed, no empties, no duplicates, order kept.
pub fn clean_names(kind: &str, names: &[String]) -> StoreResult<Vec<String>> {
    let mut cleaned: Vec<String> = Vec::with_capacity(names.len());
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        check_name(kind, name)?;
        if !cleaned.iter().any(|n| n == name) {
            cleaned.push(name.to_owned());
        }
    }
    Ok(cleaned)
}

/// Encodes a list for a JSON text column.
pub fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}

/// Decodes a JSON text column written by [`json_list`].
pub fn parse_json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_days() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(MICROS_PER_DAY - 1), 0);
        assert_eq!(utc_day(MICROS_PER_DAY), 1);
        assert_eq!(utc_day(-1), -1);
        assert_eq!(spent_on(5, 5, 10), 10);
        assert_eq!(spent_on(6, 5, 10), 0);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("account", "alice").is_ok());
        assert!(check_name("model", "gpt-4o-mini").is_ok());
        assert!(check_name("model", "claude-3.5/sonnet:beta").is_ok());
        for bad in ["", "a b", "a,b", "a\nb"] {
            assert!(check_name("account", bad).is_err(), "{bad:?}");
        }
        let names = ["a".to_owned(), " b ".to_owned(), String::new(), "a".to_owned()];
        assert_eq!(clean_names("model", &names).ok(), Some(vec!["a".to_owned(), "b".to_owned()]));
    }
}
