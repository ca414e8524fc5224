//! Usage an upstream reports, checked against what the request allowed (INTERFACE.md, "Hostile
//! clients and lying upstreams"): output above the request's output cap and input above what
//! its body can hold are not believed. Such a report is replaced by the local count, capped at
//! those bounds, and marked adjusted, so that one lying answer never bills more than the
//! request could have cost.
use router_proto::TokenUsage;

/// Prompt tokens a provider may add to what the body itself holds (system prompts for tool
/// use, per-message framing, an image given by reference in a small body).
pub const INPUT_OVERHEAD_TOKENS: u64 = 4096;
/// Prompt tokens allowed beyond the body when it refers to content stored elsewhere (a
/// previous response, an uploaded file, an image or document by URL): the largest context
/// windows offered, so that an honest answer is believed and a lie is still bounded.
pub const EXTERNAL_INPUT_TOKENS: u64 = 2_000_000;

/// Body fragments that name content the upstream reads from elsewhere.
const EXTERNAL_REFERENCES: [&[u8]; 6] = [
    b"\"previous_response_id\"",
    b"\"file_id\"",
    b"\"url\"",
    b"\"image_url\"",
    b"\"conversation\"",
    b"\"prompt\"",
];

/// The most a request can use, known before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The request's output cap: `max_tokens` (times the choices asked for), else the model's
    /// cap, else the default cap.
    pub output: u64,
    /// Bytes of the request body: no prompt holds more tokens than its text has bytes.
    pub body_bytes: u64,
}

/// Usage as it will be billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// The tokens billed.
    pub usage: TokenUsage,
    /// Whether the reported (or counted) usage was cut to the bounds.
    pub adjusted: bool,
}

impl Bounds {
    /// Bounds for a request of `body_bytes` whose output is capped at `output`.
    pub fn new(body_bytes: usize, output: u64) -> Bounds {
        Bounds { output, body_bytes: body_bytes as u64 }
    }

    /// The most prompt tokens (uncached, cached and written to a cache together) `body` can
    /// account for. Only looked at when a report exceeds the tight bound, so the scan of the
    /// body costs nothing on an honest answer.
    fn input(&self, body: &[u8]) -> u64 {
        let tight = self.body_bytes.saturating_add(INPUT_OVERHEAD_TOKENS);
        let external = EXTERNAL_REFERENCES.iter().any(|needle| memchr::memmem::find(body, needle).is_some());
        if external { tight.saturating_add(EXTERNAL_INPUT_TOKENS) } else { tight }
    }

    /// Checks what the upstream reported (`None`: nothing, the usage is counted locally) for a
    /// request whose body is `body`. `local` counts the request and answer locally; it is only
    /// called when needed.
    pub fn check(
        &self,
        body: &[u8],
        reported: Option<TokenUsage>,
        local: impl FnOnce() -> TokenUsage,
    ) -> Checked {
        let tight_input = self.body_bytes.saturating_add(INPUT_OVERHEAD_TOKENS);
        let Some(reported) = reported else {
            return self.cap(body, local());
        };
        let prompt = prompt_tokens(&reported);
        let output_believed = reported.output <= self.output;
        let input_believed = prompt <= tight_input || prompt <= self.input(body);
        if output_believed && input_believed {
            return Checked { usage: reported, adjusted: false };
        }
        let counted = self.cap(body, local()).usage;
        let mut usage = reported;
        if !output_believed {
            usage.output = counted.output;
        }
        if !input_believed {
            usage.input = counted.input;
            usage.cached_input = 0;
            usage.cache_write = 0;
        }
        Checked { usage, adjusted: true }
    }

    /// A local count cut to the bounds.
    fn cap(&self, body: &[u8], counted: TokenUsage) -> Checked {
        let output = counted.output.min(self.output);
        let limit = self.input(body);
        let mut usage = TokenUsage { output, ..counted };
        if prompt_tokens(&counted) > limit {
            usage = TokenUsage { input: limit, cached_input: 0, cache_write: 0, output };
        }
        Checked { usage, adjusted: usage != counted }
    }
}

/// Every prompt token: uncached, read from a cache and written to one.
fn prompt_tokens(usage: &TokenUsage) -> u64 {
    usage.input.saturating_add(usage.cached_input).saturating_add(usage.cache_write)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;

    fn usage(input: u64, cached_input: u64, output: u64) -> TokenUsage {
        TokenUsage { input, cached_input, cache_write: 0, output }
    }

    #[test]
    fn honest_usage_is_believed() {
        let bounds = Bounds::new(BODY.len(), 10);
        let local = || panic!("no local count for a believable report");
        let checked = bounds.check(BODY, Some(usage(9, 3, 10)), local);
        assert_eq!(checked, Checked { usage: usage(9, 3, 10), adjusted: false });
        // A provider's own framing and tool prompts are within the overhead.
        let checked = bounds.check(BODY, Some(usage(3_000, 0, 1)), local);
        assert!(!checked.adjusted);
    }

    #[test]
    fn output_beyond_the_cap_is_counted_locally() {
        let bounds = Bounds::new(BODY.len(), 10);
        let checked = bounds.check(BODY, Some(usage(11, 0, 4_500_000_000_000_000)), || usage(7, 0, 5));
        assert_eq!(checked, Checked { usage: usage(11, 0, 5), adjusted: true }, "the input was believable");
        // A local count above the cap is cut to it.
        let checked = bounds.check(BODY, Some(usage(11, 0, u64::MAX)), || usage(7, 0, 500));
        assert_eq!(checked, Checked { usage: usage(11, 0, 10), adjusted: true });
    }

    #[test]
    fn input_beyond_the_body_is_counted_locally() {
        let bounds = Bounds::new(BODY.len(), 10);
        let lie = TokenUsage { input: 1, cached_input: u64::MAX, cache_write: 5, output: 2 };
        let checked = bounds.check(BODY, Some(lie), || usage(8, 0, 2));
        assert_eq!(checked, Checked { usage: usage(8, 0, 2), adjusted: true });
    }

    #[test]
    fn content_stored_elsewhere_widens_the_input_bound() {
        let body = br#"{"model":"m","previous_response_id":"resp_1","input":"go on"}"#;
        let bounds = Bounds::new(body.len(), 100);
        let checked = bounds.check(body, Some(usage(150_000, 0, 50)), || panic!("believed"));
        assert!(!checked.adjusted);
        let checked = bounds.check(body, Some(usage(3_000_000, 0, 50)), || usage(4, 0, 50));
        assert_eq!(checked, Checked { usage: usage(4, 0, 50), adjusted: true });
    }

    #[test]
    fn local_counts_are_capped_too() {
        let bounds = Bounds::new(BODY.len(), 10);
        assert_eq!(
            bounds.check(BODY, None, || usage(8, 0, 3)),
            Checked { usage: usage(8, 0, 3), adjusted: false }
        );
        assert_eq!(
            bounds.check(BODY, None, || usage(8, 0, 30)),
            Checked { usage: usage(8, 0, 10), adjusted: true }
        );
    }
}
