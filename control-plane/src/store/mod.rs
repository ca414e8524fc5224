//! Storage: one module per entity, each a set of async functions over [`Db`](crate::db::Db).
//!
//! Every function that changes the policy (what data planes enforce) bumps the policy version
//! in the same transaction and stamps the changed row with it, so a watcher can be sent
//! "everything changed since version N". Money moves only through
//! [`TxConn::post`](crate::db::TxConn::post), which writes the balance and its ledger entry
//! together.
pub mod accounts;
pub mod aliases;
pub mod channels;
pub mod codes;
pub mod groups;
pub mod keys;
pub mod leases;
pub mod ledger;
pub mod limits;
pub mod models;
pub mod orders;
pub mod policy;
pub mod pricing;
pub mod quarantine;
pub mod rates;
pub mod sessions;
pub mod setup;
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

/// The first microsecond of the UTC day after the one `unix_micros` falls in.
pub fn next_midnight(unix_micros: i64) -> i64 {
    utc_day(unix_micros).saturating_add(1).saturating_mul(MICROS_PER_DAY)
}

/// Spend as a daily counter sees it: the latest day seen and what was spent on it. Adding
/// costs in any order gives the same result as applying them one by one to a counter that
/// adds on its own day, restarts on a later one and ignores earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayTotal {
    /// The latest day seen.
    pub day: i64,
    /// What was spent on `day`.
    pub total: i64,
}

impl Default for DayTotal {
    fn default() -> DayTotal {
        DayTotal { day: i64::MIN, total: 0 }
    }
}

impl DayTotal {
    /// Counts `cost` spent on `day`.
    pub fn add(&mut self, day: i64, cost: i64) {
        if day > self.day {
            *self = DayTotal { day, total: cost };
        } else if day == self.day {
            self.total = self.total.saturating_add(cost);
        }
    }
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
        assert_eq!(next_midnight(0), MICROS_PER_DAY);
        assert_eq!(next_midnight(MICROS_PER_DAY - 1), MICROS_PER_DAY);
        assert_eq!(next_midnight(MICROS_PER_DAY), 2 * MICROS_PER_DAY);
    }

    /// Applies costs one by one to a counter the way a single report would.
    fn sequential(start: (i64, i64), costs: &[(i64, i64)]) -> (i64, i64) {
        costs.iter().fold(start, |(day, spent), &(d, c)| match d.cmp(&day) {
            std::cmp::Ordering::Greater => (d, c),
            std::cmp::Ordering::Equal => (d, spent + c),
            std::cmp::Ordering::Less => (day, spent),
        })
    }

    #[test]
    fn day_totals_match_one_by_one_updates_in_any_order() {
        let runs: &[&[(i64, i64)]] = &[
            &[(5, 1), (6, 2), (5, 4)],
            &[(6, 2), (5, 1)],
            &[(4, 3)],
            &[(5, 1), (5, 2)],
            &[(7, 1), (6, 9), (7, 5)],
        ];
        for costs in runs {
            for start in [(5, 10), (6, 10), (3, 10)] {
                let mut total = DayTotal::default();
                costs.iter().for_each(|&(d, c)| total.add(d, c));
                // What the batch's single UPDATE does with the aggregate.
                let (day, spent) = start;
                let batched = match total.day.cmp(&day) {
                    std::cmp::Ordering::Greater => (total.day, total.total),
                    std::cmp::Ordering::Equal => (day, spent + total.total),
                    std::cmp::Ordering::Less => (day, spent),
                };
                assert_eq!(batched, sequential(start, costs), "{costs:?} from {start:?}");
            }
        }
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
