"""One official SDK, unmodified, asking for a tool call whole and streamed; prints what the SDK
parsed as one JSON object, for the end-to-end test to check: the whole answer, the streamed one
as the SDK's stream helper assembled it, the helper's event types, and the (non-empty) text and
tool-call argument deltas in the order they came.

Usage: convert_check.py messages|chat|responses MODEL (ROUTER_URL and ROUTER_KEY in the
environment). Run by the tests in tests/e2e/conversion.rs, which script the mock upstream's
answer and check the result against it, natively and through protocol conversion:
- messages: the anthropic SDK (`messages.create`, `messages.stream`);
- chat: the openai SDK's chat (`chat.completions.create`, `chat.completions.stream`, usage asked);
- responses: the openai SDK's Responses API (`responses.create`, `responses.stream`).
"""
import json
import os
import sys

import anthropic
import openai

URL = os.environ["ROUTER_URL"]
KEY = os.environ["ROUTER_KEY"]
API, MODEL = sys.argv[1], sys.argv[2]

QUESTION = "What is the weather in Paris?"
PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city"},
        "unit": {"type": "string", "enum": ["c", "f"]},
    },
    "required": ["city"],
}
DESCRIPTION = "The current weather in a city"


def result(whole, final, events, pieces, texts):
    return {
        "whole": whole.model_dump(mode="json"),
        "stream": final.model_dump(mode="json"),
        "events": events,
        "arguments": [piece for piece in pieces if piece],
        "texts": [text for text in texts if text],
    }


def messages():
    client = anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0)
    args = dict(
        model=MODEL,
        max_tokens=1024,
        system="You are a weather bot.",
        tools=[{"name": "get_weather", "description": DESCRIPTION, "input_schema": PARAMETERS}],
        messages=[{"role": "user", "content": QUESTION}],
    )
    whole = client.messages.create(**args)
    with client.messages.stream(**args) as stream:
        events, pieces, texts = [], [], []
        for event in stream:
            events.append(event.type)
            if event.type == "input_json":
                pieces.append(event.partial_json)
            elif event.type == "text":
                texts.append(event.text)
        final = stream.get_final_message()
    return result(whole, final, events, pieces, texts)


def chat():
    client = openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0)
    args = dict(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "system", "content": "You are a weather bot."}, {"role": "user", "content": QUESTION}],
        tools=[{"type": "function", "function": {"name": "get_weather", "description": DESCRIPTION, "parameters": PARAMETERS}}],
    )
    whole = client.chat.completions.create(**args)
    with client.chat.completions.stream(**args, stream_options={"include_usage": True}) as stream:
        events, pieces, texts = [], [], []
        for event in stream:
            events.append(event.type)
            if event.type == "tool_calls.function.arguments.delta":
                pieces.append(event.arguments_delta)
            elif event.type == "content.delta":
                texts.append(event.delta)
        final = stream.get_final_completion()
    return result(whole, final, events, pieces, texts)


def responses():
    client = openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0)
    args = dict(
        model=MODEL,
        instructions="You are a weather bot.",
        input=QUESTION,
        tools=[{"type": "function", "name": "get_weather", "description": DESCRIPTION, "parameters": PARAMETERS, "strict": False}],
    )
    whole = client.responses.create(**args)
    with client.responses.stream(**args) as stream:
        events, pieces, texts = [], [], []
        for event in stream:
            events.append(event.type)
            if event.type == "response.function_call_arguments.delta":
                pieces.append(event.delta)
            elif event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = stream.get_final_response()
    return result(whole, final, events, pieces, texts)


print(json.dumps({"messages": messages, "chat": chat, "responses": responses}[API]()))
