"""One test's cassette: replay what is recorded, record what is new, as the record mode says.

Requests are matched by what they ask (kind, model name, prompt and parameters, or tool and
input, after the filters), not by their order, so steps that run in parallel replay the same
whatever order they finish in. A recorded request asked again replays its recordings in order,
then repeats the last one.

Record modes (as vcrpy's):
- ``none``: replay only; an unrecorded request is a ``CassetteMissError``;
- ``once``: record when the cassette file does not exist, else as ``none``;
- ``new_episodes``: replay what is recorded, record what is new and add it to the file;
- ``all``: record everything again and rewrite the file.
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.planner import cassette_file
from agent.planner.cassette_file import CassetteDivergenceError
from agent.testing.filters import Filters
from agent.testing.wrappers import CassetteModel, wrap_tools

RECORD_MODES = ("none", "once", "new_episodes", "all")


class CassetteMissError(CassetteDivergenceError):
    """A request the cassette does not hold, in a mode that may not record it."""


class Cassette:
    """The recordings of one test, read from and written to ``path``."""

    def __init__(
        self,
        path: str | Path,
        record_mode: str = "none",
        filters: Filters | None = None,
        *,
        note: str = "",
    ):
        if record_mode not in RECORD_MODES:
            raise ValueError(f"record mode {record_mode!r} is not one of {', '.join(RECORD_MODES)}")
        self.path = Path(path)
        self.record_mode = record_mode
        self.filters = filters or Filters()
        self.note = note
        self.existed = self.path.exists()
        self._lock = threading.Lock()
        self._old: list[dict[str, Any]] = []  # interactions read from the file
        self._new: list[dict[str, Any]] = []  # recorded in this session
        self._index: dict[str, list[dict[str, Any]]] = {}
        self._played: dict[str, int] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.misses: list[CassetteMissError] = []
        if self.existed and record_mode != "all":
            data = cassette_file.load(self.path)
            self._old = list(data["interactions"])
            self.models = dict(data.get("models") or {})
            self.note = note or str(data.get("note") or "")
            for item in self._old:
                self._index.setdefault(cassette_file.request_key(item), []).append(item)

    # -- what a test wraps ------------------------------------------------------------------------
    def model(self, factory: Any = None, *, name: str = "default") -> Any:
        """A ``TextGenerator`` answering from this cassette (``CassetteModel``).

        ``factory`` is a model or a callable returning one; it is called only when a request
        must be recorded, so replaying needs no model. Several models need several names.
        """
        return CassetteModel(self, factory, name)

    def tools(self, tools: Any) -> Any:
        """A ``ToolRegistry`` of ``tools`` whose calls are recorded and replayed by input."""
        return wrap_tools(self, tools)

    # -- modes ----------------------------------------------------------------------------------
    @property
    def can_record(self) -> bool:
        if self.record_mode == "once":
            return not self.existed
        return self.record_mode in ("new_episodes", "all")

    @property
    def interactions(self) -> list[dict[str, Any]]:
        """What the file will hold: the recorded interactions kept, then the new ones."""
        with self._lock:
            return [*self._old, *self._new]

    # -- the seam the wrappers use ---------------------------------------------------------------
    def play(self, kind: str, model: str | None, request: Mapping[str, Any]) -> dict | None:
        """The recorded response to ``request``; None when it is to be recorded now.

        Raises ``CassetteMissError`` (and remembers it for the test report) when the request
        is not recorded and the mode may not record it.
        """
        item = self._item(kind, model, request)
        key = cassette_file.request_key(item)
        with self._lock:
            found = self._index.get(key)
            if found:
                n = self._played.get(key, 0)
                self._played[key] = n + 1
                return dict(found[min(n, len(found) - 1)]["response"])
            if self.can_record:
                return None
            miss = CassetteMissError(self._miss_message(item))
            self.misses.append(miss)
        raise miss

    def record(
        self,
        kind: str,
        model: str | None,
        request: Mapping[str, Any],
        response: Mapping[str, Any],
    ) -> None:
        item = self._item(kind, model, request)
        item["response"] = self.filters.value(dict(response))
        with self._lock:
            self._new.append(item)

    def describe_model(self, name: str, meta: Mapping[str, Any]) -> None:
        with self._lock:
            self.models[name] = self.filters.value(dict(meta))

    def model_meta(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            meta = self.models.get(name)
        return dict(meta) if isinstance(meta, dict) else None

    def _item(self, kind: str, model: str | None, request: Mapping[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"kind": kind, "request": self.filters.request(kind, request)}
        if model is not None:
            item["model"] = model
        return item

    # -- writing --------------------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._new) or (self.record_mode == "all" and self.existed)

    def save(self) -> bool:
        """Write the file if this session recorded anything (or re-recorded it); True if written."""
        if not self.can_record or not self.dirty:
            return False
        data = {
            "format": cassette_file.CASSETTE_FORMAT,
            "version": cassette_file.CASSETTE_VERSION,
            "note": self.note,
            "models": self.models,
            "interactions": self.interactions,
        }
        cassette_file.save(data, self.path)
        return True

    # -- the report of a miss -------------------------------------------------------------------
    def _miss_message(self, item: dict[str, Any]) -> str:
        kind, model = item["kind"], item.get("model")
        who = f"{kind} request" + (f" to model {model!r}" if model else "")
        if not self.existed and self.record_mode != "all":
            head = (
                f"the cassette {self.path} does not exist and record mode "
                f"{self.record_mode!r} replays only; record it with --agent-record-mode=once "
                "(where the model is available)"
            )
            return f"{head}\n  first request: {_summary(item)}"
        head = (
            f"the cassette {self.path} holds no {who} matching {_summary(item)} "
            f"(record mode {self.record_mode!r})"
        )
        same = [
            i
            for i in self._old
            if i.get("kind") == kind and i.get("model") == model and i is not item
        ]
        hint = (
            "\n  to record it: run pytest with --agent-record-mode=new_episodes (adds it) or "
            "--agent-record-mode=all (records the test again)"
        )
        if not same:
            return f"{head}\n  it holds no {who} at all{hint}"
        closest = max(same, key=lambda i: _similarity(item["request"], i["request"]))
        return f"{head}\n  closest recorded request:\n{_difference(closest, item)}{hint}"


def _summary(item: Mapping[str, Any]) -> str:
    req = item["request"]
    if item["kind"] == "generate":
        return f"prompt {_clip(req.get('prompt', ''))} with params {_json(req.get('params'))}"
    if item["kind"] == "tool":
        return f"{req.get('tool')}[{_clip(req.get('input', ''))}]"
    return f"text {_clip(req.get('text', ''))}"


def _clip(s: str, n: int = 80) -> str:
    return repr(s if len(s) <= n else s[: n // 2] + " ... " + s[-n // 2 :])


def _json(v: Any) -> str:
    return json.dumps(v, sort_keys=True, ensure_ascii=False)


def _main_text(request: Mapping[str, Any]) -> str:
    for field in ("prompt", "input", "text"):
        if isinstance(request.get(field), str):
            return str(request[field])
    return ""


def _similarity(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, int, int]:
    """Line similarity of the main texts, then same tool/params, then common prefix length."""
    ta, tb = _main_text(a), _main_text(b)
    ratio = difflib.SequenceMatcher(None, ta.splitlines(), tb.splitlines(), False).ratio()
    others = sum(
        1 for k in set(a) | set(b) if k not in ("prompt", "input", "text") and a.get(k) == b.get(k)
    )
    prefix = 0
    for x, y in zip(ta, tb, strict=False):
        if x != y:
            break
        prefix += 1
    return ratio, others, prefix


def _difference(recorded: Mapping[str, Any], asked: Mapping[str, Any]) -> str:
    """What differs between a recorded request and the one asked, as indented text."""
    ra, rb = recorded["request"], asked["request"]
    lines = []
    for key in sorted(set(ra) | set(rb)):
        if key in ("prompt", "input", "text") or ra.get(key) == rb.get(key):
            continue
        if isinstance(ra.get(key), dict) and isinstance(rb.get(key), dict):
            for sub in sorted(set(ra[key]) | set(rb[key])):
                old, new = ra[key].get(sub, "(absent)"), rb[key].get(sub, "(absent)")
                if old != new:
                    lines.append(f"    {key}.{sub}: recorded {_json(old)}, asked {_json(new)}")
        else:
            lines.append(f"    {key}: recorded {_json(ra.get(key))}, asked {_json(rb.get(key))}")
    ta, tb = _main_text(ra), _main_text(rb)
    if ta != tb:
        n = 0
        for x, y in zip(ta, tb, strict=False):
            if x != y:
                break
            n += 1
        lines.append(
            f"    text first differs at character {n}: recorded {ta[n : n + 40]!r}, "
            f"asked {tb[n : n + 40]!r}"
        )
        diff = difflib.unified_diff(
            ta.splitlines(), tb.splitlines(), "recorded", "asked", n=1, lineterm=""
        )
        lines += [f"    {line}" for line in list(diff)[:40]]
    return "\n".join(lines)
