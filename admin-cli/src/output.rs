//! Rendering results: one JSON value with `--json`, aligned tables and `key: value` lines without.
//!
//! Every entity is first turned into a view (a `Serialize` struct of display-ready values), so
//! the JSON and the text output cannot disagree about what an amount or a time is.
use std::io::{self, Write};

use router_proto::{Money, Multiplier};
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::error::Error;

/// What text output shows for an unset value.
pub const UNSET: &str = "-";

/// A view that can be shown as JSON, as a table row, or as `key: value` lines.
pub trait Record: Serialize {
    /// Labels of the fields a table shows, in column order.
    const COLUMNS: &'static [&'static str];

    /// Every field as a label and its text, in display order.
    fn fields(&self) -> Vec<(&'static str, String)>;
}

/// Where results go, and in which form.
pub struct Output {
    json: bool,
    out: Box<dyn Write>,
    notes: Box<dyn Write>,
}

impl Output {
    /// Writes to stdout, as JSON when `json` is set.
    pub fn stdout(json: bool) -> Output {
        Output { json, out: Box::new(io::stdout()), notes: Box::new(io::stderr()) }
    }

    /// Writes results to `out` and notes to `notes` (for tests).
    pub fn to(json: bool, out: Box<dyn Write>, notes: Box<dyn Write>) -> Output {
        Output { json, out, notes }
    }

    /// Where results go, for output streamed piece by piece (flush when done).
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut *self.out
    }

    /// Tells the user something beside the results (on stderr, so `--json` output stays one
    /// value and a pipe gets only results).
    pub fn note(&mut self, text: &str) -> Result<(), Error> {
        writeln!(self.notes, "{text}")?;
        Ok(())
    }

    /// Whether results are printed as JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints one record: a JSON object, or `key: value` lines.
    pub fn record<T: Record>(&mut self, record: &T) -> Result<(), Error> {
        if self.json { self.json(record) } else { self.text(&fields_text(&record.fields())) }
    }

    /// Prints records: a JSON array, or a table.
    pub fn records<T: Record>(&mut self, records: &[T]) -> Result<(), Error> {
        if self.json { self.json(records) } else { self.text(&table(records)) }
    }

    /// Prints `value` as JSON, or `text` as it is.
    pub fn either<T: Serialize>(&mut self, value: &T, text: &str) -> Result<(), Error> {
        if self.json { self.json(value) } else { self.text(text) }
    }

    /// Prints exactly one JSON value and a newline.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let text = to_json(value)?;
        self.text(&text)
    }

    /// Prints text, adding a final newline when it has none.
    pub fn text(&mut self, text: &str) -> Result<(), Error> {
        self.out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            self.out.write_all(b"\n")?;
        }
        self.out.flush()?;
        Ok(())
    }
}

/// Serializes a view as pretty JSON.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(value).map_err(|error| Error::Output(io::Error::other(error.to_string())))
}

/// `label: value` lines, values aligned.
pub fn fields_text(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0) + 1;
    let mut text = String::new();
    for (label, value) in fields {
        let label = format!("{label}:");
        text.push_str(format!("{label:width$} {value}").trim_end());
        text.push('\n');
    }
    text
}

/// A table of `T::COLUMNS`, headed by the upper-cased labels, columns aligned.
pub fn table<T: Record>(records: &[T]) -> String {
    let header: Vec<String> = T::COLUMNS.iter().map(|label| label.to_uppercase()).collect();
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|record| {
            let fields = record.fields();
            T::COLUMNS
                .iter()
                .map(|column| {
                    fields
                        .iter()
                        .find(|(label, _)| label == column)
                        .map_or_else(|| UNSET.to_owned(), |(_, value)| value.clone())
                })
                .collect()
        })
        .collect();
    align(std::iter::once(&header).chain(&rows))
}

/// A table of `header` and `rows`, columns aligned.
pub fn grid(header: &[String], rows: &[Vec<String>]) -> String {
    let header = header.to_vec();
    align(std::iter::once(&header).chain(rows))
}

fn align<'a>(rows: impl Iterator<Item = &'a Vec<String>> + Clone) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows.clone() {
        for (index, cell) in row.iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(index) {
                Some(max) => *max = (*max).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:width$}  "));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// An amount in nano-units as its canonical decimal string.
pub fn money(nanos: i64) -> String {
    Money::from_nanos(nanos).to_string()
}

/// An optional amount as its decimal string, or `None`.
pub fn opt_money(nanos: Option<i64>) -> Option<String> {
    nanos.map(money)
}

/// A multiplier in micro-units as its decimal string.
pub fn multiplier(micros: i64) -> String {
    // A negative multiplier is a server bug; show the raw value rather than hide it.
    Multiplier::from_micros(micros).map_or_else(|| format!("{micros}e-6"), |m| m.to_string())
}

/// Unix microseconds as an RFC 3339 UTC time, e.g. `2026-11-27T06:13:02.123456Z`.
pub fn time(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        // Out of RFC 3339's range (before year 0 or after 9999): still show something true.
        .unwrap_or_else(|| format!("{micros}us since the unix epoch"))
}

/// An optional time as RFC 3339, or `None`.
pub fn opt_time(micros: Option<i64>) -> Option<String> {
    micros.map(time)
}

/// An optional value for text output.
pub fn or_unset<T: ToString>(value: Option<&T>) -> String {
    value.map_or_else(|| UNSET.to_owned(), ToString::to_string)
}

/// A list of names for text output.
pub fn list(items: &[String], empty: &str) -> String {
    if items.is_empty() { empty.to_owned() } else { items.join(",") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: String,
        amount: String,
    }

    impl Record for Row {
        const COLUMNS: &'static [&'static str] = &["name", "amount"];

        fn fields(&self) -> Vec<(&'static str, String)> {
            vec![("name", self.name.clone()), ("amount", self.amount.clone())]
        }
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let rows = [
            Row { name: "bob".into(), amount: "10".into() },
            Row { name: "alexandra".into(), amount: "0.15".into() },
        ];
        assert_eq!(table(&rows), "NAME       AMOUNT\nbob        10\nalexandra  0.15\n");
        assert_eq!(table::<Row>(&[]), "NAME  AMOUNT\n");
    }

    #[test]
    fn fields_are_aligned_lines() {
        let fields = [("name", "bob".to_owned()), ("daily_limit", UNSET.to_owned())];
        assert_eq!(fields_text(&fields), "name:        bob\ndaily_limit: -\n");
    }

    #[test]
    fn values_print_exactly() {
        assert_eq!(money(10_000_000_000), "10");
        assert_eq!(money(150_000_000), "0.15");
        assert_eq!(money(-1), "-0.000000001");
        assert_eq!(opt_money(None), None);
        assert_eq!(multiplier(1_250_000), "1.25");
        assert_eq!(time(1_795_759_982_123_456), "2026-11-27T06:13:02.123456Z");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_500_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(or_unset::<String>(None), "-");
    }
}
