"""The OpenAI-compatible HTTP API: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST
/v1/completions``.

Requests are validated and their prompts measured on arrival (400s come back at once), then queued
for the single engine thread (503 when the queue is full). Streaming responses are server-sent
events in OpenAI's chunk format, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent.errors import ContextLengthError
from agent.llm.protocol import count_tokens
from agent.server.errors import APIError
from agent.server.handoff import handoff_for
from agent.server.requests import (
    MAX_BODY_BYTES,
    MAX_N,
    Prepared,
    parse_json_body,
    prepare_chat,
    prepare_completion,
)
from agent.server.toolstream import ToolCallStreamer
from agent.server.worker import EngineWorker, Job, QueueFullError


def _choice_seed(prep: Prepared, index: int, attempt: int) -> int | None:
    """The seed of choice ``index``'s ``attempt``: each choice its own draw (seed + index), and a
    retry one no other choice uses; unseeded requests stay unseeded (a retry draws afresh)."""
    seed = prep.sampling.get("seed")
    return None if seed is None else seed + index + attempt * MAX_N


def _generate(
    model: Any,
    prep: Prepared,
    emit: Any,
    cancelled: threading.Event,
    index: int = 0,
    attempt: int = 0,
) -> dict[str, Any]:
    """Runs on an engine thread: stream pieces out, stop early if the client left."""
    kwargs = dict(max_tokens=prep.max_tokens, **prep.sampling)
    kwargs["seed"] = _choice_seed(prep, index, attempt)  # prep is shared by the n choices
    if prep.grammar is not None:
        kwargs["grammar"] = prep.grammar
    accepted = inspect.signature(model.generate).parameters
    if "cancel" in accepted:
        kwargs["cancel"] = cancelled  # the engine stops at its next step, pieces or not
    pieces: list[str] = []

    def relay(piece: str) -> None:
        pieces.append(piece)
        emit("piece", piece)

    if "on_piece" in accepted:  # the engine's thread relays pieces: this one waits for the end
        kwargs["on_piece"] = relay
    gen = model.generate(prep.prompt, **kwargs)
    try:
        for piece in gen:
            relay(piece)
            if cancelled.is_set():
                break
    finally:
        close = getattr(gen, "close", None)
        if close:
            close()
    text = "".join(pieces)
    stats = getattr(model, "last_stats", None)
    stop_reason = getattr(stats, "stop_reason", "") or "stop"
    completion_tokens = getattr(stats, "generated_tokens", None)
    if completion_tokens is None:
        completion_tokens = count_tokens(model, text) if text else 0
    return {"text": text, "stop_reason": stop_reason, "completion_tokens": completion_tokens}


RETRIES = 2  # extra generations when the output fails the schema's post-generation check


def _generate_checked(
    model: Any, prep: Prepared, emit: Any, cancelled: threading.Event, index: int = 0
) -> dict[str, Any]:
    """``_generate``, then the schema check of keywords the grammar could not enforce: a failed
    output is generated again with another seed (not when streaming: its pieces are out), and
    is never returned as valid."""
    attempts = 1 if prep.stream or prep.check is None else 1 + RETRIES
    for attempt in range(attempts):
        quiet = attempt > 0 and prep.stream
        result = _generate(model, prep, _quiet if quiet else emit, cancelled, index, attempt)
        if prep.check is None or result["stop_reason"] == "length" or cancelled.is_set():
            return result
        problem = prep.check(result["text"])
        if problem is None:
            return result
    raise APIError(
        422,
        f"the model's output failed the schema after {attempts} attempt(s): {problem}. The "
        "grammar could not enforce "
        + "; ".join(getattr(prep.grammar, "unenforced", ())[:3])
        + "; simplify those keywords or retry",
        code="invalid_output",
    )


def _quiet(kind: str, value: Any) -> None:
    pass


def _error_of(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextLengthError):
        return APIError(400, str(exc), code="context_length_exceeded")
    return APIError(500, f"generation failed: {type(exc).__name__}: {exc}", type="server_error")


def _usage(prep: Prepared, results: list[dict[str, Any]]) -> dict[str, int]:
    n = sum(int(r["completion_tokens"]) for r in results)
    return {
        "prompt_tokens": prep.prompt_tokens,
        "completion_tokens": n,
        "total_tokens": prep.prompt_tokens + n,
    }


def chat_message(prep: Prepared, result: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The assistant message (content or tool_calls) and its finish_reason."""
    text = result["text"]
    finish = "length" if result["stop_reason"] == "length" else "stop"
    if prep.registry is not None and text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if data is None and finish == "length":
            return _partial_call(text, prep), finish
        if isinstance(data, dict) and data.get("function") in prep.registry.names():
            call = {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": data["function"],
                    "arguments": json.dumps(data.get("params", {}), ensure_ascii=False),
                },
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    return {"role": "assistant", "content": text.lstrip()}, finish


_CALL_HEAD = re.compile(r'\s*\{\s*"function"\s*:\s*"((?:[^"\\]|\\.)*)"\s*(?:,\s*"params"\s*:\s*)?')


def _partial_call(text: str, prep: Prepared) -> dict[str, Any]:
    """A tool call cut by max_tokens, as OpenAI returns it: the name and the arguments so far."""
    m = _CALL_HEAD.match(text)
    name = json.loads(f'"{m.group(1)}"') if m else None
    if m is None or name not in prep.registry.names():
        raise APIError(
            422,
            f"max_tokens ({prep.max_tokens}) ran out before the tool call named its function; "
            "raise max_tokens",
            code="tool_call_truncated",
        )
    call = {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": name,
            "arguments": text[m.end() :] if m.group(0).rstrip().endswith(":") else "",
        },
    }
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def create_app(
    model: Any,
    *,
    model_name: str = "local",
    api_key: str | None = None,
    queue_size: int = 16,
    parallel: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API over ``model`` (a loaded engine or any ``TextGenerator``).

    ``parallel`` > 1 decodes up to that many requests (or choices of ``n``) together; an engine
    gets that many KV slots (``enable_batching``) unless it already batches.
    """
    if parallel > 1 and getattr(model, "enable_batching", None) is not None:
        if getattr(model, "batcher", None) is None:
            model.enable_batching(parallel)
    worker = EngineWorker(queue_size, parallel)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        yield
        worker.stop()

    app = FastAPI(
        title="agent",
        description="OpenAI-compatible API over a local Llama-2 model",
        lifespan=lifespan,
    )
    app.state.worker = worker
    created = int(time.time())

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(
            exc.status_code,
            f"{request.method} {request.url.path}: {exc.detail}",
            code="not_found" if exc.status_code == 404 else None,
        )
        return JSONResponse(err.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # never plain text
        err = APIError(500, f"{type(exc).__name__}: {exc}"[:500], type="server_error")
        return JSONResponse(err.body(), status_code=500)

    async def read_body(request: Request) -> bytes:
        """The body, refused (413) as soon as it is known to pass the limit."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise APIError(
                413,
                f"the request body is {declared} bytes; this server accepts at most "
                f"{max_body_bytes}",
                code="request_too_large",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise APIError(
                    413,
                    f"the request body is over {max_body_bytes} bytes, the most this server "
                    "accepts",
                    code="request_too_large",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def prepare(fn: Any, request: Request) -> Prepared:
        """Parse and prepare off the event loop; whatever goes wrong is the request's 4xx."""
        body = parse_json_body(await read_body(request), max_body_bytes)
        try:
            return await run_in_threadpool(fn, body, model)
        except APIError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a request must never crash the server
            raise APIError(
                400, f"the request could not be prepared: {type(exc).__name__}: {exc}"[:1000]
            ) from None

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(APIError(400, str(exc)).body(), status_code=400)

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        if header != f"Bearer {api_key}":
            raise APIError(
                401,
                "Incorrect or missing API key: send 'Authorization: Bearer <key>' with the key "
                "the server was started with (--api-key).",
                code="invalid_api_key",
            )

    def submit(prep: Prepared) -> tuple[list[Job], asyncio.Queue]:
        """One job per choice (``n``); events arrive as (choice index, kind, value)."""
        handoff = handoff_for(asyncio.get_running_loop())
        events: asyncio.Queue = asyncio.Queue()
        jobs: list[Job] = []

        def make(i: int) -> Job:
            def emit(kind: str, value: Any) -> None:
                handoff.put(events, (i, kind, value))

            return Job(run=lambda e, c: _generate_checked(model, prep, e, c, i), emit=emit)

        try:
            for i in range(prep.n):
                jobs.append(make(i))
                worker.submit(jobs[-1])
        except QueueFullError as exc:
            for job in jobs:
                job.cancelled.set()
            raise APIError(503, str(exc), type="server_error", code="server_busy") from None
        return jobs, events

    async def wait_results(
        jobs: list[Job], events: asyncio.Queue, request: Request
    ) -> list[dict[str, Any]]:
        """Every choice's result; a client that disconnects cancels them (checked 4 times/s)."""
        results: dict[int, dict[str, Any]] = {}
        checked = time.monotonic()
        try:
            while len(results) < len(jobs):
                try:
                    i, kind, value = await asyncio.wait_for(events.get(), 0.25)
                except asyncio.TimeoutError:
                    kind = "wait"
                if time.monotonic() - checked >= 0.25:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        raise APIError(499, "the client closed the request")
                if kind == "done":
                    results[i] = value
                elif kind == "error":
                    raise _error_of(value)
            return [results[i] for i in range(len(jobs))]
        finally:
            for job in jobs:  # a no-op when done; stops the engine if the client went away
                job.cancelled.set()

    def sse(obj: Any) -> str:
        return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

    model_card = {"id": model_name, "object": "model", "created": created, "owned_by": "agent"}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        check_key(request)
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model_id:path}")
    async def model_info(model_id: str, request: Request) -> dict[str, Any]:
        check_key(request)
        if model_id != model_name:
            raise APIError(
                404,
                f"model {model_id!r} is not served here; this server serves {model_name!r}",
                code="model_not_found",
            )
        return model_card

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        check_key(request)
        prep = await prepare(prepare_chat, request)
        jobs, events = submit(prep)
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not prep.stream:
            results = await wait_results(jobs, events, request)
            choices = []
            for i, result in enumerate(results):
                message, finish = chat_message(prep, result)
                choices.append(
                    {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                )
            return {
                "id": cid,
                "object": "chat.completion",
                "created": now,
                "model": model_name,
                "choices": choices,
                "usage": _usage(prep, results),
            }

        def chunk(i: int, delta: dict[str, Any], finish: str | None = None) -> str:
            return sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": now,
                    "model": model_name,
                    "choices": [
                        {"index": i, "delta": delta, "finish_reason": finish, "logprobs": None}
                    ],
                }
            )

        async def stream() -> AsyncIterator[str]:
            names = list(prep.registry.names()) if prep.registry is not None else []
            # without tools every piece is content: the streamer's "text" mode from the start
            streamers = [ToolCallStreamer(names) for _ in jobs]
            if prep.registry is None:
                for st in streamers:
                    st.mode = "text"
            results: dict[int, dict[str, Any]] = {}
            try:
                for i in range(len(jobs)):
                    yield chunk(i, {"role": "assistant", "content": ""})
                while len(results) < len(jobs):
                    i, kind, value = await events.get()
                    if kind == "piece":
                        st = streamers[i]
                        if st.mode == "text" and not st.text.strip():
                            value = value.lstrip()  # the answer starts at its first word
                        for delta in st.feed(value):
                            yield chunk(i, delta)
                    elif kind == "error":
                        yield sse(_error_of(value).body())
                        break
                    elif kind == "done":
                        results[i] = value
                        try:
                            message, finish = chat_message(prep, value)
                        except APIError as exc:
                            yield sse(exc.body())
                            break
                        for delta in streamers[i].finish(message):
                            yield chunk(i, delta)
                        if streamers[i].mode == "call" and finish != "length":
                            finish = "tool_calls"
                        yield chunk(i, {}, finish)
                if len(results) == len(jobs) and prep.include_usage:
                    yield sse(
                        {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": now,
                            "model": model_name,
                            "choices": [],
                            "usage": _usage(prep, [results[i] for i in range(len(jobs))]),
                        }
                    )
                yield "data: [DONE]\n\n"
            finally:
                for job in jobs:
                    job.cancelled.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        check_key(request)
        prep = await prepare(prepare_completion, request)
        jobs, events = submit(prep)
        cid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def choice(i: int, text: str, finish: str | None) -> dict[str, Any]:
            return {"index": i, "text": text, "logprobs": None, "finish_reason": finish}

        def finish_of(result: dict[str, Any]) -> str:
            return "length" if result["stop_reason"] == "length" else "stop"

        if not prep.stream:
            results = await wait_results(jobs, events, request)
            return {
                "id": cid,
                "object": "text_completion",
                "created": now,
                "model": model_name,
                "choices": [choice(i, r["text"], finish_of(r)) for i, r in enumerate(results)],
                "usage": _usage(prep, results),
            }

        async def stream() -> AsyncIterator[str]:
            base = {"id": cid, "object": "text_completion", "created": now, "model": model_name}
            results: dict[int, dict[str, Any]] = {}
            try:
                while len(results) < len(jobs):
                    i, kind, value = await events.get()
                    if kind == "piece":
                        yield sse({**base, "choices": [choice(i, value, None)]})
                    elif kind == "error":
                        yield sse(_error_of(value).body())
                        break
                    else:
                        results[i] = value
                        yield sse({**base, "choices": [choice(i, "", finish_of(value))]})
                if len(results) == len(jobs) and prep.include_usage:
                    usage = _usage(prep, [results[i] for i in range(len(jobs))])
                    yield sse({**base, "choices": [], "usage": usage})
                yield "data: [DONE]\n\n"
            finally:
                for job in jobs:
                    job.cancelled.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
