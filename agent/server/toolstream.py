"""Stream a constrained tool-call answer as OpenAI does: the call's id and name first, then the
arguments in pieces as they are generated; a plain-text answer (``tool_choice: auto``) streams as
content from its first piece.

The grammar writes ``{"function": "NAME", "params": {...}}``: once the text before the params is
in, the call is announced; the params' text is passed on as ``arguments`` except for a trailing run
of ``}`` and whitespace, which may be the end of the outer object and is held back until more
arrives. Anything else (keys in another order) is held to the end and sent whole.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

_HEAD = re.compile(r'\s*\{\s*"function"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"params"\s*:\s*')
_TAIL = re.compile(r"[\s}]*\Z")


@dataclass
class ToolCallStreamer:
    names: list[str]
    mode: str = ""  # "", "text", "call", "held": undecided, content, streamed call, held to the end
    text: str = ""  # everything received
    sent: int = 0  # characters of ``text`` already passed on (content or arguments)
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    name: str = ""

    def feed(self, piece: str) -> list[dict[str, Any]]:
        """Deltas (``{"content": ...}`` or ``{"tool_calls": [...]}``) to send for this piece."""
        self.text += piece
        if not self.mode:
            body = self.text.lstrip()
            if not body:
                return []
            if not body.startswith("{"):
                self.mode, self.sent = "text", len(self.text) - len(body)
            else:
                m = _HEAD.match(self.text)
                if m is None:  # not yet complete; past this length it is not our key order
                    if len(body) > 64 + 2 * max(map(len, self.names), default=0):
                        self.mode = "held"
                    return []
                name = json.loads(m.group(1))
                if name not in self.names:
                    self.mode = "held"
                    return []
                self.mode, self.name, self.sent = "call", name, m.end()
                return [self._call({"name": name, "arguments": ""}, first=True)]
        if self.mode == "text":
            out, self.sent = self.text[self.sent :], len(self.text)
            return [{"content": out}] if out else []
        if self.mode == "call":
            end = _TAIL.search(self.text, self.sent)
            stop = end.start() if end is not None else len(self.text)
            out, self.sent = self.text[self.sent : stop], max(self.sent, stop)
            return [self._call({"arguments": out})] if out else []
        return []

    def finish(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Deltas still owed once the answer is complete (``message`` as the non-streamed reply)."""
        if self.mode == "text":
            return self.feed("")
        if self.mode == "call":
            rest = self.text[self.sent :].rstrip()
            rest = rest[:-1].rstrip() if rest.endswith("}") else rest  # the outer object's end
            return [self._call({"arguments": rest})] if rest else []
        if message.get("tool_calls"):  # held: the whole call at once
            calls = message["tool_calls"]
            return [{"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}]
        content = message.get("content")
        return [{"content": content}] if content else []

    def _call(self, function: dict[str, Any], first: bool = False) -> dict[str, Any]:
        call: dict[str, Any] = {"index": 0, "function": function}
        if first:
            call.update(id=self.call_id, type="function")
        return {"tool_calls": [call]}
