//! A Chat Completions request → a Messages request.
use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::convert::{
    ConvertError, Target,
    wire::{
        TextOr,
        chat::{self, Part},
        empty_object, empty_schema,
        messages::{self, Block, Source, SourceField},
    },
};

const TARGET: &str = "Anthropic Messages";

/// The output cap when neither the client nor the model gives one.
const DEFAULT_MAX_TOKENS: u64 = 4096;

fn is_zero(value: Option<&RawValue>) -> bool {
    value.is_none_or(|v| matches!(v.get(), "0" | "0.0" | "null"))
}

/// Converts the body of a `/v1/chat/completions` request.
pub fn request(body: &[u8], target: &Target<'_>) -> Result<Vec<u8>, ConvertError> {
    let request: chat::Request<'_> =
        serde_json::from_slice(body).map_err(|e| ConvertError::from_json(&e, TARGET))?;
    refuse_inexpressible(&request)?;

    let mut system = Vec::new();
    let mut messages: Vec<messages::Message<'_>> = Vec::with_capacity(request.messages.len());
    for (i, message) in request.messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        match message.role.as_ref() {
            "system" | "developer" => {
                for text in texts(message.content.as_ref(), &field)? {
                    system.push(text_block(text));
                }
            }
            "user" => {
                let blocks = user_blocks(message.content.as_ref(), &field)?;
                push(&mut messages, "user", blocks);
            }
            "assistant" => {
                let mut blocks = Vec::new();
                for text in texts(message.content.as_ref(), &field)? {
                    if !text.is_empty() {
                        blocks.push(text_block(text));
                    }
                }
                if let Some(refusal) = message.refusal.as_deref().filter(|r| !r.is_empty()) {
                    blocks.push(text_block(Cow::Borrowed(refusal)));
                }
                for (j, call) in message.tool_calls.iter().flatten().enumerate() {
                    let arguments = call.function.arguments.trim();
                    let input = if arguments.is_empty() {
                        empty_object()
                    } else {
                        serde_json::from_str::<&RawValue>(arguments).map_err(|e| {
                            ConvertError::invalid(
                                format!("{field}.tool_calls[{j}].function.arguments"),
                                format_args!("is not JSON: {e}"),
                            )
                        })?
                    };
                    blocks.push(Block {
                        kind: "tool_use".into(),
                        id: Some(Cow::Borrowed(&call.id)),
                        name: Some(Cow::Borrowed(&call.function.name)),
                        input: Some(input),
                        ..Default::default()
                    });
                }
                // An empty assistant turn says nothing (and Anthropic refuses empty text).
                if !blocks.is_empty() {
                    messages
                        .push(messages::Message { role: "assistant".into(), content: TextOr::Items(blocks) });
                }
            }
            "tool" => {
                let id = message
                    .tool_call_id
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.tool_call_id"), "is required"))?;
                let content = match &message.content {
                    None => None,
                    Some(TextOr::Text(text)) => Some(TextOr::Text(Cow::Borrowed(text.as_ref()))),
                    Some(TextOr::Items(_)) => {
                        Some(TextOr::Items(user_blocks(message.content.as_ref(), &field)?))
                    }
                };
                let result = Block {
                    kind: "tool_result".into(),
                    tool_use_id: Some(Cow::Borrowed(id)),
                    content,
                    ..Default::default()
                };
                push(&mut messages, "user", vec![result]);
            }
            other => {
                return Err(ConvertError::unsupported(
                    format!("{field}.role"),
                    format_args!("(`{other}`) cannot be converted to {TARGET}"),
                ));
            }
        }
    }

    let cap = target.max_output_tokens;
    let max_tokens = match request.max_completion_tokens.or(request.max_tokens) {
        Some(asked) if cap > 0 => asked.min(cap),
        Some(asked) => asked,
        None if cap > 0 => cap,
        None => DEFAULT_MAX_TOKENS,
    };
    let continues_tool_call = request.messages.last().is_some_and(|m| m.role == "tool");
    let thinking = match request.reasoning_effort.as_deref() {
        _ if continues_tool_call => None,
        None | Some("none" | "minimal") => None,
        Some(effort) => {
            let budget: u64 = match effort {
                "low" => 1024,
                "medium" => 4096,
                "high" | "xhigh" => 16384,
                other => {
                    return Err(ConvertError::invalid(
                        "reasoning_effort",
                        format_args!("unknown effort `{other}`"),
                    ));
                }
            };
            // Anthropic's budget is at least 1024 and below max_tokens.
            let budget = budget.min(max_tokens.saturating_sub(1));
            (budget >= 1024)
                .then(|| messages::Thinking { kind: "enabled".into(), budget_tokens: Some(budget) })
        }
    };
    let tools = request.tools.as_deref().map(convert_tools).transpose()?;
    let tool_choice = convert_tool_choice(request.tool_choice, request.parallel_tool_calls)?;
    let user = request.user.as_deref().or(request.safety_identifier.as_deref());
    let out = messages::Request {
        model: Cow::Borrowed(target.upstream_model),
        messages,
        system: (!system.is_empty()).then_some(TextOr::Items(system)),
        max_tokens: Some(max_tokens),
        stop_sequences: request.stop.map(|stop| match stop {
            TextOr::Text(one) => vec![one],
            TextOr::Items(many) => many,
        }),
        stream: request.stream,
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        tools: tools.filter(|t| !t.is_empty()),
        tool_choice,
        thinking,
        metadata: user.map(|user| messages::Metadata { user_id: Some(Cow::Borrowed(user)) }),
        ..Default::default()
    };
    serde_json::to_vec(&out).map_err(|e| ConvertError::invalid("", e))
}

fn refuse_inexpressible(request: &chat::Request<'_>) -> Result<(), ConvertError> {
    let no =
        |field: &str| Err(ConvertError::unsupported(field, format_args!("cannot be converted to {TARGET}")));
    if request.n.is_some_and(|n| n > 1) {
        return Err(ConvertError::unsupported(
            "n",
            format_args!("above 1 cannot be converted to {TARGET} (one answer per request)"),
        ));
    }
    if request.logprobs == Some(true) {
        return no("logprobs");
    }
    if !is_zero(request.top_logprobs) {
        return no("top_logprobs");
    }
    if request.logit_bias.is_some_and(|b| !matches!(b.get().trim(), "{}" | "null")) {
        return no("logit_bias");
    }
    if !is_zero(request.presence_penalty) {
        return no("presence_penalty");
    }
    if !is_zero(request.frequency_penalty) {
        return no("frequency_penalty");
    }
    if let Some(format) = request.response_format {
        #[derive(serde::Deserialize)]
        struct Format<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
        }
        let format: Format<'_> =
            serde_json::from_str(format.get()).map_err(|e| ConvertError::invalid("response_format", e))?;
        if format.kind != "text" {
            return Err(ConvertError::unsupported(
                "response_format",
                format_args!("(`{}`) cannot be converted to {TARGET}", format.kind),
            ));
        }
    }
    if request.modalities.as_ref().is_some_and(|m| m.iter().any(|m| m != "text")) {
        return no("modalities");
    }
    Ok(())
}

/// Appends blocks to the conversation: to the last message when it has the same role (tool
/// results and the user text after them make one user turn).
fn push<'a>(messages: &mut Vec<messages::Message<'a>>, role: &'static str, blocks: Vec<Block<'a>>) {
    if let Some(last) = messages.last_mut()
        && last.role == role
        && let TextOr::Items(existing) = &mut last.content
    {
        existing.extend(blocks);
        return;
    }
    messages.push(messages::Message { role: role.into(), content: TextOr::Items(blocks) });
}

fn text_block(text: Cow<'_, str>) -> Block<'_> {
    Block { kind: "text".into(), text: Some(text), ..Default::default() }
}

/// The texts of a content (a string, or its text and refusal parts).
fn texts<'a>(
    content: Option<&'a TextOr<'a, Part<'a>>>,
    field: &str,
) -> Result<Vec<Cow<'a, str>>, ConvertError> {
    match content {
        None => Ok(Vec::new()),
        Some(TextOr::Text(text)) => Ok(vec![Cow::Borrowed(text.as_ref())]),
        Some(TextOr::Items(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match (part.kind.as_ref(), &part.text, &part.refusal) {
                ("text", Some(text), _) | ("refusal", _, Some(text)) => Ok(Cow::Borrowed(text.as_ref())),
                (kind, _, _) => Err(ConvertError::unsupported(
                    format!("{field}.content[{j}].type"),
                    format_args!("`{kind}` is not allowed here (text only)"),
                )),
            })
            .collect(),
    }
}

fn user_blocks<'a>(
    content: Option<&'a TextOr<'a, Part<'a>>>,
    field: &str,
) -> Result<Vec<Block<'a>>, ConvertError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(TextOr::Text(text)) => return Ok(vec![text_block(Cow::Borrowed(text))]),
        Some(TextOr::Items(parts)) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let field = format!("{field}.content[{j}]");
        match part.kind.as_ref() {
            "text" => blocks.push(text_block(Cow::Borrowed(part.text.as_deref().unwrap_or("")))),
            "image_url" => {
                let url = part
                    .image_url
                    .as_ref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.image_url"), "is required"))?;
                blocks.push(Block {
                    kind: "image".into(),
                    source: Some(SourceField::Media(source(&url.url))),
                    ..Default::default()
                });
            }
            "file" => {
                let data = part.file.as_ref().and_then(|f| f.file_data.as_deref()).ok_or_else(|| {
                    ConvertError::unsupported(
                        format!("{field}.file"),
                        format_args!("(a file by id) cannot be converted to {TARGET}; send `file_data`"),
                    )
                })?;
                let title = part.file.as_ref().and_then(|f| f.filename.as_deref()).map(Cow::Borrowed);
                blocks.push(Block {
                    kind: "document".into(),
                    source: Some(SourceField::Media(source(data))),
                    title,
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
    Ok(blocks)
}

/// A `data:` URL → a base64 source; any other URL → a URL source.
fn source(url: &str) -> Source<'_> {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((media_type, data)) = rest.split_once(";base64,")
    {
        return Source {
            kind: "base64".into(),
            media_type: Some(Cow::Borrowed(media_type)),
            data: Some(Cow::Borrowed(data)),
            url: None,
        };
    }
    Source { kind: "url".into(), media_type: None, data: None, url: Some(Cow::Borrowed(url)) }
}

fn convert_tools<'a>(tools: &'a [chat::Tool<'a>]) -> Result<Vec<messages::Tool<'a>>, ConvertError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| match (tool.kind.as_ref(), &tool.function) {
            ("function", Some(function)) => Ok(messages::Tool {
                kind: None,
                name: Cow::Borrowed(&function.name),
                description: function.description.as_deref().map(Cow::Borrowed),
                input_schema: Some(function.parameters.unwrap_or(empty_schema())),
            }),
            (kind, _) => Err(ConvertError::unsupported(
                format!("tools[{i}]"),
                format_args!("(a `{kind}` tool) cannot be converted to {TARGET}"),
            )),
        })
        .collect()
}

fn convert_tool_choice<'a>(
    choice: Option<&'a RawValue>,
    parallel: Option<bool>,
) -> Result<Option<messages::ToolChoice<'a>>, ConvertError> {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        function: Option<NamedFunction<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct NamedFunction<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
    }
    let disable_parallel = (parallel == Some(false)).then_some(true);
    let Some(choice) = choice else {
        return Ok(disable_parallel.map(|d| messages::ToolChoice {
            kind: "auto".into(),
            name: None,
            disable_parallel_tool_use: Some(d),
        }));
    };
    let (kind, name) = if let Ok(mode) = serde_json::from_str::<&str>(choice.get()) {
        let kind = match mode {
            "auto" => "auto",
            "none" => "none",
            "required" => "any",
            other => {
                return Err(ConvertError::invalid("tool_choice", format_args!("unknown mode `{other}`")));
            }
        };
        (kind, None)
    } else {
        let named: Named<'a> =
            serde_json::from_str(choice.get()).map_err(|e| ConvertError::invalid("tool_choice", e))?;
        match (named.kind.as_ref(), named.function) {
            ("function", Some(function)) => ("tool", Some(function.name)),
            (kind, _) => {
                return Err(ConvertError::unsupported(
                    "tool_choice",
                    format_args!("(`{kind}`) cannot be converted to {TARGET}"),
                ));
            }
        }
    };
    let disable_parallel = disable_parallel.filter(|_| kind != "none");
    Ok(Some(messages::ToolChoice { kind: kind.into(), name, disable_parallel_tool_use: disable_parallel }))
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
