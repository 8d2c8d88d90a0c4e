"""``--parallel``: requests decoding together on one engine, each with its own grammar, seed and
stop strings; disconnects free their slots; ``n`` > 1; one request's failure stays its own."""

from __future__ import annotations

import json
import threading
import time

import httpx
import jsonschema
import openai
import pytest

from agent.llm.scripted import ScriptedModel
from agent.server import ServerThread, create_app
from tests import golden

SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}},
        "required": ["color"],
        "additionalProperties": False,
    },
    {"type": "string", "maxLength": 10},
]
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]


@pytest.fixture(scope="module")
def tiny():
    from agent.llm import load_model

    m = load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=1024, threads=1)
    yield m
    if m.batcher is not None:
        m.batcher.close()


@pytest.fixture(scope="module")
def server(tiny):
    with ServerThread(create_app(tiny, model_name="tiny", queue_size=8, parallel=4)) as s:
        yield s


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


def run_all(fns):
    out: list = [None] * len(fns)

    def run(i):
        try:
            out[i] = fns[i]()
        except BaseException as exc:  # checked by the caller
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_parallel_streams_with_different_grammars_each_get_their_own(client, tiny):
    steps_before = tiny.batcher.steps

    def request(i):
        def go():
            chunks = client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": f"give me JSON number {i}"}],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": f"s{i}", "schema": SCHEMAS[i]},
                },
                temperature=1.0,
                seed=i,
                max_tokens=80,
                stream=True,
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        return go

    def tool_request():
        chunks = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=TOOLS,
            tool_choice="required",
            temperature=1.0,
            seed=5,
            max_tokens=120,
            stream=True,
        )
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        return calls

    results = run_all([request(i) for i in range(4)] + [tool_request])
    for text, schema in zip(results[:4], SCHEMAS, strict=True):
        assert not isinstance(text, BaseException), text
        jsonschema.validate(json.loads(text), schema)
    calls = results[4]
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    jsonschema.validate(json.loads("".join(c.function.arguments for c in calls)), WEATHER)
    assert tiny.batcher.max_seqs >= 2 and tiny.batcher.steps > steps_before


def test_n_choices_share_the_prompt(client, tiny):
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Say something."}],
        n=3,
        seed=11,
        max_tokens=12,
        temperature=1.0,
    )
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.content is not None for c in r.choices)
    assert 3 <= r.usage.completion_tokens <= 36  # the three choices' tokens together
    # three different draws (seed, seed+1, seed+2)
    assert len({c.message.content for c in r.choices}) > 1

    chunks = list(
        client.completions.create(
            model="tiny", prompt="Once upon a time", n=3, max_tokens=8, seed=1, stream=True
        )
    )
    texts = ["", "", ""]
    finishes = {}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.text
            if ch.finish_reason:
                finishes[ch.index] = ch.finish_reason
    assert sorted(finishes) == [0, 1, 2] and all(texts)


def test_auto_tool_mode_streams_plain_text_as_it_comes(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "hello"}],
            tools=TOOLS,
            tool_choice="auto",
            temperature=1.0,
            seed=3,
            max_tokens=40,
            stream=True,
        )
    )
    content = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    # either answer streams in pieces, not as one chunk at the end
    assert len(content) > 1 or len(calls) > 1


def test_failing_requests_are_400_while_others_stream(client, server):
    body = {"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 200}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as running:
            lines = running.iter_lines()
            assert next(lines).startswith("data: ")
            too_long = {"messages": [{"role": "user", "content": "word " * 2000}]}
            assert http.post("/v1/chat/completions", json=too_long).status_code == 400
            bad_schema = {
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 7}}},
            }
            assert http.post("/v1/chat/completions", json=bad_schema).status_code == 400
            rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert any('"finish_reason": "length"' in line or "finish_reason" in line for line in rest)


def test_a_disconnect_mid_stream_frees_the_slot(tiny):
    # one slot: the second request can only run once the first one's slot is freed
    from agent.llm import load_model

    m = load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=1024, threads=1)
    with ServerThread(create_app(m, parallel=2)) as s:
        m.enable_batching(1)  # after create_app: one slot behind two worker threads
        m.batcher.log = []
        body = {"prompt": "x", "stream": True, "max_tokens": 1000, "temperature": 1.0}
        with httpx.Client(base_url=s.url, timeout=30) as http:
            with http.stream("POST", "/v1/completions", json=body) as r:
                assert next(r.iter_lines()).startswith("data: ")
            client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
            t0 = time.monotonic()
            out = client.completions.create(model="m", prompt="y", max_tokens=3)
            assert out.choices[0].text is not None
            assert time.monotonic() - t0 < 20
            first = m.batcher.log[0][0][0]
            assert first.stats.stop_reason == "cancelled"  # not run to its 1000 tokens
            assert first.stats.generated_tokens < 1000
        m.batcher.close()


def test_a_non_streaming_client_that_leaves_stops_its_generation():
    model = ScriptedModel(["word " * 400, "second answer"], chunk_size=5, delay=0.02)  # ~8 s
    with ServerThread(create_app(model)) as s:
        body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000}
        with httpx.Client(base_url=s.url, timeout=0.5) as http:
            with pytest.raises(httpx.ReadTimeout):
                http.post("/v1/chat/completions", json=body)
        t0 = time.monotonic()
        with httpx.Client(base_url=s.url, timeout=30) as http:
            r = http.post("/v1/chat/completions", json=body)
        assert r.json()["choices"][0]["message"]["content"] == "second answer"
        assert time.monotonic() - t0 < 4  # the first answer was abandoned, not run to its end


@pytest.mark.parametrize("n", [0, 9, "2", 1.5])
def test_bad_n_is_400(server, n):
    body = {"messages": [{"role": "user", "content": "x"}], "n": n}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"


def test_prompt_chunk_reaches_the_scheduler_and_bad_values_say_what(monkeypatch, capsys):
    import uvicorn

    import agent.server.app as app_module
    from agent.cli import main

    models = []
    monkeypatch.setattr(app_module, "create_app", lambda model, **kw: models.append(model))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    tiny_file = str(golden.model_path("tiny-q4_0.gguf"))
    args = ["serve", "-m", tiny_file, "--parallel", "2"]
    assert main([*args, "--prompt-chunk", "4"]) == 0, capsys.readouterr().err
    assert models[0].batcher.chunk == 4
    assert models[0].batcher.budget.seconds == 0.1  # the default step budget
    models[0].batcher.close()
    assert main([*args, "--max-step-ms", "250"]) == 0, capsys.readouterr().err
    assert models[1].batcher.budget.seconds == 0.25
    models[1].batcher.close()
    assert main([*args, "--max-step-ms", "0"]) == 0, capsys.readouterr().err
    assert models[2].batcher.budget.seconds is None  # always --prompt-chunk rows
    models[2].batcher.close()
    assert main([*args, "--prompt-chunk", "0"]) == 1
    assert "--prompt-chunk must be at least 1, got 0" in capsys.readouterr().err
    assert main([*args, "--max-step-ms", "-5"]) == 1
    assert "--max-step-ms must be 0-3600000, got -5" in capsys.readouterr().err
    assert len(models) == 3  # refused before the model is opened
