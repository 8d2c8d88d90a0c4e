"""The cassette file: one JSON format for recorded runs and for the pytest plugin's recordings.

Version 2 holds a list of interactions, one per request, each ``{"kind", "request",
"response"}`` (kinds: ``generate`` a model call, ``tool`` a tool call, ``tokenize`` a tokenizer
call), plus the models' identities and, for a whole ``agent ask --record`` run, a ``run``
section (question, tool list, plan, result). Files are written with sorted keys and the
interactions sorted by request, so re-recording the same run gives the same bytes (except
timings) and a review shows only what changed. Version 1 files (``agent ask --record`` before
the plugin) are migrated when read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.errors import AgentError

CASSETTE_FORMAT = "agent.cassette"
CASSETTE_VERSION = 2
KINDS = ("generate", "tool", "tokenize")
_IDS = re.compile(r"(?:[0-9]+(?: [0-9]+)*)?")


class CassetteError(AgentError):
    """A cassette file is unreadable or malformed."""


class CassetteDivergenceError(AgentError):
    """A replay asked for something the cassette does not hold (or produced a different answer)."""


def request_key(interaction: Mapping[str, Any]) -> str:
    """The matching key of an interaction: its kind, model and request, canonically."""
    return json.dumps(
        [interaction.get("kind"), interaction.get("model"), interaction.get("request")],
        sort_keys=True,
        ensure_ascii=False,
    )


def _order(interaction: Mapping[str, Any]) -> tuple[str, ...]:
    """File order: by kind, model, tool, then the prompt or input; the whole request breaks ties."""
    req = interaction.get("request")
    req = req if isinstance(req, dict) else {}
    text = req.get("prompt", req.get("input", req.get("text", "")))
    return (
        str(interaction.get("kind")),
        str(interaction.get("model") or ""),
        str(req.get("tool") or ""),
        str(text),
        request_key(interaction),
    )


def dumps(data: Mapping[str, Any]) -> str:
    """The file text: sorted keys, interactions sorted by request (stable for equal requests)."""
    out = dict(data)
    out["interactions"] = sorted(data.get("interactions") or [], key=_order)
    return json.dumps(out, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def save(data: Mapping[str, Any], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(data), encoding="utf-8")
    tmp.replace(path)  # a crash mid-write never leaves half a cassette


def load(path: str | Path) -> dict[str, Any]:
    """Read, migrate and check a cassette file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CassetteError(f"cannot read cassette {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise CassetteError(f"cassette {path} is not valid JSON: {exc}") from exc
    return upgrade(data, str(path))


def upgrade(data: Any, where: str = "cassette") -> dict[str, Any]:
    """``data`` checked and in the current version (a version 1 cassette is migrated)."""
    if not isinstance(data, dict) or data.get("format") != CASSETTE_FORMAT:
        raise CassetteError(
            f'{where} is not an agent cassette (expected "format": '
            f'"{CASSETTE_FORMAT}" in a JSON object)'
        )
    version = data.get("version")
    if version == 1:
        check_v1(data, where)
        data = migrate_v1(data)
    elif version != CASSETTE_VERSION:
        raise CassetteError(
            f"{where} has cassette version {version!r}; this agent reads versions 1 to "
            f"{CASSETTE_VERSION}: upgrade agent to read it, or record it again"
        )
    check(data, where)
    return data


def migrate_v1(old: Mapping[str, Any]) -> dict[str, Any]:
    """A version 1 cassette (fields ``generations`` and ``tool_calls``) in version 2."""
    interactions: list[dict[str, Any]] = []
    for g in old["generations"]:
        item = {
            "kind": "generate",
            "model": "default",
            "request": {"prompt": g["prompt"], "params": dict(g.get("params") or {})},
            "response": {"output": g["output"]},
        }
        if g.get("purpose"):
            item["purpose"] = g["purpose"]
        interactions.append(item)
    for c in old["tool_calls"]:
        interactions.append(
            {
                "kind": "tool",
                "step": c.get("step"),
                "timing": {"started": c.get("started"), "finished": c.get("finished")},
                "request": {"tool": c["tool"], "input": c["input"]},
                "response": {
                    "output": c.get("output"),
                    "error": c.get("error"),
                    "status": c.get("status", "ok"),
                },
            }
        )
    run = {k: old[k] for k in ("question", "tools", "settings", "plan", "result") if k in old}
    return {
        "format": CASSETTE_FORMAT,
        "version": CASSETTE_VERSION,
        "note": old.get("note") or "",
        "migrated_from": 1,
        "models": {"default": {"info": old.get("model") or {}}},
        "interactions": interactions,
        "run": run,
    }


def check_v1(data: Mapping[str, Any], where: str) -> None:
    expected = {"question": str, "tools": list, "generations": list, "tool_calls": list}
    expected["result"] = dict
    for key, typ in expected.items():
        if not isinstance(data.get(key), typ):
            raise CassetteError(f"{where}: field {key!r} must be a JSON {typ.__name__}")
    for i, call in enumerate(data["tool_calls"]):
        if not _strings(call, "tool", "input"):
            raise CassetteError(f"{where}: tool_calls[{i}] needs string fields 'tool' and 'input'")
    for i, g in enumerate(data["generations"]):
        if not _strings(g, "prompt", "output"):
            raise CassetteError(
                f"{where}: generations[{i}] needs string fields 'prompt' and 'output'"
            )
    _check_tools(data["tools"], where)


def check(data: Mapping[str, Any], where: str = "cassette") -> None:
    """Raise ``CassetteError`` naming the first malformed part of a version 2 cassette."""
    items = data.get("interactions")
    if not isinstance(items, list):
        raise CassetteError(f"{where}: field 'interactions' must be a JSON list")
    if not isinstance(data.get("models", {}), dict):
        raise CassetteError(f"{where}: field 'models' must be a JSON object")
    for i, item in enumerate(items):
        _check_interaction(item, f"{where}: interactions[{i}]")
    run = data.get("run")
    if run is None:
        return
    if not isinstance(run, dict):
        raise CassetteError(f"{where}: field 'run' must be a JSON object")
    for key, typ in {"question": str, "tools": list, "result": dict}.items():
        if not isinstance(run.get(key), typ):
            raise CassetteError(f"{where}: field 'run.{key}' must be a JSON {typ.__name__}")
    _check_tools(run["tools"], where)


_Fields = tuple[tuple[str, type | tuple[type, ...]], ...]
_REQUEST_FIELDS: dict[str, _Fields] = {
    "generate": (("prompt", str), ("params", dict)),
    "tool": (("tool", str), ("input", str)),
    "tokenize": (("text", str), ("bos", bool)),
}
_RESPONSE_FIELDS: dict[str, _Fields] = {
    "generate": (("output", str),),
    "tool": (("output", (str, type(None))), ("error", (str, type(None)))),
    "tokenize": (("ids", str),),  # space-separated: one line per call, not one per token
}


def _check_interaction(item: Any, where: str) -> None:
    if not isinstance(item, dict) or item.get("kind") not in KINDS:
        raise CassetteError(f"{where} needs a field 'kind', one of {', '.join(KINDS)}")
    kind = item["kind"]
    for part, fields in (("request", _REQUEST_FIELDS[kind]), ("response", _RESPONSE_FIELDS[kind])):
        body = item.get(part)
        if not isinstance(body, dict):
            raise CassetteError(f"{where} ({kind}) needs a JSON object {part!r}")
        for name, typ in fields:
            if not isinstance(body.get(name), typ):
                raise CassetteError(f"{where} ({kind}): field '{part}.{name}' has the wrong type")
    if kind == "tokenize" and not _IDS.fullmatch(item["response"]["ids"]):
        raise CassetteError(
            f"{where} (tokenize): 'response.ids' must be token ids separated by spaces"
        )


def _check_tools(tools: list[Any], where: str) -> None:
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise CassetteError(f"{where}: tools[{i}] needs a string field 'name'")


def _strings(obj: Any, *fields: str) -> bool:
    return isinstance(obj, dict) and all(isinstance(obj.get(f), str) for f in fields)
