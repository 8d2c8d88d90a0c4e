"""Cost of hostile input (issue 19): each figure with a smaller size of the same input, so the
ratio shows whether the cost is linear. Not a test: run by hand
(`.venv/bin/python bench/hostile.py`).

- executor: a dependency chain of N steps with a trivial tool (each step waits for the previous);
- HyperlinkExtractor: N bytes of '<a ' without a '>';
- load_model: the golden GGUF with llama.block_count = 2^20 and 2^32-1 (refused before any
  per-layer work).
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent.errors import AgentError
from agent.planner import Plan, Step, execute
from agent.tools.links import HyperlinkExtractor

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden" / "models"


def seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    try:
        fn()
    except AgentError:
        pass
    return time.perf_counter() - t0


def chain(n: int) -> Plan:
    steps = [Step("#E1", "Echo", "go", [])]
    steps += [Step(f"#E{i}", "Echo", f"#E{i - 1}", [f"#E{i - 1}"]) for i in range(2, n + 1)]
    return Plan(steps=steps, answer=f"#E{n}", answer_refs=[f"#E{n}"])


def with_block_count(value: int) -> Path:
    data = (GOLDEN / "tiny-q4_0.gguf").read_bytes()
    key = struct.pack("<Q", 17) + b"llama.block_count" + struct.pack("<I", 4)
    pos = data.index(key) + len(key)
    out = Path(tempfile.mkdtemp()) / f"blocks-{value}.gguf"
    out.write_bytes(data[:pos] + struct.pack("<I", value) + data[pos + 4 :])
    return out


def main() -> None:
    tools = {"Echo": lambda s: s[:8]}
    for n in (2_000, 10_000):
        t = seconds(lambda n=n: execute(chain(n), tools))
        print(f"executor chain of {n:>6} steps: {t:6.3f} s ({t / n * 1e6:.0f} us/step)")
    tool = HyperlinkExtractor()
    for n in (120_000, 1_000_000):
        text = "<a " * (n // 3)
        t = seconds(lambda text=text: tool(text))
        print(f"HyperlinkExtractor, {n:>9} bytes of '<a ': {t:6.3f} s")
    from agent.llm import load_model

    for value in (2, 1 << 20, (1 << 32) - 1):
        path = with_block_count(value)
        t = seconds(lambda path=path: load_model(path, n_ctx=8, threads=1))
        print(f"load_model with llama.block_count = {value:>10}: {t:6.3f} s")


if __name__ == "__main__":
    main()
