"""Real-world JSON Schemas: coverage, soundness and mask cost, side by side with llguidance (issue 16).

    .venv/bin/python bench/schemas.py                       # ../shared/schemas/jsonschemabench
    .venv/bin/python bench/schemas.py --gens 2 --max-tokens 400 --json bench/schemas.json
    .venv/bin/python bench/schemas.py --decode-model bench/.cache/1b-q4_0.gguf   # + a decode step

Not a test. For every schema file: compile it (compiled / refused with a SchemaUnsupportedError /
crashed with anything else), then generate ``--gens`` times from a small random-weight model (the
golden tiny model, 32000-token Llama vocabulary) under the grammar, sampling at temperature 1 from
the masked logits, and validate each complete output with ``jsonschema`` (formats checked). Outputs
are "valid", "invalid" (the grammar admitted a value the schema rejects: a soundness bug), "caught"
(invalid, but the grammar lists the keyword in ``unenforced``, so the server validates and retries)
or "cut" (``--max-tokens`` reached first). Mask time is the time of computing the allowed-token mask
at each step, in the same generation loop, for both engines.

llguidance (``pip install llguidance``) runs when importable: the same files, the same model and
loop, its ``LLMatcher`` over a tokenizer built from this engine's vocabulary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.llm import load_model  # noqa: E402
from agent.llm.grammar import SchemaUnsupportedError, json_schema_grammar, token_table  # noqa: E402

DEFAULT_DIR = REPO.parent / "shared" / "schemas" / "jsonschemabench"
VOCAB = REPO / "tests" / "data" / "golden" / "vocab" / "ggml-vocab-llama-spm.gguf"
TINY32K = REPO / "bench" / ".cache" / "tiny32k-q4_0.gguf"  # tiny shape, the real 32000-token vocab
PROMPT = "Write one JSON value for the schema:"


class Ours:
    name = "agent"

    def __init__(self, model: Any):
        self.table = token_table(model)

    def compile(self, schema: Any) -> Any:
        return json_schema_grammar(schema)

    def matcher(self, grammar: Any) -> Any:
        m = grammar.matcher(self.table)
        return m.allowed_mask, m.accept, m.is_complete, lambda: bytes(m.text)


class Guidance:
    name = "llguidance"

    def __init__(self, model: Any):
        import llguidance

        self.ll = llguidance
        table = token_table(model)
        self.pieces = table.pieces
        self.n_vocab = table.n_vocab

        ids = {p: i for i, p in enumerate(table.pieces) if p}
        longest = max(map(len, ids))

        class Tok:  # this engine's vocabulary, as llguidance's TokenizerWrapper reads it
            eos_token_id = table.eos_id
            bos_token_id = 1
            tokens = list(table.pieces)

            def __call__(self, data: bytes) -> list[int]:
                """Greedy longest pieces, no dummy-prefix space: forced bytes stay exact."""
                out, i = [], 0
                while i < len(data):
                    for n in range(min(longest, len(data) - i), 0, -1):
                        if data[i : i + n] in ids:
                            out.append(ids[data[i : i + n]])
                            i += n
                            break
                    else:
                        raise ValueError(f"no token for byte {data[i]}")
                return out

        self.tok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(Tok()))

    def compile(self, schema: Any) -> Any:
        grammar = self.ll.LLMatcher.grammar_from_json_schema(schema)
        err = self.ll.LLMatcher.validate_grammar(grammar, self.tok)
        if err and not err.startswith("WARNING"):
            raise SchemaUnsupportedError([err[:300]])
        return grammar

    def matcher(self, grammar: Any) -> Any:
        m = self.ll.LLMatcher(self.tok, grammar)
        out = bytearray()

        def mask() -> np.ndarray:
            bits = np.frombuffer(m.compute_bitmask(), dtype=np.uint8)
            return np.unpackbits(bits, bitorder="little")[: self.n_vocab].astype(bool)

        def accept(tok: int) -> None:
            if not m.consume_token(tok):
                raise RuntimeError(m.get_error())
            out.extend(self.pieces[tok])

        return mask, accept, lambda: m.is_stopped() or False, lambda: bytes(out)


def generate(model: Any, backend: Any, grammar: Any, seed: int, max_tokens: int) -> dict:
    """One generation under the grammar; per-step mask times in seconds."""
    mask_fn, accept, done, text = backend.matcher(grammar)
    eos = token_table(model).eos_id
    rng = np.random.default_rng(seed)
    model.reset()
    logits = model.eval(model.tokenize(PROMPT))[-1]
    times: list[float] = []
    finished = False
    for _ in range(max_tokens):
        t0 = time.perf_counter()
        mask = mask_fn()
        times.append(time.perf_counter() - t0)
        masked = np.where(mask, logits.astype(np.float64), -np.inf)
        p = np.exp(masked - masked.max())
        tok = int(rng.choice(len(p), p=p / p.sum()))
        if tok == eos:
            finished = True
            break
        accept(tok)
        if done():
            finished = True
            break
        logits = model.eval([tok])[-1]
    return {"text": text().decode("utf-8", "replace"), "finished": finished, "mask_s": times}


def check(schema: Any, text: str) -> bool:
    import jsonschema

    try:
        value = json.loads(text)
    except ValueError:
        return False
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(value)


def run(backend: Any, model: Any, files: list[Path], gens: int, max_tokens: int) -> dict:
    counts = dict.fromkeys(
        ["compiled", "refused", "crashed", "valid", "invalid", "caught", "cut"], 0
    )
    compile_s: list[float] = []
    mask_s: list[float] = []
    bad: list[str] = []
    for path in files:
        schema = json.loads(path.read_text())
        t0 = time.perf_counter()
        try:
            grammar = backend.compile(schema)
        except SchemaUnsupportedError:
            counts["refused"] += 1
            continue
        except Exception:  # noqa: BLE001 -- counting crashes is the point
            counts["crashed"] += 1
            bad.append(f"{path.name}: crash {traceback.format_exc().splitlines()[-1][:120]}")
            continue
        compile_s.append(time.perf_counter() - t0)
        counts["compiled"] += 1
        print(f"  {backend.name}: {path.name}", file=sys.stderr, flush=True)
        for seed in range(gens):
            try:
                out = generate(model, backend, grammar, seed, max_tokens)
            except Exception:  # noqa: BLE001
                counts["crashed"] += 1
                bad.append(f"{path.name}: generation {traceback.format_exc().splitlines()[-1]}")
                continue
            mask_s.extend(out["mask_s"])
            if not out["finished"]:
                counts["cut"] += 1
            elif check(schema, out["text"]):
                counts["valid"] += 1
            elif getattr(grammar, "unenforced", ()):
                counts["caught"] += 1
            else:
                counts["invalid"] += 1
                bad.append(f"{path.name}: invalid output {out['text'][:120]!r}")
    ms = sorted(x * 1e3 for x in mask_s)
    return {
        "backend": backend.name,
        "files": len(files),
        **counts,
        "compile_ms_median": round(1e3 * statistics.median(compile_s), 2) if compile_s else None,
        "compile_ms_max": round(1e3 * max(compile_s), 1) if compile_s else None,
        "mask_ms_mean": round(statistics.fmean(ms), 3) if ms else None,
        "mask_ms_p50": round(ms[len(ms) // 2], 3) if ms else None,
        "mask_ms_p99": round(ms[int(len(ms) * 0.99)], 3) if ms else None,
        "mask_steps": len(ms),
        "problems": bad,
    }


def decode_step_ms(path: str, steps: int = 16) -> float:
    """Median time of one decode step of ``path`` (after an 8-token prompt)."""
    m = load_model(path, n_ctx=256)
    m.eval(list(range(1, 9)))
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        m.eval([100 + i])
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=str(DEFAULT_DIR))
    ap.add_argument("--model", default=str(TINY32K), help="small random model that generates")
    ap.add_argument("--gens", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--limit", type=int, default=0, help="only the first N files")
    ap.add_argument("--no-llguidance", action="store_true")
    ap.add_argument("--decode-model", help="also time a decode step of this model (e.g. 1.1B)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    files = sorted(Path(args.dir).glob("*.json"))[: args.limit or None]
    if args.model == str(TINY32K) and not TINY32K.exists():
        from agent.llm.files import open_model_file
        from agent.llm.fixtures import make_model

        TINY32K.parent.mkdir(parents=True, exist_ok=True)
        make_model(TINY32K, "tiny", "q4_0", vocab=open_model_file(VOCAB).vocab)
    model = load_model(args.model, n_ctx=args.max_tokens + 64)
    backends: list[Any] = [Ours(model)]
    if not args.no_llguidance:
        try:
            backends.append(Guidance(model))
        except ImportError:
            print("llguidance is not installed: only this engine is measured")
    results = [run(b, model, files, args.gens, args.max_tokens) for b in backends]
    report: dict[str, Any] = {"results": results}
    if args.decode_model:
        report["decode_step_ms"] = round(decode_step_ms(args.decode_model), 2)
    cols = ["compiled", "refused", "crashed", "valid", "invalid", "caught", "cut"]
    cols += ["compile_ms_median", "compile_ms_max", "mask_ms_mean", "mask_ms_p50", "mask_ms_p99"]
    print(f"{len(files)} schemas from {args.dir}, {args.gens} generations each")
    print(f"{'':12}" + "".join(f"{c:>18}" for c in cols))
    for r in results:
        print(f"{r['backend']:12}" + "".join(f"{r[c]!s:>18}" for c in cols))
        for p in r["problems"][:20]:
            print(f"  {r['backend']}: {p}")
    if "decode_step_ms" in report:
        print(f"decode step of {args.decode_model}: {report['decode_step_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
