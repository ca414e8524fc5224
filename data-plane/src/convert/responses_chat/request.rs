//! A Responses request → a Chat Completions request.
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::convert::{
    ConvertError, Target,
    wire::{TextOr, chat, responses, static_json},
};

const TARGET: &str = "Chat Completions";

/// The arguments schema a `custom` (free-form) tool becomes: one string.
const CUSTOM_SCHEMA: &str = r#"{"type":"object","properties":{"input":{"type":"string","description":"The tool's whole input, as raw text in the format the tool describes."}},"required":["input"],"additionalProperties":false}"#;

fn custom_schema() -> &'static RawValue {
    static SCHEMA: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    static_json(&SCHEMA, CUSTOM_SCHEMA)
}

/// Converts the body of a `/v1/responses` request.
pub fn request(body: &[u8], target: &Target<'_>) -> Result<Vec<u8>, ConvertError> {
    let request: responses::Request<'_> =
        serde_json::from_slice(body).map_err(|e| ConvertError::from_json(&e, TARGET))?;
    refuse_stateful(&request)?;

    let mut builder = Builder::default();
    if let Some(instructions) = request.instructions.as_deref().filter(|i| !i.is_empty()) {
        builder.messages.push(chat::Message {
            role: "system".into(),
            content: Some(TextOr::Text(Cow::Borrowed(instructions))),
            ..Default::default()
        });
    }
    match &request.input {
        None => {}
        Some(TextOr::Text(text)) => builder.messages.push(chat::Message {
            role: "user".into(),
            content: Some(TextOr::Text(Cow::Borrowed(text))),
            ..Default::default()
        }),
        Some(TextOr::Items(items)) => {
            for (i, item) in items.iter().enumerate() {
                builder.item(item, i)?;
            }
        }
    }
    builder.flush();

    let mut tools = Vec::new();
    for (i, tool) in request.tools.iter().flatten().enumerate() {
        convert_tool(tool, &format!("tools[{i}]"), &mut tools)?;
    }
    let tool_choice = request.tool_choice.map(convert_tool_choice).transpose()?.flatten();
    let response_format =
        request.text.as_ref().and_then(|t| t.format).map(response_format).transpose()?.flatten();
    let stream = request.stream.unwrap_or(false);
    let cap = target.max_output_tokens;
    let max_tokens = match request.max_output_tokens {
        Some(asked) if cap > 0 => Some(asked.min(cap)),
        asked => asked,
    };
    let has_tools = !tools.is_empty();
    let chat = chat::Request {
        model: Cow::Borrowed(target.upstream_model),
        messages: builder.messages,
        max_tokens,
        stream: request.stream,
        stream_options: stream.then_some(chat::StreamOptions { include_usage: Some(true) }),
        temperature: request.temperature,
        top_p: request.top_p,
        tools: has_tools.then_some(tools),
        tool_choice: tool_choice.as_deref().filter(|_| has_tools),
        parallel_tool_calls: request.parallel_tool_calls.filter(|_| has_tools),
        response_format: response_format.as_deref(),
        ..Default::default()
    };
    serde_json::to_vec(&chat).map_err(|e| ConvertError::invalid("", e))
}

/// Fields that need state a Chat upstream does not keep, or output it cannot produce.
fn refuse_stateful(request: &responses::Request<'_>) -> Result<(), ConvertError> {
    let stateless = "needs a stored response, which a stateless Chat Completions upstream does not keep (send the whole conversation in `input`)";
    if request.previous_response_id.is_some() {
        return Err(ConvertError::unsupported("previous_response_id", stateless));
    }
    if request.conversation.is_some() {
        return Err(ConvertError::unsupported("conversation", stateless));
    }
    if request.prompt.is_some() {
        return Err(ConvertError::unsupported(
            "prompt",
            "(a stored prompt template) cannot be converted to Chat Completions",
        ));
    }
    if request.background == Some(true) {
        return Err(ConvertError::unsupported("background", "cannot be converted to Chat Completions"));
    }
    if request.max_tool_calls.is_some_and(|m| m.get() != "null") {
        return Err(ConvertError::unsupported("max_tool_calls", "cannot be converted to Chat Completions"));
    }
    if request.top_logprobs.is_some_and(|t| !matches!(t.get(), "0" | "null")) {
        return Err(ConvertError::unsupported("top_logprobs", "cannot be converted to Chat Completions"));
    }
    for (i, include) in request.include.iter().flatten().enumerate() {
        // Encrypted reasoning is OpenAI's own; without it the reasoning comes as summary text.
        if include != "reasoning.encrypted_content" {
            return Err(ConvertError::unsupported(
                format!("include[{i}]"),
                format_args!("(`{include}`) cannot be produced by a Chat Completions upstream"),
            ));
        }
    }
    Ok(())
}

/// Chat messages built from input items: the assistant-side items of one turn (reasoning,
/// text, calls) become one assistant message.
#[derive(Default)]
struct Builder<'a> {
    messages: Vec<chat::Message<'a>>,
    reasoning: Vec<&'a str>,
    texts: Vec<&'a str>,
    calls: Vec<chat::ToolCall<'a>>,
    /// Images from tool outputs, sent in a user message after the outputs.
    images: Vec<chat::Part<'a>>,
}

impl<'a> Builder<'a> {
    fn flush(&mut self) {
        self.flush_assistant();
        self.flush_images();
    }

    fn flush_assistant(&mut self) {
        if self.reasoning.is_empty() && self.texts.is_empty() && self.calls.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.texts).join("");
        let reasoning = std::mem::take(&mut self.reasoning).join("\n\n");
        let calls = std::mem::take(&mut self.calls);
        self.messages.push(chat::Message {
            role: "assistant".into(),
            content: (!text.is_empty() || calls.is_empty()).then_some(TextOr::Text(Cow::Owned(text))),
            tool_calls: (!calls.is_empty()).then_some(calls),
            reasoning_content: (!reasoning.is_empty()).then_some(Cow::Owned(reasoning)),
            ..Default::default()
        });
    }

    fn flush_images(&mut self) {
        if !self.images.is_empty() {
            let parts = std::mem::take(&mut self.images);
            self.messages.push(chat::Message {
                role: "user".into(),
                content: Some(TextOr::Items(parts)),
                ..Default::default()
            });
        }
    }

    fn item(&mut self, item: &'a responses::Item<'a>, i: usize) -> Result<(), ConvertError> {
        let field = format!("input[{i}]");
        let kind = item.kind.as_deref().unwrap_or("message");
        match kind {
            "message" => {
                let role = item
                    .role
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.role"), "is required"))?;
                let content = item.content.as_ref();
                if role == "assistant" {
                    // Text after this turn's calls starts a new turn.
                    if !self.calls.is_empty() {
                        self.flush();
                    }
                    self.flush_images();
                    for part in content_parts(content) {
                        match (part.kind.as_ref(), &part.text, &part.refusal) {
                            (_, Some(text), _) | ("refusal", _, Some(text)) => self.texts.push(text),
                            (kind, _, _) => {
                                return Err(ConvertError::unsupported(
                                    format!("{field}.content"),
                                    format_args!(
                                        "(`{kind}` in an assistant message) cannot be converted to {TARGET}"
                                    ),
                                ));
                            }
                        }
                    }
                    if let Some(TextOr::Text(text)) = content {
                        self.texts.push(text);
                    }
                    return Ok(());
                }
                let role = match role {
                    "user" => "user",
                    // Chat-compatible servers know `system`; fewer know `developer`.
                    "system" | "developer" => "system",
                    other => {
                        return Err(ConvertError::invalid(
                            format!("{field}.role"),
                            format_args!("unknown role `{other}`"),
                        ));
                    }
                };
                self.flush();
                let content = match content {
                    None => TextOr::Text(Cow::Borrowed("")),
                    Some(TextOr::Text(text)) => TextOr::Text(Cow::Borrowed(text)),
                    Some(TextOr::Items(parts)) => {
                        let mut out = Vec::with_capacity(parts.len());
                        for (j, part) in parts.iter().enumerate() {
                            out.push(input_part(part, &format!("{field}.content[{j}]"))?);
                        }
                        simplify(out)
                    }
                };
                self.messages.push(chat::Message {
                    role: role.into(),
                    content: Some(content),
                    ..Default::default()
                });
            }
            "function_call" | "custom_tool_call" => {
                self.flush_images();
                let call_id = item
                    .call_id
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.call_id"), "is required"))?;
                let name = item
                    .name
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.name"), "is required"))?;
                let arguments = if kind == "function_call" {
                    Cow::Borrowed(item.arguments.as_deref().unwrap_or("{}"))
                } else {
                    Cow::Owned(serde_json::json!({"input": item.input.as_deref().unwrap_or("")}).to_string())
                };
                self.calls.push(chat::ToolCall {
                    id: call_id.into(),
                    kind: "function".into(),
                    function: chat::FunctionCall { name: name.into(), arguments },
                });
            }
            "function_call_output" | "custom_tool_call_output" => {
                self.flush_assistant();
                let call_id = item
                    .call_id
                    .as_deref()
                    .ok_or_else(|| ConvertError::invalid(format!("{field}.call_id"), "is required"))?;
                let text = match &item.output {
                    None => Cow::Borrowed(""),
                    Some(TextOr::Text(text)) => Cow::Borrowed(text.as_ref()),
                    Some(TextOr::Items(parts)) => {
                        let mut texts = Vec::new();
                        for (j, part) in parts.iter().enumerate() {
                            match (part.kind.as_ref(), &part.text) {
                                (_, Some(text)) => texts.push(text.as_ref()),
                                _ => self.images.push(input_part(part, &format!("{field}.output[{j}]"))?),
                            }
                        }
                        Cow::Owned(texts.join("\n\n"))
                    }
                };
                self.messages.push(chat::Message {
                    role: "tool".into(),
                    content: Some(TextOr::Text(text)),
                    tool_call_id: Some(Cow::Borrowed(call_id)),
                    ..Default::default()
                });
            }
            "reasoning" => {
                if !self.calls.is_empty() || !self.texts.is_empty() {
                    self.flush();
                }
                self.flush_images();
                let summary = item.summary.iter().flatten();
                let content = content_parts(item.content.as_ref());
                for part in summary.chain(content) {
                    if let Some(text) = part.text.as_deref().filter(|t| !t.is_empty()) {
                        self.reasoning.push(text);
                    }
                }
            }
            // A search OpenAI ran in an earlier turn: its findings are in the assistant text
            // that follows, which is kept.
            "web_search_call" => {}
            other => {
                return Err(ConvertError::unsupported(
                    format!("{field}.type"),
                    format_args!("`{other}` cannot be converted to {TARGET}"),
                ));
            }
        }
        Ok(())
    }
}

fn content_parts<'a>(content: Option<&'a TextOr<'a, responses::Part<'a>>>) -> &'a [responses::Part<'a>] {
    match content {
        Some(TextOr::Items(parts)) => parts,
        _ => &[],
    }
}

/// All-text content → one string (every Chat upstream takes that), else parts.
fn simplify(parts: Vec<chat::Part<'_>>) -> TextOr<'_, chat::Part<'_>> {
    if parts.iter().all(|p| p.kind == "text") {
        let mut texts: Vec<Cow<'_, str>> = parts.into_iter().filter_map(|p| p.text).collect();
        if texts.len() == 1
            && let Some(text) = texts.pop()
        {
            return TextOr::Text(text);
        }
        return TextOr::Text(Cow::Owned(texts.join("\n\n")));
    }
    TextOr::Items(parts)
}

fn input_part<'a>(part: &'a responses::Part<'a>, field: &str) -> Result<chat::Part<'a>, ConvertError> {
    match part.kind.as_ref() {
        "input_text" | "output_text" | "text" => Ok(chat::Part {
            kind: "text".into(),
            text: Some(Cow::Borrowed(part.text.as_deref().unwrap_or(""))),
            ..Default::default()
        }),
        "input_image" => {
            let url = part.image_url.as_deref().ok_or_else(|| {
                ConvertError::unsupported(
                    format!("{field}.file_id"),
                    "(an uploaded file) cannot be converted to Chat Completions; send `image_url`",
                )
            })?;
            Ok(chat::Part {
                kind: "image_url".into(),
                image_url: Some(chat::ImageUrl {
                    url: url.into(),
                    detail: part.detail.as_deref().map(Cow::Borrowed),
                }),
                ..Default::default()
            })
        }
        "input_file" => {
            let data = part.file_data.as_deref().ok_or_else(|| {
                ConvertError::unsupported(
                    field.to_owned(),
                    "(a file by id or URL) cannot be converted to Chat Completions; send `file_data`",
                )
            })?;
            Ok(chat::Part {
                kind: "file".into(),
                file: Some(chat::File {
                    file_data: Some(data.into()),
                    file_id: None,
                    filename: part.filename.as_deref().map(Cow::Borrowed),
                }),
                ..Default::default()
            })
        }
        other => Err(ConvertError::unsupported(
            format!("{field}.type"),
            format_args!("`{other}` cannot be converted to {TARGET}"),
        )),
    }
}

fn convert_tool<'a>(
    tool: &'a responses::Tool<'a>,
    field: &str,
    out: &mut Vec<chat::Tool<'a>>,
) -> Result<(), ConvertError> {
    let name =
        || tool.name.as_deref().ok_or_else(|| ConvertError::invalid(format!("{field}.name"), "is required"));
    match tool.kind.as_ref() {
        "function" => out.push(chat::Tool {
            kind: "function".into(),
            function: Some(chat::Function {
                name: name()?.into(),
                description: tool.description.as_deref().map(Cow::Borrowed),
                parameters: tool.parameters,
                strict: tool.strict,
            }),
        }),
        "custom" => {
            let mut description = tool.description.as_deref().unwrap_or("").to_owned();
            if let Some(grammar) = tool.format.and_then(grammar) {
                description.push_str(&grammar);
            }
            out.push(chat::Tool {
                kind: "function".into(),
                function: Some(chat::Function {
                    name: name()?.into(),
                    description: Some(Cow::Owned(description)),
                    parameters: Some(custom_schema()),
                    strict: None,
                }),
            });
        }
        "namespace" => {
            for (i, inner) in tool.tools.iter().flatten().enumerate() {
                convert_tool(inner, &format!("{field}.tools[{i}]"), out)?;
            }
        }
        // Run by OpenAI's servers, never by the client: a Chat upstream has no search to run,
        // and Codex sends it with every request. Without it the model answers from what it knows.
        "web_search" | "web_search_preview" | "web_search_2025_08_26" | "web_search_preview_2025_03_11" => {}
        other => {
            return Err(ConvertError::unsupported(
                field,
                format_args!("is a `{other}` tool, which a {TARGET} upstream cannot run"),
            ));
        }
    }
    Ok(())
}

/// A custom tool's grammar, told to the model in the function's description.
fn grammar(format: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Format<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        syntax: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        definition: Option<Cow<'a, str>>,
    }
    let format: Format<'_> = serde_json::from_str(format.get()).ok()?;
    let definition = format.definition.filter(|_| format.kind == "grammar")?;
    let syntax = format.syntax.as_deref().unwrap_or("lark");
    Some(format!("\n\nThe input must follow this {syntax} grammar:\n{definition}"))
}

fn raw(value: &serde_json::Value, field: &str) -> Result<Box<RawValue>, ConvertError> {
    serde_json::value::to_raw_value(value).map_err(|e| ConvertError::invalid(field, e))
}

fn convert_tool_choice(choice: &RawValue) -> Result<Option<Box<RawValue>>, ConvertError> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
    }
    if let Ok(mode) = serde_json::from_str::<Cow<'_, str>>(choice.get()) {
        return match mode.as_ref() {
            "auto" | "none" | "required" => Ok(Some(raw(&serde_json::json!(mode), "tool_choice")?)),
            other => Err(ConvertError::invalid("tool_choice", format_args!("unknown mode `{other}`"))),
        };
    }
    let named: Named<'_> =
        serde_json::from_str(choice.get()).map_err(|e| ConvertError::invalid("tool_choice", e))?;
    match (named.kind.as_ref(), named.name) {
        ("function" | "custom", Some(name)) => Ok(Some(raw(
            &serde_json::json!({"type": "function", "function": {"name": name}}),
            "tool_choice",
        )?)),
        (kind, _) => Err(ConvertError::unsupported(
            "tool_choice",
            format_args!("(`{kind}`) cannot be converted to Chat Completions"),
        )),
    }
}

fn response_format(format: &RawValue) -> Result<Option<Box<RawValue>>, ConvertError> {
    #[derive(Deserialize)]
    struct Format<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, default)]
        name: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        schema: Option<&'a RawValue>,
        #[serde(borrow, default)]
        description: Option<Cow<'a, str>>,
        #[serde(default)]
        strict: Option<bool>,
    }
    let format: Format<'_> =
        serde_json::from_str(format.get()).map_err(|e| ConvertError::invalid("text.format", e))?;
    let value = match format.kind.as_ref() {
        "text" => return Ok(None),
        "json_object" => serde_json::json!({"type": "json_object"}),
        "json_schema" => {
            let mut schema = serde_json::json!({"name": format.name.as_deref().unwrap_or("output"), "schema": format.schema});
            if let Some(description) = format.description {
                schema["description"] = serde_json::json!(description);
            }
            if let Some(strict) = format.strict {
                schema["strict"] = serde_json::json!(strict);
            }
            serde_json::json!({"type": "json_schema", "json_schema": schema})
        }
        other => {
            return Err(ConvertError::unsupported(
                "text.format.type",
                format_args!("`{other}` cannot be converted to Chat Completions"),
            ));
        }
    };
    Ok(Some(raw(&value, "text.format")?))
}

/// The names of the request's `custom` tools (namespaced ones included): their calls go back
/// to the client as `custom_tool_call` items.
pub fn custom_tools(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Tools<'a> {
        #[serde(borrow, default)]
        tools: Option<Vec<responses::Tool<'a>>>,
    }
    fn collect(tools: &[responses::Tool<'_>], out: &mut Vec<String>) {
        for tool in tools {
            match (tool.kind.as_ref(), &tool.name, &tool.tools) {
                ("custom", Some(name), _) => out.push(name.clone().into_owned()),
                ("namespace", _, Some(inner)) => collect(inner, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(Tools { tools: Some(tools) }) = serde_json::from_slice::<Tools<'_>>(body) {
        collect(&tools, &mut out);
    }
    out
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
