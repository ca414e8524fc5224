"""The official OpenAI and Anthropic SDKs, with their DEFAULT retry settings, against refusals
that no retry can fix: each must give up after exactly one request.

Run by the end-to-end test `agents::sdks_stop_at_final_refusals`, which passes ROUTER_URL,
ROUTER_KEY (a valid key of an account with money) and ROUTER_EMPTY_KEY (a key of an account
with none). Requests are counted at the gateway: every refusal is counted in /metrics
(`router_refusals_total`, by code), and a refused request never goes upstream.
"""
import os
import sys
import time
import urllib.request

import anthropic
import openai

URL = os.environ["ROUTER_URL"]
EMPTY = os.environ["ROUTER_EMPTY_KEY"]


def refusals(code):
    text = urllib.request.urlopen(f"{URL}/metrics").read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("router_refusals_total{") and f'code="{code}"' in line
    )


def once(name, code, call, error_type):
    before = refusals(code)
    started = time.monotonic()
    try:
        call()
        print(f"FAIL {name}: no error raised", file=sys.stderr)
        sys.exit(1)
    except error_type as error:
        took = time.monotonic() - started
        attempts = refusals(code) - before
        if attempts != 1:
            print(f"FAIL {name}: {attempts:g} requests reached the gateway (took {took:.1f} s)", file=sys.stderr)
            sys.exit(1)
        print(f"ok {name}: 1 request, {took:.2f} s, {error.status_code}")


messages = [{"role": "user", "content": "hi"}]
# No max_retries: the SDKs' defaults (2 retries with back-off for 408, 409, 429 and 5xx).
oa_bad = openai.OpenAI(base_url=f"{URL}/v1", api_key="sk-no-such-key")
oa_empty = openai.OpenAI(base_url=f"{URL}/v1", api_key=EMPTY)
an_bad = anthropic.Anthropic(base_url=URL, api_key="sk-no-such-key")
an_empty = anthropic.Anthropic(base_url=URL, api_key=EMPTY)

once("openai 401", "invalid_api_key",
     lambda: oa_bad.chat.completions.create(model="gpt-4o-mini", messages=messages),
     openai.AuthenticationError)
once("openai 429 insufficient_quota", "insufficient_quota",
     lambda: oa_empty.chat.completions.create(model="gpt-4o-mini", messages=messages),
     openai.RateLimitError)
once("openai responses 429 insufficient_quota", "insufficient_quota",
     lambda: oa_empty.responses.create(model="gpt-4o-mini", input="hi"),
     openai.RateLimitError)
once("anthropic 401", "invalid_api_key",
     lambda: an_bad.messages.create(model="claude-sonnet-4", max_tokens=16, messages=messages),
     anthropic.AuthenticationError)
once("anthropic 429 insufficient_quota", "insufficient_quota",
     lambda: an_empty.messages.create(model="claude-sonnet-4", max_tokens=16, messages=messages),
     anthropic.RateLimitError)
once("anthropic stream 429 insufficient_quota", "insufficient_quota",
     lambda: an_empty.messages.create(model="claude-sonnet-4", max_tokens=16, messages=messages, stream=True),
     anthropic.RateLimitError)

print("all retry checks passed")
