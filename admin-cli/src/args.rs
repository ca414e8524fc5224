//! Parsers for command-line values, run by clap so a bad value is a usage error before any RPC.
//!
//! Each returns `Result<_, String>`: clap prints the message after "invalid value … for …".
use std::collections::{BTreeMap, HashMap};

use router_proto::{Money, Multiplier};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// The spelling that clears an optional setting in `update` commands.
pub const NONE: &str = "none";

/// A value given to an `update` flag: a new value, or `none` to remove the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clearable<T> {
    /// Remove the current value.
    Clear,
    /// Replace the current value.
    Set(T),
}

impl<T> Clearable<T> {
    /// The new value, if this sets one.
    pub fn set(self) -> Option<T> {
        match self {
            Clearable::Clear => None,
            Clearable::Set(value) => Some(value),
        }
    }
}

/// Splits an optional update value into the proto's `(value, clear)` pair.
pub fn split_clearable<T>(value: Option<Clearable<T>>) -> (Option<T>, bool) {
    match value {
        None => (None, false),
        Some(Clearable::Clear) => (None, true),
        Some(Clearable::Set(value)) => (Some(value), false),
    }
}

fn clearable<T>(input: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<Clearable<T>, String> {
    if input == NONE { Ok(Clearable::Clear) } else { parse(input).map(Clearable::Set) }
}

/// A comma-separated list of names, trimmed, without empties or repeats, never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names(pub Vec<String>);

/// Parses `m1, m2,,m3` into `[m1, m2, m3]`.
pub fn names(input: &str) -> Result<Names, String> {
    let mut names: Vec<String> = Vec::new();
    for item in input.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        // A repeated name is harmless but would be stored twice.
        if !names.iter().any(|name| name == item) {
            names.push(item.to_owned());
        }
    }
    if names.is_empty() {
        return Err("expected a comma-separated list of names, e.g. m1,m2".to_owned());
    }
    Ok(Names(names))
}

/// Parses a list of names, or `none` for an empty list.
pub fn clearable_names(input: &str) -> Result<Clearable<Names>, String> {
    clearable(input, names)
}

/// Client-facing model name -> upstream model name, from `from=to,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMap(pub BTreeMap<String, String>);

impl ModelMap {
    /// The map in the proto's representation.
    pub fn into_proto(self) -> HashMap<String, String> {
        self.0.into_iter().collect()
    }
}

/// Parses `gpt-4o=gpt-4o-2024-08-06, claude=claude-sonnet-4`.
pub fn model_map(input: &str) -> Result<ModelMap, String> {
    let mut map = BTreeMap::new();
    for pair in input.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let (from, to) = pair
            .split_once('=')
            .map(|(from, to)| (from.trim(), to.trim()))
            .filter(|(from, to)| !from.is_empty() && !to.is_empty())
            .ok_or_else(|| format!("{pair:?} is not a from=to pair"))?;
        if map.insert(from.to_owned(), to.to_owned()).is_some() {
            return Err(format!("{from:?} is mapped more than once"));
        }
    }
    if map.is_empty() {
        return Err("expected from=to pairs separated by commas".to_owned());
    }
    Ok(ModelMap(map))
}

/// Parses a model map, or `none` for an empty one.
pub fn clearable_model_map(input: &str) -> Result<Clearable<ModelMap>, String> {
    clearable(input, model_map)
}

/// Parses an amount or price: a plain decimal, zero or more, at most 9 decimal places.
pub fn money(input: &str) -> Result<Money, String> {
    Money::parse_non_negative(input).map_err(|error| error.to_string())
}

/// Parses an amount that may be negative (an adjustment that debits).
pub fn signed_money(input: &str) -> Result<Money, String> {
    Money::parse(input).map_err(|error| error.to_string())
}

/// Parses an amount, or `none` to remove a limit.
pub fn clearable_money(input: &str) -> Result<Clearable<Money>, String> {
    clearable(input, money)
}

/// Parses a group multiplier: zero or more, at most 6 decimal places.
pub fn multiplier(input: &str) -> Result<Multiplier, String> {
    Multiplier::parse(input).map_err(|error| error.to_string())
}

/// Parses an RFC 3339 time into unix microseconds, the proto's unit.
pub fn timestamp(input: &str) -> Result<i64, String> {
    let time = OffsetDateTime::parse(input, &Rfc3339)
        .map_err(|_| format!("{input:?} is not an RFC 3339 time, e.g. 2026-12-31T23:59:59Z"))?;
    let nanos = time.unix_timestamp_nanos();
    // Like money, a time that cannot be stored exactly is refused rather than rounded.
    if nanos % 1000 != 0 {
        return Err(format!("{input:?} is more precise than a microsecond"));
    }
    i64::try_from(nanos / 1000).map_err(|_| format!("{input:?} is out of range"))
}

/// Parses an RFC 3339 time, or `none` for "never".
pub fn clearable_timestamp(input: &str) -> Result<Clearable<i64>, String> {
    clearable(input, timestamp)
}

/// Parses a name (of an account, group, channel, …): anything but blank.
pub fn name(input: &str) -> Result<String, String> {
    if input.trim().is_empty() {
        return Err("must not be blank".to_owned());
    }
    Ok(input.to_owned())
}

/// Parses a group name, or `none` to fall back to the account's group.
pub fn clearable_name(input: &str) -> Result<Clearable<String>, String> {
    clearable(input, name)
}

/// Parses an optional text setting, or `none` to remove it.
pub fn clearable_text(input: &str) -> Result<Clearable<String>, String> {
    clearable(input, |text| Ok(text.to_owned()))
}

/// Parses a `--protocols` list: names from [`router_proto::protocols::PROTOCOLS`].
pub fn protocols(input: &str) -> Result<Names, String> {
    let names = names(input)?;
    if let Some(unknown) = names.0.iter().find(|n| !router_proto::protocols::PROTOCOLS.contains(&n.as_str()))
    {
        return Err(format!(
            "unknown protocol {unknown:?} (expected one of {})",
            router_proto::protocols::PROTOCOLS.join(", ")
        ));
    }
    Ok(names)
}

/// Parses an upstream base URL or `none`.
pub fn clearable_base_url(input: &str) -> Result<Clearable<String>, String> {
    clearable(input, base_url)
}

/// Parses an upstream base URL; a trailing `/` is dropped because paths are appended to it.
pub fn base_url(input: &str) -> Result<String, String> {
    let trimmed = input.trim().trim_end_matches('/');
    let host = trimmed.strip_prefix("https://").or_else(|| trimmed.strip_prefix("http://"));
    match host {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(trimmed.to_owned()),
        _ => Err(format!("{input:?} is not an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn name_lists_are_trimmed_without_empties_or_repeats() {
        assert_eq!(names("m1,m2"), Ok(Names(strings(&["m1", "m2"]))));
        assert_eq!(names(" m1 , ,m2,, m1 "), Ok(Names(strings(&["m1", "m2"]))));
        assert_eq!(names("gpt-4o"), Ok(Names(strings(&["gpt-4o"]))));
        assert!(names("").is_err());
        assert!(names(" , ,").is_err());
    }

    #[test]
    fn none_clears_and_anything_else_sets() {
        assert_eq!(clearable_names("none"), Ok(Clearable::Clear));
        assert_eq!(clearable_names("a,b"), Ok(Clearable::Set(Names(strings(&["a", "b"])))));
        assert_eq!(clearable_money("none"), Ok(Clearable::Clear));
        assert_eq!(clearable_money("2.5"), Ok(Clearable::Set(Money::from_nanos(2_500_000_000))));
        assert!(clearable_money("-1").is_err());
        assert_eq!(clearable_name("none"), Ok(Clearable::Clear));
        assert_eq!(clearable_name("vip"), Ok(Clearable::Set("vip".to_owned())));
        assert_eq!(clearable_timestamp("none"), Ok(Clearable::Clear));
        assert_eq!(split_clearable(Some(Clearable::<Money>::Clear)), (None, true));
        assert_eq!(
            split_clearable(Some(Clearable::Set(Money::from_nanos(1_000_000_000)))),
            (Some(Money::from_nanos(1_000_000_000)), false)
        );
        assert_eq!(split_clearable::<Money>(None), (None, false));
    }

    #[test]
    fn model_maps_are_from_to_pairs() {
        let map = model_map(" gpt-4o = gpt-4o-2024-08-06 ,claude=claude-sonnet-4,").expect("a valid map");
        assert_eq!(map.0.len(), 2);
        assert_eq!(map.0["gpt-4o"], "gpt-4o-2024-08-06");
        assert_eq!(map.0["claude"], "claude-sonnet-4");
        assert_eq!(map.into_proto().len(), 2);
        for bad in ["", "a", "a=", "=b", "a=b,c", "a=b,a=c"] {
            assert!(model_map(bad).is_err(), "{bad:?}");
        }
        assert_eq!(clearable_model_map("none"), Ok(Clearable::Clear));
    }

    #[test]
    fn amounts_become_nanos_exactly_or_are_refused() {
        assert_eq!(money("10").map(Money::nanos), Ok(10_000_000_000));
        assert_eq!(money("0.15").map(Money::nanos), Ok(150_000_000));
        assert_eq!(money("0.000000001").map(Money::nanos), Ok(1));
        assert_eq!(money("0").map(Money::nanos), Ok(0));
        for bad in ["-5", "0.0000000001", "1e3", "abc", "", " 1", "1."] {
            assert!(money(bad).is_err(), "{bad:?}");
        }
        assert_eq!(signed_money("-5").map(Money::nanos), Ok(-5_000_000_000));
        assert!(signed_money("-0.0000000001").is_err());
    }

    #[test]
    fn multipliers_become_micros() {
        assert_eq!(multiplier("1").map(|m| m.micros()), Ok(1_000_000));
        assert_eq!(multiplier("0.8").map(|m| m.micros()), Ok(800_000));
        assert!(multiplier("1.0000001").is_err());
        assert!(multiplier("-1").is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_in_micros() {
        assert_eq!(timestamp("1970-01-01T00:00:01Z"), Ok(1_000_000));
        assert_eq!(timestamp("2026-11-27T06:13:02.123456Z"), Ok(1_795_759_982_123_456));
        assert_eq!(timestamp("1970-01-01T01:00:00+01:00"), Ok(0));
        assert!(timestamp("2026-11-27").is_err());
        assert!(timestamp("2026-11-27T06:13:02.1234567Z").is_err());
        assert!(timestamp("tomorrow").is_err());
    }

    #[test]
    fn base_urls_need_a_scheme_and_host() {
        assert_eq!(base_url("https://api.openai.com/v1/"), Ok("https://api.openai.com/v1".into()));
        assert_eq!(base_url("http://127.0.0.1:8000"), Ok("http://127.0.0.1:8000".into()));
        for bad in ["api.openai.com", "https://", "ftp://x", ""] {
            assert!(base_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_must_not_be_blank() {
        assert_eq!(name("bob"), Ok("bob".to_owned()));
        assert!(name(" ").is_err());
    }
}
