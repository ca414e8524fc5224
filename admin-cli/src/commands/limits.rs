//! Flags and display of rate limits (`--rpm`, `--tpm`, `--max-concurrent`) and of weekly and
//! monthly spend limits, shared by `key`, `account` and `group` commands. `0` means no limit
//! (on `update`: remove it).
use clap::Args;
use router_proto::Money;
use serde::Serialize;

use crate::{args, output};

/// Rate-limit flags of `add` / `create`.
#[derive(Debug, Args)]
pub struct RateArgs {
    /// Requests per minute (0: no limit).
    #[arg(long, value_name = "N")]
    pub rpm: Option<u32>,
    /// Tokens per minute, input + output as billed (0: no limit).
    #[arg(long, value_name = "N")]
    pub tpm: Option<u32>,
    /// Requests in flight at once (0: no limit).
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<u32>,
}

/// Rate-limit flags of `update`: absent leaves a limit, 0 removes it.
#[derive(Debug, Args)]
pub struct RateUpdateArgs {
    /// Requests per minute (0: remove the limit).
    #[arg(long, value_name = "N", group = "changes")]
    pub rpm: Option<u32>,
    /// Tokens per minute, input + output as billed (0: remove the limit).
    #[arg(long, value_name = "N", group = "changes")]
    pub tpm: Option<u32>,
    /// Requests in flight at once (0: remove the limit).
    #[arg(long, value_name = "N", group = "changes")]
    pub max_concurrent: Option<u32>,
}

/// Weekly and monthly spend-limit flags of `add` / `create`.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    /// The most to spend in one UTC week, Monday to Sunday (0: no limit).
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub weekly_limit: Option<Money>,
    /// The most to spend in one UTC calendar month (0: no limit).
    #[arg(long, value_name = "X", value_parser = args::money)]
    pub monthly_limit: Option<Money>,
}

/// Weekly and monthly spend-limit flags of `update` (0 or `none` removes a limit).
#[derive(Debug, Args)]
pub struct PeriodUpdateArgs {
    /// The most to spend in one UTC week, Monday to Sunday (0 or `none`: remove the limit).
    #[arg(long, value_name = "X", group = "changes", value_parser = money_or_none)]
    pub weekly_limit: Option<Money>,
    /// The most to spend in one UTC calendar month (0 or `none`: remove the limit).
    #[arg(long, value_name = "X", group = "changes", value_parser = money_or_none)]
    pub monthly_limit: Option<Money>,
}

fn money_or_none(input: &str) -> Result<Money, String> {
    if input == "none" { Ok(Money::ZERO) } else { args::money(input) }
}

/// The wire form of the rate flags: `(rpm, tpm, max_concurrent)`.
pub fn rates(
    rpm: Option<u32>,
    tpm: Option<u32>,
    max_concurrent: Option<u32>,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    (rpm.map(i64::from), tpm.map(i64::from), max_concurrent.map(i64::from))
}

impl RateArgs {
    /// `(rpm, tpm, max_concurrent)` for the wire.
    pub fn wire(&self) -> (Option<i64>, Option<i64>, Option<i64>) {
        rates(self.rpm, self.tpm, self.max_concurrent)
    }
}

impl RateUpdateArgs {
    /// `(rpm, tpm, max_concurrent)` for the wire.
    pub fn wire(&self) -> (Option<i64>, Option<i64>, Option<i64>) {
        rates(self.rpm, self.tpm, self.max_concurrent)
    }
}

impl PeriodArgs {
    /// `(weekly, monthly)` in nano-units for the wire.
    pub fn wire(&self) -> (Option<i64>, Option<i64>) {
        (self.weekly_limit.map(Money::nanos), self.monthly_limit.map(Money::nanos))
    }
}

impl PeriodUpdateArgs {
    /// `(weekly, monthly)` in nano-units for the wire.
    pub fn wire(&self) -> (Option<i64>, Option<i64>) {
        (self.weekly_limit.map(Money::nanos), self.monthly_limit.map(Money::nanos))
    }
}

/// Rate limits for display (`null` / `-`: none).
#[derive(Debug, Clone, Serialize)]
pub struct RateView {
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Requests in flight.
    pub max_concurrent: Option<i64>,
}

impl RateView {
    /// From the wire (absent or 0: none).
    pub fn new(rpm: Option<i64>, tpm: Option<i64>, max_concurrent: Option<i64>) -> RateView {
        let set = |v: Option<i64>| v.filter(|v| *v > 0);
        RateView { rpm: set(rpm), tpm: set(tpm), max_concurrent: set(max_concurrent) }
    }

    /// Text fields.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let text = |v: Option<i64>| v.map_or_else(|| output::UNSET.to_owned(), |v| v.to_string());
        vec![("rpm", text(self.rpm)), ("tpm", text(self.tpm)), ("max_concurrent", text(self.max_concurrent))]
    }
}
