//! Wire types of each protocol, borrowed from the body where that pays: strings as `Cow`
//! (borrowed unless escaped), opaque JSON (schemas, tool inputs) as `&RawValue`, copied through
//! byte for byte. Tagged unions are flat structs with a `type` string so nothing is buffered.
pub mod chat;
pub mod messages;
pub mod responses;

use std::{borrow::Cow, fmt, marker::PhantomData, sync::OnceLock};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{SeqAccess, Visitor},
};
use serde_json::value::RawValue;

/// A JSON literal parsed once, for the fields that borrow a `&RawValue`.
pub fn static_json(cell: &'static OnceLock<Box<RawValue>>, json: &'static str) -> &'static RawValue {
    // Only literals are given: the fallback is never taken.
    cell.get_or_init(|| RawValue::from_string(json.to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned()))
}

/// `{}`: the arguments of a call that has none.
pub fn empty_object() -> &'static RawValue {
    static EMPTY: OnceLock<Box<RawValue>> = OnceLock::new();
    static_json(&EMPTY, "{}")
}

/// The schema of a tool that declares none.
pub fn empty_schema() -> &'static RawValue {
    static EMPTY: OnceLock<Box<RawValue>> = OnceLock::new();
    static_json(&EMPTY, r#"{"type":"object","properties":{}}"#)
}

/// A field that is either a string or an array of `T` (message content, system prompts).
#[derive(Debug, Clone, PartialEq)]
pub enum TextOr<'a, T> {
    /// The string form.
    Text(Cow<'a, str>),
    /// The array form.
    Items(Vec<T>),
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for TextOr<'a, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextOrVisitor<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for TextOrVisitor<'a, T> {
            type Value = TextOr<'a, T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(Cow::Owned(text)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TextOr::Items(items))
            }
        }
        deserializer.deserialize_any(TextOrVisitor(PhantomData))
    }
}

impl<T: Serialize> Serialize for TextOr<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TextOr::Text(text) => serializer.serialize_str(text),
            TextOr::Items(items) => items.serialize(serializer),
        }
    }
}
