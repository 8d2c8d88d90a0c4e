"""A text generator and tools that answer from a cassette, or call the real thing and record it.

``CassetteModel`` has the ``TextGenerator`` protocol (``generate``, ``complete``) and the extras
the runtime reads (``n_ctx``, ``tokenize`` when the recorded model had one, ``info``,
``last_stats``), so ``ask``, ``select_function``, ``KnowledgeModel`` and the server run on it
unchanged. The real model comes from a factory called only when a request must be recorded.
``CassetteTool`` does the same for a tool: recorded by (tool name, input).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agent import errors
from agent.errors import AgentError, ToolError
from agent.planner.executor import StepTimeoutError
from agent.tools.registry import Tool, ToolRegistry, as_tool

REPLAY_CHUNK = 16  # characters per streamed piece on replay


class Recording(Protocol):
    """What the wrappers need of a cassette (``agent.testing.Cassette`` has it): the seam through
    which requests are replayed or recorded, so this module need not import the recorder."""

    path: Path

    @property
    def can_record(self) -> bool: ...

    def play(self, kind: str, model: str | None, request: Mapping[str, Any]) -> dict | None: ...

    def record(
        self,
        kind: str,
        model: str | None,
        request: Mapping[str, Any],
        response: Mapping[str, Any],
    ) -> None: ...

    def describe_model(self, name: str, meta: Mapping[str, Any]) -> None: ...

    def model_meta(self, name: str) -> dict[str, Any] | None: ...


@dataclass
class ReplayStats:
    """What the server reads from ``model.last_stats`` after a generation."""

    stop_reason: str = ""
    generated_tokens: int | None = None


def jsonable(v: Any) -> Any:
    """A parameter as stable JSON: objects by their name, never by ``repr`` (it holds addresses)."""
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): jsonable(x) for k, x in v.items()}
    name = getattr(v, "name", None)
    return f"<{type(v).__name__} {name}>" if isinstance(name, str) else f"<{type(v).__name__}>"


class CassetteModel:
    """A model whose calls are replayed from ``cassette`` or recorded from ``factory()``."""

    def __init__(self, cassette: Recording, factory: Any, name: str = "default"):
        self.cassette = cassette
        self.name = name
        self._factory = factory
        self._real: Any = None
        self._load_lock = threading.Lock()
        self._local = threading.local()

    # -- the real model, loaded on the first request that must be recorded ----------------------
    def real(self) -> Any:
        with self._load_lock:
            if self._real is None:
                if self._factory is None:
                    raise AgentError(
                        f"cassette {self.cassette.path} must record a request to model "
                        f"{self.name!r} but no model was given: pass a factory to "
                        "agent_cassette.model(...) or define the agent_model_factory fixture"
                    )
                is_model = callable(getattr(self._factory, "generate", None))
                self._real = self._factory if is_model else self._factory()
                self.cassette.describe_model(self.name, _meta(self._real))
            return self._real

    def _meta(self) -> dict[str, Any] | None:
        meta = self.cassette.model_meta(self.name)
        if meta is None and self.cassette.can_record:
            self.real()
            meta = self.cassette.model_meta(self.name)
        return meta

    # -- attributes the runtime reads ---------------------------------------------------------
    @property
    def n_ctx(self) -> int | None:
        meta = self._meta()
        return meta.get("n_ctx") if meta else None

    @property
    def info(self) -> dict[str, Any]:
        meta = self._meta() or {}
        return {**(meta.get("info") or {}), "cassette": str(self.cassette.path)}

    @property
    def last_stats(self) -> ReplayStats | None:
        return getattr(self._local, "stats", None)  # per thread: the server reads it after

    def __getattr__(self, name: str) -> Any:
        if name == "tokenize":  # only if the recorded model had one, as count_tokens checks
            meta = self._meta()
            if meta and meta.get("tokenizer"):
                return self._tokenize
        elif not name.startswith("_") and self._real is not None:
            return getattr(self._real, name)
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r} (not recorded in the cassette)"
        )

    def reset(self) -> None:
        if self._real is not None and callable(getattr(self._real, "reset", None)):
            self._real.reset()

    # -- calls ------------------------------------------------------------------------------------
    def generate(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        params = {k: jsonable(v) for k, v in kwargs.items() if k != "grammar"}
        grammar = kwargs.get("grammar")
        params["grammar"] = None if grammar is None else jsonable(grammar)
        request = {"prompt": prompt, "params": params}
        response = self.cassette.play("generate", self.name, request)
        if response is not None:
            self._local.stats = ReplayStats(
                str(response.get("stop_reason") or ""), response.get("tokens")
            )
            text = str(response["output"])
            for i in range(0, len(text), REPLAY_CHUNK):
                yield text[i : i + REPLAY_CHUNK]
            if response.get("error"):
                raise replayed_error(str(response.get("error_type")), str(response["error"]))
            return
        yield from self._record(prompt, kwargs, request)

    def _record(self, prompt: str, kwargs: dict[str, Any], request: dict) -> Iterator[str]:
        real = self.real()
        pieces: list[str] = []
        error: Exception | None = None
        gen = real.generate(prompt, **kwargs)
        try:
            for piece in gen:
                pieces.append(piece)
                yield piece
        except Exception as exc:  # recorded, so the replay fails the same way (a context overflow)
            error = exc
            raise
        finally:  # also when the consumer stops early: the replay stops at the same place
            close = getattr(gen, "close", None)
            if close:
                close()
            response: dict[str, Any] = {"output": "".join(pieces)}
            if error is not None:
                response["error"], response["error_type"] = str(error), type(error).__name__
            stats = getattr(real, "last_stats", None)
            if stats is not None:
                response["stop_reason"] = str(getattr(stats, "stop_reason", "") or "")
                response["tokens"] = getattr(stats, "generated_tokens", None)
            self._local.stats = ReplayStats(response.get("stop_reason", ""), response.get("tokens"))
            self.cassette.record("generate", self.name, request, response)

    def complete(self, prompt: str, **kwargs: Any) -> str:
        return "".join(self.generate(prompt, **kwargs))

    def _tokenize(self, text: str, bos: bool = True) -> list[int]:
        request = {"text": text, "bos": bool(bos)}
        response = self.cassette.play("tokenize", self.name, request)
        if response is not None:
            return [int(t) for t in str(response["ids"]).split()]
        ids = [int(t) for t in self.real().tokenize(text, bos=bos)]
        self.cassette.record("tokenize", self.name, request, {"ids": " ".join(map(str, ids))})
        return ids


def replayed_error(type_name: str, message: str) -> Exception:
    """The recorded error again: the project's own class by name, else an ``AgentError``."""
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, AgentError):
        try:
            return cls(message)
        except TypeError:  # a class that needs more than a message (FunctionCallError)
            pass
    return AgentError(f"{type_name}: {message}")


def _meta(model: Any) -> dict[str, Any]:
    info = getattr(model, "info", None)
    if info is not None and not isinstance(info, Mapping):
        info = vars(info) if hasattr(info, "__dict__") else {"repr": type(info).__name__}
    n_ctx = getattr(model, "n_ctx", None)
    return {
        "n_ctx": n_ctx if isinstance(n_ctx, int) else None,
        "tokenizer": callable(getattr(model, "tokenize", None)),
        "info": jsonable(dict(info or {"format": type(model).__name__})),
    }


class CassetteTool:
    """A tool whose calls are replayed from ``cassette`` or recorded from the real tool."""

    def __init__(self, cassette: Recording, tool: Tool):
        self.cassette = cassette
        self.tool = tool
        self.name = tool.name
        self.description = tool.description
        model = model_of(tool)
        if model is not None:  # ask() holds tools that share the planner's model until it is done
            self.model = model

    def __call__(self, text: str) -> str:
        request = {"tool": self.name, "input": text}
        response = self.cassette.play("tool", None, request)
        if response is not None:
            status = response.get("status") or "ok"
            if status == "timeout":
                raise StepTimeoutError(str(response.get("error") or "timed out (recorded)"))
            if status != "ok":
                raise ToolError(str(response.get("error") or "failed (recorded)"))
            return str(response.get("output") or "")
        try:
            out = self.tool(text)
        except StepTimeoutError as exc:
            self._record(request, None, str(exc), "timeout")
            raise
        except ToolError as exc:
            self._record(request, None, str(exc), "failed")
            raise
        except Exception as exc:  # replayed as the executor reports it: "Type: message"
            self._record(request, None, f"{type(exc).__name__}: {exc}", "failed")
            raise
        output = out if isinstance(out, str) else ("" if out is None else str(out))
        self._record(request, output, None, "ok")
        return output

    def _record(self, request: dict, output: str | None, error: str | None, status: str) -> None:
        response = {"output": output, "error": error, "status": status}
        self.cassette.record("tool", None, request, response)


def wrap_tools(cassette: Recording, tools: Any) -> ToolRegistry:
    """A registry of ``tools`` (a registry, a list, a mapping or one tool) answering from the
    cassette. A tool that generates with a ``CassetteModel`` (KnowledgeModel on the cassette's
    model) is kept as it is: its model calls are recorded, so its own code runs on replay."""
    if isinstance(tools, ToolRegistry):
        items: Sequence[Tool] = list(tools)
    elif isinstance(tools, Mapping):
        items = [as_tool(obj, name=str(name)) for name, obj in tools.items()]
    elif callable(tools):
        items = [as_tool(tools)]
    else:
        items = [as_tool(t) for t in tools]
    registry = ToolRegistry()
    for tool in items:
        if isinstance(model_of(tool), CassetteModel):
            registry.add(tool)
        else:
            registry.add(CassetteTool(cassette, tool))
    return registry


def model_of(tool: Any) -> Any:
    """The model a tool generates with (also through a ``FunctionTool`` around it), or None."""
    model = getattr(tool, "model", None)
    return model if model is not None else getattr(getattr(tool, "func", None), "model", None)
