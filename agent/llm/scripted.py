"""A scripted text generator: replays canned outputs through the ``TextGenerator`` protocol.

Used by tests, examples and replay, where no model is at hand. It streams each scripted output
in small pieces (optionally slowly) so streaming consumers are exercised for real.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from agent.errors import AgentError
from agent.llm.llama2 import CONTEXT_LENGTH
from agent.llm.protocol import SAMPLING_DEFAULTS


class ScriptExhaustedError(AgentError):
    """A scripted generator was asked for more outputs than it holds."""


class ScriptedModel:
    """Answers each call with the next scripted output (or ``responder(prompt)``).

    ``prompts`` records every prompt received, ``calls`` the keyword arguments of each call.
    ``chunk_size`` characters are yielded per piece, with ``delay`` seconds before each piece.
    """

    def __init__(
        self,
        outputs: Sequence[str] | Callable[[str], str],
        *,
        chunk_size: int = 4,
        delay: float = 0.0,
        n_ctx: int = CONTEXT_LENGTH,
        name: str = "scripted",
    ):
        self._responder = outputs if callable(outputs) else None
        self._outputs = list(outputs) if not callable(outputs) else []
        self.chunk_size = max(1, chunk_size)
        self.delay = delay
        self.n_ctx = n_ctx
        self.name = name
        self.prompts: list[str] = []
        self.calls: list[dict[str, Any]] = []

    @property
    def info(self) -> dict[str, Any]:
        return {"format": "scripted", "name": self.name, "n_ctx": self.n_ctx}

    def _next_output(self, prompt: str) -> str:
        if self._responder is not None:
            return self._responder(prompt)
        if not self._outputs:
            raise ScriptExhaustedError(
                f"scripted model has no output left for call #{len(self.prompts)}; "
                "add more outputs to the script"
            )
        return self._outputs.pop(0)

    def generate(
        self,
        prompt: str,
        *,
        stop: Sequence[str] = (),
        max_tokens: int = SAMPLING_DEFAULTS.max_tokens,
        **kwargs: Any,
    ) -> Iterator[str]:
        self.prompts.append(prompt)
        self.calls.append({"stop": tuple(stop), "max_tokens": max_tokens, **kwargs})
        text = self._next_output(prompt)
        cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        for i in range(0, len(text), self.chunk_size):
            if self.delay:
                time.sleep(self.delay)
            yield text[i : i + self.chunk_size]

    def complete(self, prompt: str, **kwargs: Any) -> str:
        return "".join(self.generate(prompt, **kwargs))
