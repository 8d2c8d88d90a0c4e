"""The OpenAI-compatible HTTP API: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST
/v1/completions``.

Requests are validated and their prompts measured on arrival (400s come back at once), then queued
for the single engine thread (503 when the queue is full). Streaming responses are server-sent
events in OpenAI's chunk format, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
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
from agent.server.requests import (
    MAX_BODY_BYTES,
    Prepared,
    parse_json_body,
    prepare_chat,
    prepare_completion,
)
from agent.server.worker import EngineWorker, Job, QueueFullError


def _generate(model: Any, prep: Prepared, emit: Any, cancelled: threading.Event) -> dict[str, Any]:
    """Runs on the engine thread: stream pieces out, stop early if the client left."""
    kwargs = dict(max_tokens=prep.max_tokens, **prep.sampling)
    if prep.grammar is not None:
        kwargs["grammar"] = prep.grammar
    pieces: list[str] = []
    gen = model.generate(prep.prompt, **kwargs)
    try:
        for piece in gen:
            pieces.append(piece)
            emit("piece", piece)
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
    model: Any, prep: Prepared, emit: Any, cancelled: threading.Event
) -> dict[str, Any]:
    """``_generate``, then the schema check of keywords the grammar could not enforce: a failed
    output is generated again with another seed (not when streaming: its pieces are out), and
    is never returned as valid."""
    attempts = 1 if prep.stream or prep.check is None else 1 + RETRIES
    for attempt in range(attempts):
        result = _generate(
            model, prep, emit if attempt == 0 or not prep.stream else _quiet, cancelled
        )
        if prep.check is None or result["stop_reason"] == "length" or cancelled.is_set():
            return result
        problem = prep.check(result["text"])
        if problem is None:
            return result
        seed = prep.sampling.get("seed")
        prep.sampling["seed"] = (seed if seed is not None else attempt) + 1
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


def _usage(prep: Prepared, result: dict[str, Any]) -> dict[str, int]:
    n = int(result["completion_tokens"])
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
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API over ``model`` (a loaded engine or any ``TextGenerator``)."""
    worker = EngineWorker(queue_size)

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

    def submit(prep: Prepared) -> tuple[Job, asyncio.Queue]:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        job = Job(run=lambda e, c: _generate_checked(model, prep, e, c), emit=emit)
        try:
            worker.submit(job)
        except QueueFullError as exc:
            raise APIError(503, str(exc), type="server_error", code="server_busy") from None
        return job, events

    async def wait_result(job: Job, events: asyncio.Queue) -> dict[str, Any]:
        try:
            while True:
                kind, value = await events.get()
                if kind == "done":
                    return value
                if kind == "error":
                    raise _error_of(value)
        finally:
            job.cancelled.set()  # a no-op when done; stops the engine if the client went away

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
        job, events = submit(prep)
        cid, now = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not prep.stream:
            result = await wait_result(job, events)
            message, finish = chat_message(prep, result)
            return {
                "id": cid,
                "object": "chat.completion",
                "created": now,
                "model": model_name,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
                "usage": _usage(prep, result),
            }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            return sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": now,
                    "model": model_name,
                    "choices": [
                        {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                    ],
                }
            )

        async def stream() -> AsyncIterator[str]:
            try:
                yield chunk({"role": "assistant", "content": ""})
                live = prep.registry is None  # a tool call is only known when complete
                started = False
                while True:
                    kind, value = await events.get()
                    if kind == "piece" and live:
                        piece = value if started else value.lstrip()
                        started = started or bool(piece)
                        if piece:
                            yield chunk({"content": piece})
                    elif kind == "error":
                        yield sse(_error_of(value).body())
                        break
                    elif kind == "done":
                        try:
                            message, finish = chat_message(prep, value)
                        except APIError as exc:
                            yield sse(exc.body())
                            break
                        if message.get("tool_calls"):
                            calls = [{"index": 0, **c} for c in message["tool_calls"]]
                            yield chunk({"tool_calls": calls})
                        elif not live and message["content"]:
                            yield chunk({"content": message["content"]})
                        yield chunk({}, finish)
                        if prep.include_usage:
                            yield sse(
                                {
                                    "id": cid,
                                    "object": "chat.completion.chunk",
                                    "created": now,
                                    "model": model_name,
                                    "choices": [],
                                    "usage": _usage(prep, value),
                                }
                            )
                        break
                yield "data: [DONE]\n\n"
            finally:
                job.cancelled.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        check_key(request)
        prep = await prepare(prepare_completion, request)
        job, events = submit(prep)
        cid, now = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

        if not prep.stream:
            result = await wait_result(job, events)
            finish = "length" if result["stop_reason"] == "length" else "stop"
            return {
                "id": cid,
                "object": "text_completion",
                "created": now,
                "model": model_name,
                "choices": [choice(result["text"], finish)],
                "usage": _usage(prep, result),
            }

        async def stream() -> AsyncIterator[str]:
            base = {"id": cid, "object": "text_completion", "created": now, "model": model_name}
            try:
                while True:
                    kind, value = await events.get()
                    if kind == "piece":
                        yield sse({**base, "choices": [choice(value, None)]})
                    elif kind == "error":
                        yield sse(_error_of(value).body())
                        break
                    else:
                        finish = "length" if value["stop_reason"] == "length" else "stop"
                        yield sse({**base, "choices": [choice("", finish)]})
                        if prep.include_usage:
                            yield sse({**base, "choices": [], "usage": _usage(prep, value)})
                        break
                yield "data: [DONE]\n\n"
            finally:
                job.cancelled.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
