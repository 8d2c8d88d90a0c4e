"""Real-world JSON Schemas: coverage, soundness, mask cost; side by side with llguidance (issue 16).

    .venv/bin/python bench/schemas.py                       # ../shared/schemas/jsonschemabench
    .venv/bin/python bench/schemas.py --gens 2 --max-tokens 400 --json bench/schemas.json
    .venv/bin/python bench/schemas.py --decode-model --only agent
                                                    # + the grammar's share of 1.1B decode time

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
# The 1.1B shape with the real vocabulary: mask cost depends on the tokens' bytes (engine.py's 1.1B
# files carry synthetic "tokNNNN" pieces, which a JSON grammar kills after one byte).
DECODE_1B = REPO / "bench" / ".cache" / "1b-q4_0-llama-vocab.gguf"
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


def run(
    backend: Any, model: Any, files: list[Path], gens: int, max_tokens: int, gen_every: int = 1
) -> dict:
    counts = dict.fromkeys(
        ["compiled", "refused", "crashed", "valid", "invalid", "caught", "cut"], 0
    )
    compile_s: list[float] = []
    mask_s: list[float] = []
    bad: list[str] = []
    for index, path in enumerate(files):
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
        if index % gen_every:
            continue  # compiled only: generations on every gen_every-th file (same for both)
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


def decode_share(path: str, files: list[Path], every: int, tokens: int) -> dict:
    """Real generation on ``path`` (e.g. the 1.1B shape) under the grammars of every ``every``-th
    schema: the grammar's time per token (masks, accept, completion checks) over the decode time
    per token without it, in the same generations."""
    sys.path.insert(0, str(REPO / "bench"))
    from grammar import TimedGrammar  # bench/grammar.py

    model = load_model(path, n_ctx=tokens + 64)
    model.complete(PROMPT, max_tokens=2, temperature=0.0)  # warm up
    grammar_s = decode_s = 0.0
    n = 0
    for path_i in files[::every]:
        try:
            g = json_schema_grammar(json.loads(path_i.read_text()))
        except SchemaUnsupportedError:
            continue
        timed = TimedGrammar(g)
        model.complete(PROMPT, max_tokens=tokens, temperature=1.0, seed=1, grammar=timed)
        st = model.last_stats
        grammar_s += timed.seconds
        decode_s += st.generate_seconds - timed.seconds
        n += st.generated_tokens
        print(f"  decode: {path_i.name} {st.generated_tokens} tokens", file=sys.stderr, flush=True)
    n = max(n, 1)
    return {
        "model": path,
        "tokens": n,
        "decode_ms_per_token": round(1e3 * decode_s / n, 2),
        "grammar_ms_per_token": round(1e3 * grammar_s / n, 3),
        "grammar_over_decode_pct": round(100 * grammar_s / max(decode_s, 1e-9), 1),
    }


def make_with_llama_vocab(path: Path, shape: str) -> None:
    from agent.llm.formats.files import open_model_file
    from agent.llm.formats.fixtures import make_model

    path.parent.mkdir(parents=True, exist_ok=True)
    make_model(path, shape, "q4_0", vocab=open_model_file(VOCAB).vocab)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=str(DEFAULT_DIR))
    ap.add_argument("--model", default=str(TINY32K), help="small random model that generates")
    ap.add_argument("--gens", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=400)
    ap.add_argument("--limit", type=int, default=0, help="only the first N files")
    ap.add_argument("--gen-every", type=int, default=1, help="generate for every Nth file only")
    ap.add_argument("--no-llguidance", action="store_true")
    ap.add_argument("--only", choices=["agent", "llguidance"], help="run one backend")
    ap.add_argument(
        "--decode-model",
        nargs="?",
        const=str(DECODE_1B),
        help="also generate on this model (default: the 1.1B shape with Llama's vocabulary, made "
        "on first use) and report the grammar's share of its decode time",
    )
    ap.add_argument("--decode-every", type=int, default=10, help="schemas for --decode-model")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    files = sorted(Path(args.dir).glob("*.json"))[: args.limit or None]
    for path, shape in ((args.model, "tiny"), (args.decode_model, "1b")):
        if path in (str(TINY32K), str(DECODE_1B)) and not Path(path).exists():
            make_with_llama_vocab(Path(path), shape)
    model = load_model(args.model, n_ctx=args.max_tokens + 64, threads=1)  # tiny: no fork-join
    backends: list[Any] = [] if args.only == "llguidance" else [Ours(model)]
    if not args.no_llguidance and args.only != "agent":
        try:
            backends.append(Guidance(model))
        except ImportError:
            print("llguidance is not installed: only this engine is measured")
    results = [run(b, model, files, args.gens, args.max_tokens, args.gen_every) for b in backends]
    report: dict[str, Any] = {"results": results}
    if args.decode_model:
        report["decode"] = decode_share(
            args.decode_model, files, args.decode_every, args.decode_tokens
        )
    cols = ["compiled", "refused", "crashed", "valid", "invalid", "caught", "cut"]
    cols += ["compile_ms_median", "compile_ms_max", "mask_ms_mean", "mask_ms_p50", "mask_ms_p99"]
    print(
        f"{len(files)} schemas from {args.dir}, {args.gens} generations for every "
        f"{args.gen_every}th file that compiles, model {args.model}"
    )
    print(f"{'':12}" + "".join(f"{c:>18}" for c in cols))
    for r in results:
        print(f"{r['backend']:12}" + "".join(f"{r[c]!s:>18}" for c in cols))
        for p in r["problems"][:20]:
            print(f"  {r['backend']}: {p}")
    if "decode" in report:
        print("generation on", json.dumps(report["decode"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
