//! Rate limits (requests and tokens per window, requests in flight) and the calendar of the
//! weekly and monthly spend limits (UTC weeks from Monday, UTC calendar months).
use super::{DayTotal, check_non_negative};
use crate::error::StoreResult;

/// Requests per window, tokens per window and requests in flight; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per rate window.
    pub rpm: Option<i64>,
    /// Tokens (input + output as billed) per rate window.
    pub tpm: Option<i64>,
    /// Requests in flight.
    pub max_concurrent: Option<i64>,
}

impl RateLimits {
    /// Checks that every limit is positive (0 means "none" on the wire and never gets here).
    pub fn check(&self) -> StoreResult<()> {
        for (what, value) in [("rpm", self.rpm), ("tpm", self.tpm), ("max concurrent", self.max_concurrent)] {
            if let Some(value) = value {
                check_non_negative(what, value)?;
            }
        }
        Ok(())
    }

    /// Each limit of `self`, else of `fallback` (a key's own limits over its group's).
    pub fn or(self, fallback: RateLimits) -> RateLimits {
        RateLimits {
            rpm: self.rpm.or(fallback.rpm),
            tpm: self.tpm.or(fallback.tpm),
            max_concurrent: self.max_concurrent.or(fallback.max_concurrent),
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.rpm.is_some() || self.tpm.is_some() || self.max_concurrent.is_some()
    }
}

/// Changes to rate limits: the outer `None` leaves a limit alone, `Some(None)` removes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateChange {
    /// New requests per window.
    pub rpm: Option<Option<i64>>,
    /// New tokens per window.
    pub tpm: Option<Option<i64>>,
    /// New requests in flight.
    pub max_concurrent: Option<Option<i64>>,
}

impl RateChange {
    /// `limits` with the change applied, checked.
    pub fn apply(&self, limits: RateLimits) -> StoreResult<RateLimits> {
        let changed = RateLimits {
            rpm: self.rpm.unwrap_or(limits.rpm),
            tpm: self.tpm.unwrap_or(limits.tpm),
            max_concurrent: self.max_concurrent.unwrap_or(limits.max_concurrent),
        };
        changed.check()?;
        Ok(changed)
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none()
    }
}

/// Weekly and monthly spend limits; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodLimits {
    /// Spend cap per UTC week (from Monday).
    pub weekly: Option<i64>,
    /// Spend cap per UTC calendar month.
    pub monthly: Option<i64>,
}

impl PeriodLimits {
    /// Checks that the limits are not negative.
    pub fn check(&self) -> StoreResult<()> {
        for (what, value) in [("weekly limit", self.weekly), ("monthly limit", self.monthly)] {
            if let Some(value) = value {
                check_non_negative(what, value)?;
            }
        }
        Ok(())
    }
}

/// Changes to period limits (outer `None`: unchanged; `Some(None)`: removed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodChange {
    /// New weekly limit.
    pub weekly: Option<Option<i64>>,
    /// New monthly limit.
    pub monthly: Option<Option<i64>>,
}

impl PeriodChange {
    /// `limits` with the change applied, checked.
    pub fn apply(&self, limits: PeriodLimits) -> StoreResult<PeriodLimits> {
        let changed = PeriodLimits {
            weekly: self.weekly.unwrap_or(limits.weekly),
            monthly: self.monthly.unwrap_or(limits.monthly),
        };
        changed.check()?;
        Ok(changed)
    }
}

/// The UTC week (counted from the Monday before the unix epoch) of a UTC day. Day 0, 1970-01-01,
/// was a Thursday: the week starting Monday 1969-12-29 is week 0.
pub fn week_of_day(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

/// The UTC calendar month (`year * 12 + month - 1`) of a UTC day.
pub fn month_of_day(day: i64) -> i64 {
    let (year, month, _) = civil_from_days(day);
    year * 12 + (month - 1)
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, proleptic Gregorian calendar).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Spend as the daily, weekly and monthly counters see it (each follows the latest period it
/// has seen; see [`DayTotal`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodTotals {
    /// By UTC day.
    pub day: DayTotal,
    /// By UTC week.
    pub week: DayTotal,
    /// By UTC month.
    pub month: DayTotal,
}

impl PeriodTotals {
    /// Counts `cost` spent on UTC `day`.
    pub fn add(&mut self, day: i64, cost: i64) {
        self.day.add(day, cost);
        self.week.add(week_of_day(day), cost);
        self.month.add(month_of_day(day), cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days since the epoch of a civil date, by counting (slow, obviously right).
    fn days_of(year: i64, month: i64, day: i64) -> i64 {
        let mut days = 0;
        for y in 1970..year {
            days += if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 366 } else { 365 };
        }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        let lengths = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        days + lengths[..usize::try_from(month - 1).unwrap_or(0)].iter().sum::<i64>() + day - 1
    }

    #[test]
    fn calendar_days_round_trip() {
        for day in -800..30_000 {
            let (y, m, d) = civil_from_days(day);
            if y >= 1970 {
                assert_eq!(days_of(y, m, d), day);
            }
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(days_of(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-11-30 is a Monday; 2026-11-29 a Sunday.
        let monday = days_of(2026, 11, 30);
        assert_eq!(week_of_day(monday), week_of_day(monday + 6));
        assert_eq!(week_of_day(monday - 1) + 1, week_of_day(monday));
        assert_eq!(week_of_day(monday + 7), week_of_day(monday) + 1);
        assert_eq!(week_of_day(0), 0, "Thursday 1970-01-01 is in week 0");
        assert_eq!(week_of_day(-3), 0, "so is Monday 1969-12-29");
        assert_eq!(week_of_day(-4), -1);
        let first = days_of(2026, 12, 1);
        assert_eq!(month_of_day(first), 2026 * 12 + 11);
        assert_eq!(month_of_day(first - 1), 2026 * 12 + 10);
        assert_eq!(month_of_day(days_of(2027, 1, 1)), 2027 * 12);
    }

    #[test]
    fn totals_restart_at_each_boundary() {
        let sunday = days_of(2026, 11, 29);
        let mut totals = PeriodTotals::default();
        totals.add(sunday, 5);
        totals.add(sunday + 1, 7);
        assert_eq!(totals.day.total, 7);
        assert_eq!(totals.week.total, 7, "Monday starts a week");
        assert_eq!(totals.month.total, 12, "still November");
        totals.add(sunday + 2, 1);
        assert_eq!(totals.month.total, 1, "December 1st starts a month");
        assert_eq!(totals.week.total, 8);
    }
}
