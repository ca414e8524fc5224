//! Property: a Chat request converted to Messages and back keeps what both protocols express.
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Conversion, Target};

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,!?\"\\\\\n\u{e9}\u{4e2d}]{1,24}"
}

fn arguments() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            any::<i32>().prop_map(Value::from),
            text().prop_map(Value::from),
            any::<bool>().prop_map(Value::from)
        ],
        0..4,
    )
    .prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// One exchange: a user turn, then an assistant answer that may call tools, whose results
/// come back as `tool` messages.
fn exchange() -> impl Strategy<Value = Vec<Value>> {
    (text(), prop::option::of(text()), prop::collection::vec(("[a-z_]{1,8}", arguments(), text()), 0..3)).prop_map(
        |(question, answer, calls)| {
            let mut messages = vec![json!({"role": "user", "content": question})];
            let mut assistant = json!({"role": "assistant"});
            if let Some(answer) = &answer {
                assistant["content"] = json!(answer);
            }
            if calls.is_empty() && answer.is_none() {
                assistant["content"] = json!("ok");
            }
            if !calls.is_empty() {
                assistant["tool_calls"] = calls
                    .iter()
                    .enumerate()
                    .map(|(i, (name, args, _))| {
                        json!({"id": format!("call_{i}_{name}"), "type": "function", "function": {"name": name, "arguments": args.to_string()}})
                    })
                    .collect();
            }
            messages.push(assistant);
            for (i, (name, _, result)) in calls.iter().enumerate() {
                messages.push(json!({"role": "tool", "tool_call_id": format!("call_{i}_{name}"), "content": result}));
            }
            messages
        },
    )
}

fn chat_request() -> impl Strategy<Value = Value> {
    (
        prop::option::of(text()),
        prop::collection::vec(exchange(), 1..4),
        prop::option::of(prop::collection::vec(text(), 1..3)),
        prop::option::of(0u8..=10),
        1u64..100_000,
        prop::collection::vec(("[a-z_]{1,8}", prop::option::of(text())), 0..3),
        any::<bool>(),
    )
        .prop_map(|(system, exchanges, stop, temperature, max_tokens, tools, stream)| {
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.extend(exchanges.into_iter().flatten());
            let mut body = json!({"model": "m", "messages": messages, "max_tokens": max_tokens});
            if let Some(stop) = stop {
                body["stop"] = json!(stop);
            }
            if let Some(t) = temperature {
                body["temperature"] = serde_json::from_str(&format!("0.{t}")).unwrap_or(json!(0));
            }
            if !tools.is_empty() {
                body["tools"] = tools
                    .iter()
                    .map(|(name, description)| {
                        let mut function = json!({"name": name, "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}});
                        if let Some(description) = description {
                            function["description"] = json!(description);
                        }
                        json!({"type": "function", "function": function})
                    })
                    .collect();
            }
            if stream {
                body["stream"] = json!(true);
            }
            body
        })
}

/// What both protocols express, in a comparable form.
fn essence(body: &Value) -> Value {
    let messages: Vec<Value> = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let calls: Vec<Value> = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    let args: Value = serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
                    json!([c["id"], c["function"]["name"], args])
                })
                .collect();
            json!({"role": m["role"], "content": m["content"], "calls": calls, "tool_call_id": m["tool_call_id"]})
        })
        .collect();
    let tools: Vec<Value> = body["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!([t["function"]["name"], t["function"]["description"], t["function"]["parameters"]]))
        .collect();
    let stop = match &body["stop"] {
        Value::String(one) => json!([one]),
        other => other.clone(),
    };
    json!({"messages": messages, "tools": tools, "stop": stop, "temperature": body["temperature"],
        "max_tokens": body["max_tokens"], "stream": body["stream"]})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chat_to_messages_to_chat_keeps_what_both_express(body in chat_request()) {
        let target = Target { upstream_model: "m", max_output_tokens: 0 };
        let messages = Conversion::ChatToMessages.request(body.to_string().as_bytes(), &target).expect("to messages");
        let back = Conversion::MessagesToChat.request(&messages, &target).expect("back to chat");
        let back: Value = serde_json::from_slice(&back).expect("json");
        prop_assert_eq!(essence(&back), essence(&body));
        if body["stream"] == true {
            prop_assert_eq!(&back["stream_options"], &json!({"include_usage": true}));
        }
    }
}
