"""How fast the tokenizer encodes a 100 KB page, and the inputs that are hardest for it.

    .venv/bin/python bench/tokenizer.py [--vocab FILE] [--size 100000]

"cold" is a fresh Tokenizer (empty word cache), "warm" the same text again, "reference" the unsplit
llama.cpp merge loop, "sentencepiece" the C++ library on the same vocabulary (if installed).
Prints a table; asserts only that every path gives the same ids.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
T = TypeVar("T")

from agent.llm.formats.modelfile import Vocab  # noqa: E402
from agent.llm.tokenizer import Tokenizer  # noqa: E402


def page_text(size: int) -> str:
    """Prose and code from this repository's docs and sources, like text scraped from a page."""
    files = sorted(ROOT.glob("*.md")) + sorted(ROOT.glob("agent/**/*.py"))
    text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    while len(text) < size:
        text += "\n" + text
    return text[:size]


def cases(size: int) -> dict[str, str]:
    rnd = random.Random(0)
    page = page_text(size)
    return {
        "page": page,
        "page, no spaces": page.replace(" ", "")[:size],
        "CJK (one long word)": "".join(chr(rnd.randint(0x4E00, 0x9FFF)) for _ in range(size // 3)),
        "base64 (one long word)": "".join(
            rnd.choice("ABCDEFabcdef0123456789+/") for _ in range(size)
        ),
        "spaces": " " * size,
        "emoji": "\U0001f999" * (size // 4),
    }


def timed(fn: Callable[..., T], *args: Any) -> tuple[float, T]:
    """Seconds for ``fn(*args)``, and its result (arguments passed, not closed over)."""
    t0 = time.perf_counter()
    ids = fn(*args)
    return time.perf_counter() - t0, ids


def sentencepiece_encoder(vocab: Vocab) -> Callable[[str], list[int]] | None:
    try:
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:
        return None
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.vocab_size = len(vocab)
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.allow_whitespace_only_pieces = True
    m.trainer_spec.pad_id = -1
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = vocab.add_space_prefix
    m.normalizer_spec.remove_extra_whitespaces = False
    for piece, score, kind in zip(
        vocab.tokens, vocab.scores.tolist(), vocab.types.tolist(), strict=False
    ):
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, kind
    sp = spm.SentencePieceProcessor(model_proto=m.SerializeToString())
    return lambda text: [vocab.bos_id] + sp.encode(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--vocab",
        type=Path,
        default=None,
        help="a GGUF/GGML model or vocab file (default: the golden 32000-token Llama vocab)",
    )
    ap.add_argument("--size", type=int, default=100_000, help="characters per test text")
    args = ap.parse_args()

    if args.vocab is None:
        from tests.golden import vocab_dir

        args.vocab = vocab_dir() / "ggml-vocab-llama-spm.gguf"
    t0 = time.perf_counter()
    vocab = Tokenizer.from_model_file(args.vocab).vocab
    load = time.perf_counter() - t0
    t_init, _ = timed(lambda: Tokenizer(vocab))
    print(
        f"{args.vocab.name}: {len(vocab)} tokens; file read {load:.3f}s, Tokenizer() {t_init:.3f}s"
    )
    spm_encode = sentencepiece_encoder(vocab)

    print(
        f"{'text':24} {'bytes':>7} {'tokens':>7} {'cold':>7} {'warm':>7} {'ref':>7} {'spm':>7} "
        f"{'decode':>7}"
    )
    for name, text in cases(args.size).items():
        tok = Tokenizer(vocab)
        cold, ids = timed(tok.encode, text)
        warm, again = timed(tok.encode, text)
        ref, ref_ids = timed(tok.encode_reference, text)
        assert ids == again == ref_ids, f"{name}: the fast path and the reference disagree"
        spm_s = "-"
        if spm_encode is not None:
            t, spm_ids = timed(spm_encode, text)
            spm_s = f"{t:.3f}" + ("" if spm_ids == ids else "!")  # "!" marks a disagreement
        dec, _ = timed(tok.decode, ids)
        print(
            f"{name:24} {len(text.encode()):7} {len(ids):7} {cold:7.3f} {warm:7.3f} {ref:7.3f} "
            f"{spm_s:>7} {dec:7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
