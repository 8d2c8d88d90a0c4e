"""The OpenAI-compatible server, driven over real HTTP by the official ``openai`` client and
``httpx``."""

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

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
SEARCH = {
    "type": "object",
    "properties": {"query": {"type": "string", "maxLength": 12}},
    "required": ["query"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {"name": "search", "description": "Search the web.", "parameters": SEARCH},
    },
]
SCHEMAS = {"get_weather": WEATHER, "search": SEARCH}
KEY = "sk-test-123"


@pytest.fixture(scope="module")
def tiny():
    from agent.llm import load_model

    return load_model(golden.model_path("tiny-q4_0.gguf"), n_ctx=1024, threads=1)


@pytest.fixture(scope="module")
def server(tiny):
    with ServerThread(create_app(tiny, model_name="tiny", api_key=KEY, queue_size=8)) as s:
        yield s


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


def _check_call(call):
    assert call.type == "function" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return call.function.name, args


def test_models_lists_the_model(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_plain_chat_completion(client):
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=8,
        temperature=1.0,
        seed=1,
    )
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8 and r.usage.prompt_tokens > 0


@pytest.mark.parametrize("seed", range(3))
def test_required_tool_calls_are_valid_for_the_schema(client, seed):
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Weather in Oslo?"}],
        tools=TOOLS,
        tool_choice="required",
        temperature=1.0,
        seed=seed,
        max_tokens=400,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    _check_call(choice.message.tool_calls[0])


def test_named_tool_choice_forces_that_function(client):
    for seed in range(2):
        r = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Find cats"}],
            tools=TOOLS,
            seed=seed,
            tool_choice={"type": "function", "function": {"name": "search"}},
            temperature=1.0,
            max_tokens=300,
        )
        name, _ = _check_call(r.choices[0].message.tool_calls[0])
        assert name == "search"


def test_auto_tool_choice_gives_a_valid_call_or_text(client):
    for seed in range(4):
        r = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Oslo?"}],
            tools=TOOLS,
            temperature=1.0,
            seed=seed,
            max_tokens=60,
        )
        msg = r.choices[0].message
        if msg.tool_calls:
            _check_call(msg.tool_calls[0])
        else:
            assert not msg.content.startswith("{")


def test_tool_choice_none_is_plain_text(client):
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Oslo?"}],
        tools=TOOLS,
        tool_choice="none",
        temperature=1.0,
        seed=3,
        max_tokens=10,
    )
    assert r.choices[0].message.tool_calls is None


def test_streaming_chat_pieces_add_up(client):
    kwargs = dict(
        model="tiny",
        messages=[{"role": "user", "content": "Tell me"}],
        max_tokens=12,
        temperature=1.0,
        seed=7,
    )
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_streaming_tool_call(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Weather?"}],
            tools=TOOLS,
            tool_choice="required",
            temperature=1.0,
            seed=2,
            max_tokens=400,
            stream=True,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    # as OpenAI streams them: id and name first, then the arguments in pieces as generated
    assert calls[0].id.startswith("call_") and calls[0].function.name in SCHEMAS
    assert all(c.index == 0 and c.id is None and c.function.name is None for c in calls[1:])
    assert len(calls) > 3
    calls[0].function.arguments = "".join(c.function.arguments for c in calls)
    _check_call(calls[0])
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_response_format_json_schema_and_json_object(client):
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 9},
            "s": {"type": "string", "maxLength": 5},
        },
        "required": ["n", "s"],
    }
    for seed in range(2):
        r = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "JSON please"}],
            temperature=1.0,
            seed=seed,
            max_tokens=200,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        )
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)
    r = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "JSON"}],
        temperature=1.0,
        seed=5,
        max_tokens=400,
        response_format={"type": "json_object"},
    )
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_completions_endpoint_and_stream(client):
    r = client.completions.create(
        model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0.0
    )
    assert r.object == "text_completion" and r.usage.completion_tokens <= 6
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0.0, stream=True
        )
        if c.choices
    )
    assert streamed == r.choices[0].text


def test_bad_api_key_is_401(server):
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.status_code == 401
    r = httpx.get(server.url + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "body,param",
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"messages": []}).encode(), "messages"),
        (
            json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
            "messages[0].role",
        ),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
            ).encode(),
            "temperature",
        ),
        (json.dumps({"messages": [{"role": "user", "content": "x"}], "n": 9}).encode(), "n"),
        (
            json.dumps(
                {
                    "messages": [{"role": "user", "content": "x"}],
                    "tools": TOOLS,
                    "tool_choice": {"type": "function", "function": {"name": "nope"}},
                }
            ).encode(),
            "tool_choice",
        ),
        (
            json.dumps(
                {
                    "messages": [{"role": "user", "content": "x"}],
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"schema": {"type": "string", "minLength": 10**9}},
                    },
                }
            ).encode(),
            "response_format",
        ),
        (
            json.dumps(
                {
                    "messages": [{"role": "user", "content": "x"}],
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "required": ["a"],
                                    "additionalProperties": False,
                                },
                            },
                        }
                    ],
                }
            ).encode(),
            "tools",
        ),
    ],
)
def test_malformed_requests_are_400_with_an_openai_error(server, body, param):
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param


def test_over_long_prompt_is_400_and_the_server_keeps_serving(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "word " * 3000}], max_tokens=5
        )
    assert exc.value.status_code == 400 and exc.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):  # fits alone, not with max_tokens
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert r.choices[0].message.content is not None


def test_four_concurrent_requests_are_all_answered(client):
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            r = client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": f"n{i}"}],
                max_tokens=20,
                temperature=0.0,
            )
            results[i] = r.choices[0].message.content
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and sorted(results) == [0, 1, 2, 3]
    # serialized on one engine: each answer equals the same request made alone
    alone = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "n2"}], max_tokens=20, temperature=0.0
    )
    assert results[2] == alone.choices[0].message.content


def test_full_queue_is_503_and_unknown_routes_are_404():
    gate = threading.Event()

    def slow(prompt: str) -> str:
        gate.wait(60)
        return "done"

    model = ScriptedModel(slow)
    with ServerThread(create_app(model, queue_size=1)) as s:
        body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}
        with httpx.Client(base_url=s.url, timeout=30) as http:
            pending = []
            lock = threading.Lock()

            def post() -> None:
                r = http.post("/v1/chat/completions", json=body)
                with lock:
                    pending.append(r.status_code)

            def wait_for(cond) -> None:
                deadline = time.monotonic() + 60
                while not cond():
                    assert time.monotonic() < deadline, (
                        model.prompts,
                        s.app.state.worker.waiting,
                        pending,
                    )
                    time.sleep(0.01)

            runners = [threading.Thread(target=post) for _ in range(2)]
            runners[0].start()  # taken by the engine, blocks there
            wait_for(lambda: len(model.prompts) == 1)
            runners[1].start()  # waits in the queue (size 1)
            wait_for(lambda: s.app.state.worker.waiting == 1)
            r = http.post("/v1/chat/completions", json=body)
            assert r.status_code == 503 and r.json()["error"]["code"] == "server_busy"
            gate.set()
            for t in runners:
                t.join(30)
            assert pending == [200, 200]
            r = http.get("/v2/nothing")
            assert r.status_code == 404 and "error" in r.json()


def test_messages_render_in_the_airoboros_template():
    from agent.llm.prompts import Turn, chat_prompt
    from agent.server.requests import render_messages

    system, turns, user = render_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "12C"},
            {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        ]
    )
    assert (
        system == "Be brief."
        and turns[0].user == "Weather?"
        and '"function": "get_weather"' in turns[0].assistant
    )
    assert user == "Result of get_weather: 12C\nAnd tomorrow?"
    assert chat_prompt(user, turns, system).startswith("Be brief. USER: Weather? ASSISTANT: {")
    assert isinstance(turns[0], Turn)


def test_agent_serve_command_with_a_script(tmp_path):
    """`agent serve --script` end to end: a subprocess on a free port, answering the openai
    client."""
    import socket
    import subprocess
    import sys

    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(['{"function": "search", "params": {"query": "cats"}}', " Hello!"])
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "serve",
            "--script",
            str(script),
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--model-name",
            "demo",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=30
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                assert [m.id for m in client.models.list().data] == ["demo"]
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    proc.stderr.read() if proc.poll() else ""
                )
                time.sleep(0.2)
        r = client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "cats?"}],
            tools=TOOLS,
            tool_choice="required",
        )
        assert r.choices[0].message.tool_calls[0].function.name == "search"
        assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {
            "query": "cats"
        }
        r = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
        assert r.choices[0].message.content == "Hello!"
    finally:
        proc.terminate()
        proc.wait(20)


def test_a_client_leaving_mid_stream_frees_the_engine():
    model = ScriptedModel(
        ["word " * 400, "second answer"], chunk_size=5, delay=0.02
    )  # ~8 s if not stopped
    with ServerThread(create_app(model)) as s:
        body = {"messages": [{"role": "user", "content": "x"}], "stream": True, "max_tokens": 1000}
        with httpx.Client(base_url=s.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions", json=body) as r:
                # Leave mid-answer: after the first piece of text, not after the role chunk (a
                # request cancelled before its generation starts never takes its script output).
                lines = r.iter_lines()
                first = next(lines)
                assert first.startswith("data: ")
                while "word" not in first:
                    first = next(lines)
            t0 = time.monotonic()  # the stream is closed: the engine stops at its next piece
            r = http.post("/v1/chat/completions", json={**body, "stream": False})
            assert (
                r.status_code == 200
                and r.json()["choices"][0]["message"]["content"] == "second answer"
            )
            assert time.monotonic() - t0 < 4


def test_an_engine_failure_is_a_500_and_the_server_keeps_serving():
    model = ScriptedModel(["only one answer"])
    with ServerThread(create_app(model)) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
        msgs = [{"role": "user", "content": "x"}]
        assert (
            client.chat.completions.create(model="m", messages=msgs).choices[0].message.content
            == "only one answer"
        )
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model="m", messages=msgs)  # the script is exhausted
        assert exc.value.status_code == 500 and "no output left" in exc.value.message
        assert client.models.list().data[0].id == "local"
