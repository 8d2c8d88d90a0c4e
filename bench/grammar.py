"""Constrained-decoding overhead per token, against decode time (issue 7). Not a test: run it by
hand.

    .venv/bin/python bench/grammar.py            # masks over the real 32000-token vocab
    .venv/bin/python bench/grammar.py --model bench/.cache/1b-q4_0.gguf --tokens 32
                                                 # + decode time of a 1.1B-shape model

Part 1 walks each grammar (plan, function call JSON/YAML, a JSON Schema) with uniformly random
allowed tokens -- a worst case for the number of distinct grammar states, since a real model
repeats itself far more -- and times, per token, what the engine adds: ``allowed_mask()``, applying
the mask to the logits, ``accept()`` and ``is_complete()``. "cold" is a fresh grammar (every state
new: automaton rows and masks computed), "warm" the same walks again (masks served from the
per-state cache), "fresh walks" new random walks over the already-built grammar -- the steady
state of a server.

Part 2 (``--model``) generates from the model under the plan grammar, timing the grammar's calls
inside the real generation loop, and reports them as a share of the decode time per token.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.llm.formats.files import open_model_file  # noqa: E402
from agent.llm.grammar import Grammar, TokenTable, json_schema_grammar  # noqa: E402

TOOLS = ["DuckDuckGo", "TextScraper", "HyperlinkExtractor", "KnowledgeModel"]
SEARCH = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "maxLength": 120},
        "limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "filters": {
            "type": "object",
            "properties": {
                "lang": {"enum": ["en", "de", "fr"]},
                "since": {"type": "string", "format": "date"},
            },
        },
    },
    "required": ["query"],
}
FILE = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "maxLength": 40},
        "filters": {
            "type": "object",
            "properties": {"keyword": {"type": "string", "maxLength": 60}},
            "required": ["keyword"],
        },
    },
    "required": ["action", "filters"],
}


def grammars() -> dict[str, Grammar]:
    from agent.functions.grammar import function_call_grammar
    from agent.functions.registry import FunctionRegistry
    from agent.planner.grammar import plan_grammar

    reg = FunctionRegistry()
    reg.add("search", "Search the web.", SEARCH)
    reg.add("file_analytics", "Operations on a text file.", FILE)
    return {
        "plan": plan_grammar(TOOLS),
        "call-json": function_call_grammar(reg, "json"),
        "call-yaml": function_call_grammar(reg, "yaml"),
        "schema": json_schema_grammar(
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 80},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 20},
                        "maxItems": 5,
                    },
                },
                "required": ["name", "age"],
            }
        ),
    }


def walk(
    g: Grammar, table: TokenTable, seed: int, max_tokens: int, logits: np.ndarray
) -> tuple[int, float]:
    """(tokens, seconds spent in grammar work) for one random generation."""
    rng = np.random.default_rng(seed)
    m = g.matcher(table)
    spent = 0.0
    n = 0
    while n < max_tokens:
        t0 = time.perf_counter()
        mask = m.allowed_mask()
        np.where(mask, logits, -np.inf).astype(np.float32)  # what the engine does with it
        spent += time.perf_counter() - t0
        mask[table.eos_id] = False
        ids = np.nonzero(mask)[0]
        if not len(ids):
            break
        tok = int(rng.choice(ids))
        t0 = time.perf_counter()
        m.accept(tok)
        done = m.is_complete()
        spent += time.perf_counter() - t0
        n += 1
        if done:
            break
    return n, spent


def bench_masks(table: TokenTable, walks: int, max_tokens: int) -> dict[str, Any]:
    logits = np.random.default_rng(0).standard_normal(table.n_vocab).astype(np.float32)
    out: dict[str, Any] = {}
    for name, g in grammars().items():
        row = {}
        for label, seeds in (
            ("cold", range(walks)),
            ("warm", range(walks)),
            ("fresh walks", range(100, 100 + walks)),
        ):
            tokens = spent = 0.0
            per = []
            for s in seeds:
                n, t = walk(g, table, s, max_tokens, logits)
                tokens += n
                spent += t
                per.append(t / max(n, 1))
            row[label] = {
                "tokens": int(tokens),
                "ms_per_token": 1000 * spent / max(tokens, 1),
                "worst_walk_ms_per_token": 1000 * max(per),
            }
        row["states"] = len(g.automaton.states)
        out[name] = row
        print(
            f"{name:10s} "
            + "  ".join(
                f"{k}: {v['ms_per_token']:.2f} ms/token ({v['tokens']} tokens)"
                for k, v in row.items()
                if isinstance(v, dict)
            )
            + f"  states: {row['states']}",
            flush=True,
        )
    return out


class TimedGrammar:
    """Wraps a grammar so the time its matcher spends inside a real generation is measured exactly
    (robust to other load on the machine, unlike comparing two generation timings)."""

    def __init__(self, grammar: Grammar):
        self.grammar = grammar
        self.seconds = 0.0
        self.calls = 0

    def matcher(self, model: Any) -> Any:
        t0 = time.perf_counter()
        inner = self.grammar.matcher(model)
        self.seconds += time.perf_counter() - t0
        timed = self

        class Matcher:
            def _timed(self, fn, *a):
                t = time.perf_counter()
                try:
                    return fn(*a)
                finally:
                    timed.seconds += time.perf_counter() - t
                    timed.calls += 1

            def allowed_mask(self):
                return self._timed(inner.allowed_mask)

            def accept(self, token_id):
                return self._timed(inner.accept, token_id)

            def is_complete(self):
                return self._timed(inner.is_complete)

        return Matcher()


def bench_model(path: str, tokens: int, n_ctx: int) -> dict[str, Any]:
    from agent.llm import load_model
    from agent.planner.grammar import plan_grammar

    model = load_model(path, n_ctx=n_ctx)
    prompt = "USER: Who won the Nobel Prize in Literature in 2020? ASSISTANT:"
    model.complete(prompt, max_tokens=2, temperature=0.0)  # warm up (numba, KV cache of the prompt)
    res: dict[str, Any] = {}
    g = plan_grammar(TOOLS)
    for label, seed in (("plan, cold", 1), ("plan, same walk again", 1), ("plan, new walk", 2)):
        timed = TimedGrammar(g)
        model.complete(prompt, max_tokens=tokens, temperature=1.0, seed=seed, grammar=timed)
        st = model.last_stats
        n = max(st.generated_tokens, 1)
        decode_ms = (
            1000 * (st.generate_seconds - timed.seconds) / n
        )  # decode without the grammar's share
        grammar_ms = 1000 * timed.seconds / n
        res[label] = {
            "tokens": st.generated_tokens,
            "decode_ms_per_token": decode_ms,
            "grammar_ms_per_token": grammar_ms,
            "overhead_pct": 100 * grammar_ms / decode_ms,
        }
        print(
            f"{label:22s} decode {decode_ms:.1f} ms/token, grammar {grammar_ms:.2f} ms/token "
            f"= {res[label]['overhead_pct']:.2f}% over {st.generated_tokens} tokens",
            flush=True,
        )
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--vocab",
        default=str(REPO / "tests/data/golden/vocab/ggml-vocab-llama-spm.gguf"),
        help="model or vocab-only file whose vocabulary to use (default: Llama-2's 32000 tokens)",
    )
    p.add_argument("--walks", type=int, default=4, help="random generations per grammar and pass")
    p.add_argument("--max-tokens", type=int, default=300, help="tokens per generation at most")
    p.add_argument("--model", help="also time decode with and without a grammar on this model")
    p.add_argument("--tokens", type=int, default=32, help="tokens to decode per model run")
    p.add_argument("--n-ctx", type=int, default=512)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    table = TokenTable.from_vocab(open_model_file(args.vocab).vocab)
    print(f"vocabulary: {table.n_vocab} tokens, longest {table.data.shape[1]} bytes", flush=True)
    report: dict[str, Any] = {
        "n_vocab": table.n_vocab,
        "masks": bench_masks(table, args.walks, args.max_tokens),
    }
    if args.model:
        report["model"] = {"path": args.model, **bench_model(args.model, args.tokens, args.n_ctx)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
