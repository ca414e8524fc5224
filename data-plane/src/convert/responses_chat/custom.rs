//! A custom (free-form) tool's input, decoded as its call streams in.
//!
//! On the Chat upstream a custom tool is a function with one string parameter, so its
//! arguments arrive as JSON text split anywhere — `{"input":"*** Begin Patch\n…` — while the
//! Responses client wants the raw input. This decodes the string value of the object's first
//! member incrementally (escapes split across fragments included), so each fragment's text goes
//! out at once. Arguments of any other shape are passed through as they are.

/// The incremental decoder of one call's input.
#[derive(Debug, Default)]
pub struct Input {
    state: State,
    /// The whole decoded input so far.
    decoded: String,
}

#[derive(Debug, Default)]
enum State {
    /// Nothing yet.
    #[default]
    Start,
    /// Before the value's opening quote: what came so far (a few bytes).
    Prefix(String),
    /// Inside the string value.
    Value(Escape),
    /// After the closing quote: the rest (`}`) is ignored.
    Done,
    /// Not `{"key": "…"}`: the arguments are the input.
    Raw,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Escape {
    #[default]
    None,
    Backslash,
    /// `\u` and the hex digits so far; the high surrogate before it, if any.
    Unicode {
        high: Option<u16>,
        hex: String,
    },
    /// A high surrogate waiting for `\` `u` of its low half.
    Surrogate {
        high: u16,
        backslash: bool,
    },
}

/// How the prefix before the value looks so far.
enum Prefix {
    Incomplete,
    /// The value starts at this byte offset.
    Value(usize),
    NotAnObjectOfString,
}

fn scan_prefix(prefix: &str) -> Prefix {
    let bytes = prefix.as_bytes();
    let mut at = 0;
    let skip = |at: &mut usize| {
        while *at < bytes.len() && bytes[*at].is_ascii_whitespace() {
            *at += 1;
        }
    };
    skip(&mut at);
    match bytes.get(at) {
        None => return Prefix::Incomplete,
        Some(b'{') => at += 1,
        Some(_) => return Prefix::NotAnObjectOfString,
    }
    skip(&mut at);
    match bytes.get(at) {
        None => return Prefix::Incomplete,
        Some(b'"') => at += 1,
        Some(_) => return Prefix::NotAnObjectOfString,
    }
    // The key (no escapes in a parameter name).
    match bytes[at..].iter().position(|b| *b == b'"') {
        None => return Prefix::Incomplete,
        Some(end) => at += end + 1,
    }
    skip(&mut at);
    match bytes.get(at) {
        None => return Prefix::Incomplete,
        Some(b':') => at += 1,
        Some(_) => return Prefix::NotAnObjectOfString,
    }
    skip(&mut at);
    match bytes.get(at) {
        None => Prefix::Incomplete,
        Some(b'"') => Prefix::Value(at + 1),
        Some(_) => Prefix::NotAnObjectOfString,
    }
}

impl Input {
    /// Takes in an arguments fragment; the input text it adds.
    pub fn push(&mut self, fragment: &str) -> String {
        let mut added = String::new();
        match std::mem::take(&mut self.state) {
            State::Start => self.start(fragment.to_owned(), &mut added),
            State::Prefix(mut prefix) => {
                prefix.push_str(fragment);
                self.start(prefix, &mut added);
            }
            state @ State::Value(_) => {
                self.state = state;
                self.decode(fragment, &mut added);
            }
            State::Done => self.state = State::Done,
            State::Raw => {
                self.state = State::Raw;
                added.push_str(fragment);
            }
        }
        self.decoded.push_str(&added);
        added
    }

    /// Looks for the value's opening quote in what came so far.
    fn start(&mut self, prefix: String, added: &mut String) {
        match scan_prefix(&prefix) {
            Prefix::Incomplete => self.state = State::Prefix(prefix),
            Prefix::NotAnObjectOfString => {
                self.state = State::Raw;
                added.push_str(&prefix);
            }
            Prefix::Value(at) => {
                self.state = State::Value(Escape::None);
                self.decode(&prefix[at..], added);
            }
        }
    }

    fn decode(&mut self, text: &str, added: &mut String) {
        let State::Value(escape) = &mut self.state else { return };
        let mut escape = std::mem::take(escape);
        let mut done = false;
        for c in text.chars() {
            escape = match escape {
                Escape::None => match c {
                    '\\' => Escape::Backslash,
                    '"' => {
                        done = true;
                        break;
                    }
                    c => {
                        added.push(c);
                        Escape::None
                    }
                },
                Escape::Backslash => match c {
                    'u' => Escape::Unicode { high: None, hex: String::new() },
                    c => {
                        added.push(match c {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            other => other,
                        });
                        Escape::None
                    }
                },
                Escape::Unicode { high, mut hex } => {
                    hex.push(c);
                    if hex.len() < 4 {
                        Escape::Unicode { high, hex }
                    } else {
                        let unit = u16::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                        match (high, unit) {
                            (None, 0xD800..=0xDBFF) => Escape::Surrogate { high: unit, backslash: false },
                            (Some(high), 0xDC00..=0xDFFF) => {
                                let code =
                                    0x10000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(unit) - 0xDC00);
                                added.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                                Escape::None
                            }
                            (_, unit) => {
                                added.push(char::from_u32(u32::from(unit)).unwrap_or('\u{FFFD}'));
                                Escape::None
                            }
                        }
                    }
                }
                Escape::Surrogate { high, backslash: false } if c == '\\' => {
                    Escape::Surrogate { high, backslash: true }
                }
                Escape::Surrogate { high, backslash: true } if c == 'u' => {
                    Escape::Unicode { high: Some(high), hex: String::new() }
                }
                Escape::Surrogate { .. } => {
                    // A lone high surrogate: replaced, and this character taken as it is.
                    added.push('\u{FFFD}');
                    added.push(c);
                    Escape::None
                }
            };
        }
        self.state = if done { State::Done } else { State::Value(escape) };
    }

    /// The whole input: the decoded value, or the raw arguments if they were not
    /// `{"key": "…"}` (then `raw` is what was pushed).
    pub fn finish(&self, raw: &str) -> String {
        match self.state {
            State::Raw => raw.to_owned(),
            State::Start | State::Prefix(_) if !raw.trim().is_empty() => raw.to_owned(),
            _ => self.decoded.clone(),
        }
    }
}

/// A whole call's input from its arguments (not streamed).
pub fn input(arguments: &str) -> String {
    let mut decoder = Input::default();
    decoder.push(arguments);
    decoder.finish(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_input_however_the_arguments_are_split() {
        let input = "*** Begin Patch\n*** Add File: a.txt\n+\"hé\" \\ 😀\tend\n*** End Patch";
        let arguments = serde_json::json!({"input": input}).to_string();
        let escaped = r#"{ "input" : "\u00e9\ud83d\ude00\n" }"#;
        for (arguments, expected) in [(arguments.as_str(), input), (escaped, "é😀\n")] {
            assert_eq!(super::input(arguments), expected);
            let chars: Vec<char> = arguments.chars().collect();
            for at in 0..=chars.len() {
                let (a, b): (String, String) = (chars[..at].iter().collect(), chars[at..].iter().collect());
                let mut decoder = Input::default();
                let streamed = decoder.push(&a) + &decoder.push(&b);
                assert_eq!(streamed, expected, "split at {at}");
                assert_eq!(decoder.finish(arguments), expected);
            }
            let mut decoder = Input::default();
            let streamed: String = chars.iter().map(|c| decoder.push(&c.to_string())).collect();
            assert_eq!(streamed, expected);
        }
    }

    #[test]
    fn other_shapes_pass_through() {
        assert_eq!(input("plain text"), "plain text");
        assert_eq!(input(r#"{"n": 5}"#), r#"{"n": 5}"#);
        assert_eq!(input(""), "");
        let mut decoder = Input::default();
        assert_eq!(decoder.push("[1,"), "[1,");
        assert_eq!(decoder.push("2]"), "2]");
        assert_eq!(decoder.finish("[1,2]"), "[1,2]");
    }
}
