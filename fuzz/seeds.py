#!/usr/bin/env python3
"""Writes the seed corpora (seeds/<target>/) from the converter fixtures and a few hand-made
inputs. Each target's first byte (or bytes) choose a variant: see data-plane/src/fuzzing.rs."""
import pathlib, shutil, struct, zlib

here = pathlib.Path(__file__).parent
fixtures = here.parent / "data-plane" / "src" / "convert" / "fixtures"
seeds = here / "seeds"
shutil.rmtree(seeds, ignore_errors=True)


def fixture(name):
    return (fixtures / name).read_bytes()


def write(target, name, data):
    path = seeds / target
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_bytes(data)


requests = ["claude-code.request.json", "codex.request.json", "chat.request.json",
            "messages.request.json", "responses.request.json"]
for name in requests:
    write("request_fields", name, fixture(name))
write("request_fields", "choices.json",
      b'{"model":"m","n":3,"best_of":4,"stream":true,"stream_options":{"include_usage":false},'
      b'"prompt_cache_key":"s","max_completion_tokens":7}')
write("request_fields", "escaped.json", b'{"mod\\u0065l":"a\\"b","metadata":{"user_id":"u"},"stream_options":null}')

streams = ["chat.stream.text.sse", "chat.stream.tools.sse", "chat.stream.custom.sse", "messages.stream.sse"]
for step, name in enumerate(streams):
    write("sse_events", name, bytes([step * 13]) + fixture(name))
write("sse_events", "crlf.sse", b"\x05event: a\r\ndata: 1\r\ndata: 2\r\n\r\n: ping\n\ndata: {}\n")

answers = ["chat.answer.json", "messages.answer.anthropic.json", "responses.answer.json"]
for name in answers + streams:
    write("usage", name, struct.pack("<H", 4096) + fixture(name))
write("usage", "liar.json", struct.pack("<H", 10) +
      b'{"usage":{"prompt_tokens":3,"completion_tokens":4500000000000000}}')

# Conversion::MessagesToChat = 0, ChatToMessages = 1, ResponsesToChat = 2.
for variant, names in [(0, ["messages.request.json", "claude-code.request.json"]),
                       (1, ["chat.request.json"]),
                       (2, ["responses.request.json", "codex.request.json"])]:
    for name in names:
        write("convert_request", f"{variant}-{name}", bytes([variant]) + fixture(name))

for variant, name in [(0, "chat.answer.json"), (1, "messages.answer.anthropic.json"), (2, "chat.answer.json")]:
    write("convert_answer", f"{variant}-{name}", bytes([variant]) + fixture(name))
write("convert_answer", "0-error.json", b'\x00{"error":{"message":"Rate limit reached","type":"rate_limit"}}')
write("convert_answer", "1-error.json", b'\x01{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')

for variant, name in [(0, "chat.stream.text.sse"), (0, "chat.stream.tools.sse"), (1, "messages.stream.sse"),
                      (2, "chat.stream.text.sse"), (2, "chat.stream.tools.sse"), (2, "chat.stream.custom.sse")]:
    for step in (0, 7):
        write("convert_stream", f"{variant}-{step}-{name}", bytes([variant, step]) + fixture(name))

for i, text in enumerate([b"1.5 2", b"-0.000000001 9223372036.854775807", b"0", b"+12.000000000 -3",
                          b"9223372036.854775807 0.000000001", b"1.25x"]):
    write("money", f"{i}.txt", text)


def frame(payload):
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


records = frame(b"\x08\x01\x12\x03abc") + frame(b"") + frame(bytes(range(40)))
write("spool_reader", "intact.spool", records)
write("spool_reader", "torn.spool", records + frame(b"half a record")[:9])
write("spool_reader", "bad-crc.spool", frame(b"ok") + b"\x02\x00\x00\x00\x00\x00\x00\x00ok")
