//! A Messages request → a Chat Completions request.
use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::convert::{
    ConvertError, Target,
    wire::{
        TextOr,
        chat::{self, Part},
        empty_schema,
        messages::{self, Block},
    },
};

const TARGET: &str = "Chat Completions";

/// Converts the body of a `/v1/messages` request.
pub fn request(body: &[u8], target: &Target<'_>) -> Result<Vec<u8>, ConvertError> {
    let request: messages::Request<'_> =
        serde_json::from_slice(body).map_err(|e| ConvertError::from_json(&e, TARGET))?;
    let mut messages = Vec::with_capacity(request.messages.len() + 1);
    if let Some(system) = &request.system {
        let text = joined_text(system, "system")?;
        if !text.is_empty() {
            messages.push(chat::Message {
                role: "system".into(),
                content: Some(TextOr::Text(text)),
                ..Default::default()
            });
        }
    }
    for (i, message) in request.messages.iter().enumerate() {
        convert_message(message, i, &mut messages)?;
    }

    let tools = request.tools.as_deref().map(convert_tools).transpose()?;
    let has_tools = tools.as_ref().is_some_and(|t| !t.is_empty());
    let (tool_choice, parallel) = match &request.tool_choice {
        Some(choice) => convert_tool_choice(choice)?,
        None => (None, None),
    };
    if let Some(thinking) = &request.thinking
        && !matches!(thinking.kind.as_ref(), "enabled" | "disabled" | "adaptive")
    {
        return Err(ConvertError::invalid("thinking.type", format_args!("unknown type `{}`", thinking.kind)));
    }
    let format = request.output_config.as_ref().and_then(|c| c.format).or(request.output_format);
    let response_format = format.map(response_format).transpose()?;

    let stream = request.stream.unwrap_or(false);
    let cap = target.max_output_tokens;
    let max_tokens = match request.max_tokens {
        Some(asked) if cap > 0 => asked.min(cap),
        Some(asked) => asked,
        None => cap,
    };
    let chat = chat::Request {
        model: Cow::Borrowed(target.upstream_model),
        messages,
        max_tokens: (max_tokens > 0).then_some(max_tokens),
        stop: request.stop_sequences.map(TextOr::Items),
        stream: request.stream,
        stream_options: stream.then_some(chat::StreamOptions { include_usage: Some(true) }),
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        tools,
        tool_choice: tool_choice.as_deref(),
        parallel_tool_calls: parallel.filter(|_| has_tools),
        response_format: response_format.as_deref(),
        ..Default::default()
    };
    serde_json::to_vec(&chat).map_err(|e| ConvertError::invalid("", e))
}

/// The text of a system prompt or tool result: the string, or its text blocks joined.
fn joined_text<'a>(content: &'a TextOr<'a, Block<'a>>, field: &str) -> Result<Cow<'a, str>, ConvertError> {
    match content {
        TextOr::Text(text) => Ok(Cow::Borrowed(text.as_ref())),
        TextOr::Items(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                match (block.kind.as_ref(), &block.text) {
                    ("text", Some(text)) => texts.push(text.as_ref()),
                    _ => {
                        return Err(ConvertError::unsupported(
                            format!("{field}[{i}].type"),
                            format_args!("`{}` is not allowed here (text only)", block.kind),
                        ));
                    }
                }
            }
            Ok(join(texts))
        }
    }
}

fn join(texts: Vec<&str>) -> Cow<'_, str> {
    match texts.as_slice() {
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(texts.join("\n\n")),
    }
}

/// A Chat content: one string when it is all text (every Chat upstream takes that), else parts.
fn content<'a>(parts: Vec<Part<'a>>) -> Option<TextOr<'a, Part<'a>>> {
    if parts.iter().all(|p| p.kind == "text") {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p.text.as_deref()).collect();
        if texts.len() == 1 {
            return parts.into_iter().next().and_then(|p| p.text).map(TextOr::Text);
        }
        return Some(TextOr::Text(Cow::Owned(texts.join("\n\n"))));
    }
    Some(TextOr::Items(parts))
}

fn text_part(text: Cow<'_, str>) -> Part<'_> {
    Part { kind: "text".into(), text: Some(text), ..Default::default() }
}

/// An image or document block → a Chat part.
fn media_part<'a>(block: &'a Block<'a>, field: &str) -> Result<Part<'a>, ConvertError> {
    let Some(messages::SourceField::Media(source)) = &block.source else {
        return Err(ConvertError::invalid(format!("{field}.source"), "must be an object with a `type`"));
    };
    let data_url = || -> Result<String, ConvertError> {
        let media_type = source.media_type.as_deref().unwrap_or("application/octet-stream");
        let data = source
            .data
            .as_deref()
            .ok_or_else(|| ConvertError::invalid(format!("{field}.source.data"), "is required"))?;
        Ok(format!("data:{media_type};base64,{data}"))
    };
    match (block.kind.as_ref(), source.kind.as_ref()) {
        ("image", "base64") => Ok(Part {
            kind: "image_url".into(),
            image_url: Some(chat::ImageUrl { url: data_url()?.into(), detail: None }),
            ..Default::default()
        }),
        ("image", "url") => {
            let url = source
                .url
                .as_deref()
                .ok_or_else(|| ConvertError::invalid(format!("{field}.source.url"), "is required"))?;
            Ok(Part {
                kind: "image_url".into(),
                image_url: Some(chat::ImageUrl { url: url.into(), detail: None }),
                ..Default::default()
            })
        }
        ("document", "base64") => Ok(Part {
            kind: "file".into(),
            file: Some(chat::File {
                file_data: Some(data_url()?.into()),
                file_id: None,
                filename: Some(block.title.as_deref().unwrap_or("document.pdf").into()),
            }),
            ..Default::default()
        }),
        ("document", "text") => {
            let data = source
                .data
                .as_deref()
                .ok_or_else(|| ConvertError::invalid(format!("{field}.source.data"), "is required"))?;
            Ok(text_part(data.into()))
        }
        (_, kind) => Err(ConvertError::unsupported(
            format!("{field}.source.type"),
            format_args!(
                "`{kind}` cannot be converted to {TARGET} (base64 or URL images, base64 or text documents only)"
            ),
        )),
    }
}

fn convert_message<'a>(
    message: &'a messages::Message<'a>,
    i: usize,
    out: &mut Vec<chat::Message<'a>>,
) -> Result<(), ConvertError> {
    let blocks = match &message.content {
        TextOr::Text(text) => {
            let role = match message.role.as_ref() {
                "user" | "assistant" => message.role.clone(),
                other => {
                    return Err(ConvertError::invalid(
                        format!("messages[{i}].role"),
                        format_args!("unknown role `{other}`"),
                    ));
                }
            };
            out.push(chat::Message {
                role,
                content: Some(TextOr::Text(Cow::Borrowed(text))),
                ..Default::default()
            });
            return Ok(());
        }
        TextOr::Items(blocks) => blocks,
    };
    match message.role.as_ref() {
        "user" => user_message(blocks, i, out),
        "assistant" => {
            out.push(assistant_message(blocks, i)?);
            Ok(())
        }
        other => {
            Err(ConvertError::invalid(format!("messages[{i}].role"), format_args!("unknown role `{other}`")))
        }
    }
}

fn user_message<'a>(
    blocks: &'a [Block<'a>],
    i: usize,
    out: &mut Vec<chat::Message<'a>>,
) -> Result<(), ConvertError> {
    let mut parts = Vec::new();
    let mut result_images = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let field = format!("messages[{i}].content[{j}]");
        match block.kind.as_ref() {
            "text" => parts.push(text_part(Cow::Borrowed(block.text.as_deref().unwrap_or("")))),
            "image" | "document" => parts.push(media_part(block, &field)?),
            "tool_result" => {
                let id = block
                    .tool_use_id
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.tool_use_id"), "is required"))?;
                let text = match &block.content {
                    None => Cow::Borrowed(""),
                    Some(TextOr::Text(text)) => Cow::Borrowed(text.as_ref()),
                    Some(TextOr::Items(items)) => {
                        let mut texts = Vec::new();
                        for (k, item) in items.iter().enumerate() {
                            match item.kind.as_ref() {
                                "text" => texts.push(item.text.as_deref().unwrap_or("")),
                                "image" | "document" => {
                                    result_images.push(media_part(item, &format!("{field}.content[{k}]"))?)
                                }
                                other => {
                                    return Err(ConvertError::unsupported(
                                        format!("{field}.content[{k}].type"),
                                        format_args!(
                                            "`{other}` in a tool result cannot be converted to {TARGET}"
                                        ),
                                    ));
                                }
                            }
                        }
                        join(texts)
                    }
                };
                out.push(chat::Message {
                    role: "tool".into(),
                    content: Some(TextOr::Text(text)),
                    tool_call_id: Some(Cow::Borrowed(id)),
                    ..Default::default()
                });
            }
            other => {
                return Err(ConvertError::unsupported(
                    format!("{field}.type"),
                    format_args!("`{other}` cannot be converted to {TARGET}"),
                ));
            }
        }
    }
    // A Chat `tool` message holds text only: a result's images follow in the next user turn.
    result_images.append(&mut parts);
    if !result_images.is_empty() {
        out.push(chat::Message {
            role: "user".into(),
            content: content(result_images),
            ..Default::default()
        });
    }
    Ok(())
}

fn assistant_message<'a>(blocks: &'a [Block<'a>], i: usize) -> Result<chat::Message<'a>, ConvertError> {
    let mut texts = Vec::new();
    let mut reasoning = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let field = format!("messages[{i}].content[{j}]");
        match block.kind.as_ref() {
            "text" => texts.push(block.text.as_deref().unwrap_or("")),
            "thinking" => reasoning.push(block.thinking.as_deref().unwrap_or("")),
            // Encrypted by Anthropic, readable by no Chat upstream.
            "redacted_thinking" => {}
            "tool_use" => {
                let id = block
                    .id
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.id"), "is required"))?;
                let name = block
                    .name
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.name"), "is required"))?;
                calls.push(chat::ToolCall {
                    id: id.into(),
                    kind: "function".into(),
                    function: chat::FunctionCall {
                        name: name.into(),
                        arguments: compact_json(block.input.map_or("{}", RawValue::get)),
                    },
                });
            }
            other => {
                return Err(ConvertError::unsupported(
                    format!("{field}.type"),
                    format_args!("`{other}` cannot be converted to {TARGET}"),
                ));
            }
        }
    }
    let text = join(texts);
    let content = if text.is_empty() && !calls.is_empty() { None } else { Some(TextOr::Text(text)) };
    let reasoning = join(reasoning);
    Ok(chat::Message {
        role: "assistant".into(),
        content,
        tool_calls: (!calls.is_empty()).then_some(calls),
        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
        ..Default::default()
    })
}

/// Valid JSON without the whitespace between tokens (what a Chat upstream sends as arguments).
pub fn compact_json(json: &str) -> Cow<'_, str> {
    let mut in_string = false;
    let mut escaped = false;
    let needs = json.bytes().any(|b| {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            false
        } else {
            in_string = b == b'"';
            b.is_ascii_whitespace()
        }
    });
    if !needs {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            out.push(c);
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn convert_tools<'a>(tools: &'a [messages::Tool<'a>]) -> Result<Vec<chat::Tool<'a>>, ConvertError> {
    let empty = empty_schema();
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| match tool.kind.as_deref() {
            None | Some("custom") => Ok(chat::Tool {
                kind: "function".into(),
                function: Some(chat::Function {
                    name: Cow::Borrowed(&tool.name),
                    description: tool.description.as_deref().map(Cow::Borrowed),
                    parameters: Some(tool.input_schema.unwrap_or(empty)),
                    strict: None,
                }),
            }),
            Some(kind) => Err(ConvertError::unsupported(
                format!("tools[{i}]"),
                format_args!(
                    "is an Anthropic server tool (`{kind}`, `{}`) that a {TARGET} upstream cannot run",
                    tool.name
                ),
            )),
        })
        .collect()
}

/// `tool_choice` → Chat's `tool_choice` and `parallel_tool_calls`.
fn convert_tool_choice(
    choice: &messages::ToolChoice<'_>,
) -> Result<(Option<Box<RawValue>>, Option<bool>), ConvertError> {
    let value = match choice.kind.as_ref() {
        "auto" => serde_json::json!("auto"),
        "any" => serde_json::json!("required"),
        "none" => serde_json::json!("none"),
        "tool" => {
            let name = choice
                .name
                .as_deref()
                .ok_or_else(|| ConvertError::invalid("tool_choice.name", "is required"))?;
            serde_json::json!({"type": "function", "function": {"name": name}})
        }
        other => {
            return Err(ConvertError::invalid("tool_choice.type", format_args!("unknown type `{other}`")));
        }
    };
    let raw = serde_json::value::to_raw_value(&value).map_err(|e| ConvertError::invalid("tool_choice", e))?;
    Ok((Some(raw), choice.disable_parallel_tool_use.filter(|d| *d).map(|_| false)))
}

/// `output_config.format` (`{"type":"json_schema","schema":…}`) → Chat's `response_format`.
fn response_format(format: &RawValue) -> Result<Box<RawValue>, ConvertError> {
    #[derive(serde::Deserialize)]
    struct Format<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        schema: Option<&'a RawValue>,
    }
    let parsed: Format<'_> =
        serde_json::from_str(format.get()).map_err(|e| ConvertError::invalid("output_config.format", e))?;
    let schema = match (parsed.kind.as_ref(), parsed.schema) {
        ("json_schema", Some(schema)) => schema,
        (kind, _) => {
            return Err(ConvertError::unsupported(
                "output_config.format.type",
                format_args!("`{kind}` cannot be converted to {TARGET} (json_schema with a schema only)"),
            ));
        }
    };
    let value = serde_json::json!({
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": true},
    });
    serde_json::value::to_raw_value(&value).map_err(|e| ConvertError::invalid("output_config.format", e))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
