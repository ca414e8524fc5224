//! Session affinity (INTERFACE.md "Coding agents"): requests of one session go to one channel
//! of the highest priority while it stays healthy; sessions spread over the channels; a
//! disabled channel's sessions move, and come back when it is enabled again.
use std::time::Duration;

use router_tests::{Backend, Gateway, eventually, http_client::post_json, mock::MockUpstream};
use serde_json::{Value, json};

on_both_backends!(sessions_keep_their_channel);

const NAMES: [&str; 3] = ["main", "second", "third"];

struct Channels {
    gw: Gateway,
    others: [MockUpstream; 2],
}

impl Channels {
    fn calls(&self) -> [usize; 3] {
        [self.gw.mock.calls(), self.others[0].calls(), self.others[1].calls()]
    }

    /// Sends one chat request; the index of the channel (upstream) that served it.
    async fn send(&self, headers: &[(&str, &str)], extra: Value) -> usize {
        let mut body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let bearer = self.gw.bearer();
        let mut all = vec![("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        let before = self.calls();
        let answer = post_json(&self.gw.url("/v1/chat/completions"), &all, &body).await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
        let after = self.calls();
        let served: Vec<usize> = (0..3).filter(|i| after[*i] > before[*i]).collect();
        assert_eq!(served.len(), 1, "one upstream per request: {before:?} -> {after:?}");
        served[0]
    }

    /// The one channel `n` requests went to, or a panic naming where they went.
    async fn all_to_one(&self, n: usize, headers: &[(&str, &str)], extra: Value) -> usize {
        let mut seen = Vec::with_capacity(n);
        for _ in 0..n {
            seen.push(self.send(headers, extra.clone()).await);
        }
        assert!(
            seen.iter().all(|c| *c == seen[0]),
            "one session, several channels: {seen:?} ({headers:?} {extra})"
        );
        seen[0]
    }
}

async fn sessions_keep_their_channel(backend: Backend) {
    let gw = Gateway::start(backend, &[]).await;
    let others = [MockUpstream::start(1).await, MockUpstream::start(1).await];
    for (name, mock) in NAMES[1..].iter().zip(&others) {
        gw.cp.add_channel(name, "openai", &format!("{}/v1", mock.url), "k", "gpt-4o-mini", &[]);
    }
    let channels = Channels { gw, others };
    // Without a session: weighted random, every channel in turn (and all three are known).
    eventually(Duration::from_secs(10), || async {
        channels.send(&[], json!({})).await;
        channels.calls().iter().all(|c| *c > 0).then_some(())
    })
    .await
    .expect("requests without a session reach every channel");

    // One session, by any of its carriers: one channel.
    let home = channels.all_to_one(20, &[("session_id", "codex-session-1")], json!({})).await;
    channels.all_to_one(8, &[("x-claude-code-session-id", "cc-1")], json!({})).await;
    channels.all_to_one(8, &[("session-id", "other-1")], json!({})).await;
    channels.all_to_one(8, &[], json!({"prompt_cache_key": "cache-1"})).await;
    let user_id = "user_abc_account__session_0f6e2c1a";
    channels.all_to_one(8, &[], json!({"metadata": {"user_id": user_id}})).await;

    // Many sessions spread over the channels of equal weight (expected 30 each of 90).
    let mut counts = [0usize; 3];
    for n in 0..90 {
        let session = format!("session-{n}");
        counts[channels.send(&[("x-claude-code-session-id", &session)], json!({})).await] += 1;
    }
    assert!(counts.iter().all(|c| (12..=50).contains(c)), "sessions per channel: {counts:?}");

    // Disabling the session's channel moves it (to one other channel); enabling it again
    // brings it back.
    let session = [("session_id", "codex-session-1")];
    channels.gw.cp.json(&["channel", "disable", NAMES[home]]);
    let away = eventually(Duration::from_secs(5), || async {
        Some(channels.send(&session, json!({})).await).filter(|c| *c != home)
    })
    .await
    .expect("a disabled channel's sessions move");
    assert_eq!(channels.all_to_one(10, &session, json!({})).await, away);
    channels.gw.cp.json(&["channel", "enable", NAMES[home]]);
    eventually(Duration::from_secs(5), || async {
        Some(channels.send(&session, json!({})).await).filter(|c| *c == home)
    })
    .await
    .expect("and come back when it is enabled again");
    assert_eq!(channels.all_to_one(10, &session, json!({})).await, home);
}
