//! A whole Chat Completions answer → a Responses answer.
use super::{
    custom,
    output::{Content, Item, Response, Summary, Usage, now},
};
use crate::convert::{
    ConvertError, StreamContext,
    wire::{TextOr, chat},
};

/// Converts a whole Chat answer; calls to the request's custom tools (`context.custom_tools`)
/// become `custom_tool_call` items.
pub fn answer(body: &[u8], context: &StreamContext) -> Result<Vec<u8>, ConvertError> {
    let response = chat::Response::parse(body)?;
    let choice = &response.choices[0];
    let message = &choice.message;
    let base = response.id.strip_prefix("chatcmpl-").unwrap_or(&response.id);
    let mut output = Vec::new();
    if let Some(text) = message.reasoning_text() {
        output
            .push(Item::Reasoning { id: format!("rs_{base}"), summary: vec![Summary::new(text.to_owned())] });
    }
    let mut content = Vec::new();
    match &message.content {
        Some(TextOr::Text(text)) if !text.is_empty() => {
            content.push(Content::text(text.clone().into_owned()))
        }
        Some(TextOr::Items(parts)) => {
            for part in parts {
                if let Some(text) = &part.text {
                    content.push(Content::text(text.clone().into_owned()));
                } else if let Some(refusal) = &part.refusal {
                    content.push(Content::Refusal { refusal: refusal.clone().into_owned() });
                }
            }
        }
        _ => {}
    }
    if let Some(refusal) = message.refusal.as_deref().filter(|r| !r.is_empty()) {
        content.push(Content::Refusal { refusal: refusal.to_owned() });
    }
    if !content.is_empty() {
        output.push(Item::Message {
            id: format!("msg_{base}"),
            status: "completed",
            role: "assistant",
            content,
        });
    }
    for (i, call) in message.tool_calls.iter().flatten().enumerate() {
        let call_id =
            if call.id.is_empty() { format!("call_{base}_{i}") } else { call.id.clone().into_owned() };
        let name = call.function.name.clone().into_owned();
        output.push(if context.custom_tools.contains(&name) {
            let input = custom::input(&call.function.arguments);
            Item::CustomToolCall { id: format!("ctc_{base}_{i}"), status: "completed", call_id, name, input }
        } else {
            let arguments = match call.function.arguments.trim() {
                "" => "{}".to_owned(),
                _ => call.function.arguments.clone().into_owned(),
            };
            Item::FunctionCall { id: format!("fc_{base}_{i}"), status: "completed", call_id, name, arguments }
        });
    }
    let id = format!("resp_{base}");
    let mut converted = Response::new(&id, response.created.unwrap_or_else(now), &response.model, &output)
        .finished(choice.finish_reason.as_deref());
    converted.usage = Some(Usage::from_chat(&response.usage.unwrap_or_default()));
    serde_json::to_vec(&converted).map_err(|e| ConvertError::invalid("", e))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::convert::{
        Conversion,
        testing::{context, fixture, json},
    };

    #[test]
    fn converts_a_whole_answer_with_reasoning_tools_and_cached_usage() {
        let converted = answer(&fixture("chat.answer.json"), &context()).expect("converts");
        assert_eq!(json(&converted), json(&fixture("responses.answer.json")));
    }

    #[test]
    fn answers_custom_tool_calls_and_incomplete_answers() {
        let body = json!({"id": "chatcmpl-1", "created": 5, "model": "m", "choices": [{"index": 0, "finish_reason": "length",
            "message": {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin Patch\\n\"}"}}]}}]});
        let converted = json(&answer(body.to_string().as_bytes(), &context()).expect("converts"));
        assert_eq!(
            converted["output"],
            json!([{"type": "custom_tool_call", "id": "ctc_1_0", "status": "completed", "call_id": "c1", "name": "apply_patch", "input": "*** Begin Patch\n"}])
        );
        assert_eq!(converted["status"], "incomplete");
        assert_eq!(converted["incomplete_details"], json!({"reason": "max_output_tokens"}));
        // Without the request's context the call is an ordinary function call.
        let converted =
            json(&Conversion::ResponsesToChat.answer(body.to_string().as_bytes()).expect("converts"));
        assert_eq!(converted["output"][0]["type"], "function_call");
    }

    #[test]
    fn upstream_errors_take_the_openai_shape() {
        let converted = json(&Conversion::ResponsesToChat.error(
            429,
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
        ));
        assert_eq!(
            converted,
            json!({"error": {"message": "Rate limit reached", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
        );
        assert_eq!(json(&Conversion::ResponsesToChat.error(500, b"oops"))["error"]["message"], "oops");
    }
}
