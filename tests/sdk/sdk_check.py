"""The official OpenAI and Anthropic SDKs, unmodified, against a Code Router data plane.

Run by the end-to-end test `sdk::official_sdks_work_unmodified`, which starts the gateway and a
mock upstream and passes ROUTER_URL and ROUTER_KEY. Exits non-zero on the first failure.
"""
import os
import sys

import anthropic
import openai

URL = os.environ["ROUTER_URL"]
KEY = os.environ["ROUTER_KEY"]
EXPECTED = "tok0 tok1 tok2 tok3 tok4 "


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}", file=sys.stderr)
        sys.exit(1)
    print(f"ok {name}")


oa = openai.OpenAI(base_url=f"{URL}/v1", api_key=KEY, max_retries=0)

chat = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
check("openai chat", chat.choices[0].message.content == EXPECTED, chat)
check("openai chat usage", chat.usage.prompt_tokens == 11 and chat.usage.completion_tokens == 5, chat.usage)

stream = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
check("openai chat stream", text == EXPECTED, text)

stream = oa.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
    stream_options={"include_usage": True},
)
usages = [c.usage for c in stream if c.usage]
check("openai chat stream usage", len(usages) == 1 and usages[0].completion_tokens == 5, usages)

emb = oa.embeddings.create(model="text-embedding-3-small", input="hello")
check("openai embeddings", len(emb.data[0].embedding) == 3 and emb.usage.prompt_tokens == 7, emb)

resp = oa.responses.create(model="gpt-4o-mini", input="hi")
check("openai responses", resp.output_text == EXPECTED, resp)

events = list(oa.responses.create(model="gpt-4o-mini", input="hi", stream=True))
deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
check("openai responses stream", deltas == EXPECTED and events[-1].type == "response.completed", [e.type for e in events])

models = [m.id for m in oa.models.list()]
check("openai models", "gpt-4o-mini" in models and "claude-sonnet-4" in models, models)

try:
    oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check("openai 404", False, "no error raised")
except openai.NotFoundError as error:
    check("openai 404", error.body["code"] == "model_not_found", error.body)

try:
    openai.OpenAI(base_url=f"{URL}/v1", api_key="sk-wrong", max_retries=0).models.list()
    check("openai 401", False, "no error raised")
except openai.AuthenticationError as error:
    check("openai 401", error.status_code == 401)

an = anthropic.Anthropic(base_url=URL, api_key=KEY, max_retries=0)
message = an.messages.create(model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
check("anthropic messages", message.content[0].text == EXPECTED, message)
check("anthropic usage", message.usage.input_tokens == 17 and message.usage.output_tokens == 5, message.usage)

with an.messages.stream(model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
check("anthropic stream", text == EXPECTED and final.usage.output_tokens == 5, (text, final.usage))

count = an.messages.count_tokens(model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}])
check("anthropic count_tokens", count.input_tokens == 42, count)

page = an.models.list()
check("anthropic models", any(m.id == "claude-sonnet-4" for m in page.data), page)

bearer = anthropic.Anthropic(base_url=URL, auth_token=KEY, max_retries=0)
message = bearer.messages.create(model="claude-sonnet-4", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
check("anthropic bearer auth", message.content[0].text == EXPECTED, message)

try:
    an.messages.create(model="gpt-4o-mini-nope", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    check("anthropic 404", False, "no error raised")
except anthropic.NotFoundError as error:
    check("anthropic 404", error.status_code == 404)

print("all SDK checks passed")
