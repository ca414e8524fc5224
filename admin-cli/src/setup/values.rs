//! Values of a setup file that TOML has no exact type for: amounts and multipliers are decimal
//! strings (`"0.15"`), never floats, so that what is written is what is stored.
use std::fmt;

use router_proto::{Money, Multiplier};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An amount or a price: a decimal string, zero or more, at most 9 decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(pub Money);

/// A group multiplier: a decimal string, zero or more, at most 6 decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Factor(pub Multiplier);

struct DecimalVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> de::Visitor<'_> for DecimalVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        (self.parse)(text).map_err(E::custom)
    }

    // A bare number would be read through a float or lose the writer's intent: refused with a
    // message that shows the right spelling.
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<T, E> {
        Err(E::custom(format!("write the number as a string: \"{value}\"")))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<T, E> {
        Err(E::custom(format!("write the number as a string, e.g. \"{value}\", so it stays exact")))
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        deserializer.deserialize_any(DecimalVisitor {
            expecting: "an amount as a decimal string, e.g. \"0.15\"",
            parse: |text| Money::parse_non_negative(text).map(Amount).map_err(|e| e.to_string()),
        })
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Factor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Factor, D::Error> {
        deserializer.deserialize_any(DecimalVisitor {
            expecting: "a multiplier as a decimal string, e.g. \"0.8\"",
            parse: |text| Multiplier::parse(text).map(Factor).map_err(|e| e.to_string()),
        })
    }
}

impl Serialize for Factor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// An amount in nano-units for the wire.
pub fn nanos(amount: Option<Amount>) -> Option<i64> {
    amount.map(|a| a.0.nanos())
}

/// An amount from the wire.
pub fn amount(nanos: Option<i64>) -> Option<Amount> {
    nanos.map(|n| Amount(Money::from_nanos(n)))
}
