"""Random-weight Llama models of real shapes and real type mixes, for tests and benchmarks.

    python -m agent.llm.formats.fixtures --shape 1b --type q4_k_m OUT.gguf
    make_model(path, shape="7b", qtype="q4_0", format="ggml")

Blocks hold random codes with small, explicitly written f16 scales, so every block is valid (no
NaN/inf) and dequantized weights come out roughly N(0, 0.02), which keeps activations sane. The
vocab is borrowed from a model file or synthesized. Files are streamed: a 1B model never sits in
RAM.

Type names: a bare type (``q4_0``, ``q4_k``...) gives every matrix that type (one kernel per file);
llama.cpp's file types with a suffix (``q4_k_m``, ``q3_k_l``, ``q2_k_mix``, ``q4_0_mix``...) mix
types as its quantizer (August 2023) assigned them; see ``tensor_type``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agent.errors import AgentError
from agent.llm.formats.convert import add_llama_keys, add_vocab_keys, stderr_progress
from agent.llm.formats.ggml_types import LAYOUTS, GGMLType
from agent.llm.formats.ggml_writer import GGMLHParams, GGMLWriter, find_n_mult
from agent.llm.formats.gguf_writer import GGUFWriter
from agent.llm.formats.modelfile import (
    TOKEN_BYTE,
    TOKEN_CONTROL,
    TOKEN_NORMAL,
    TOKEN_UNKNOWN,
    Vocab,
)
from agent.llm.llama2 import LlamaHParams

QK_K = 256
WEIGHT_STD = 0.02
CHUNK_BYTES = 8 << 20  # bytes generated per piece of a tensor


class FixtureError(AgentError):
    """A fixture could not be made as asked (unknown shape or type, dims that do not fit blocks)."""


# A fixture's shape is its hyperparameters (context length included): one record for both.
ModelShape = LlamaHParams

SHAPES: dict[str, ModelShape] = {
    # The golden files' shape (tests/golden.py).
    "tiny": ModelShape(1024, 256, 2, 4, 4, 768),
    # 70B's grouping (8 query heads per KV head) at tiny size, for GQA tests on both containers.
    "tiny_gqa": ModelShape(1024, 256, 2, 8, 1, 768),
    "1b": ModelShape(32000, 2048, 22, 32, 4, 5632, n_ctx=2048),  # TinyLlama 1.1B
    "7b": ModelShape(32000, 4096, 32, 32, 32, 11008),
    "13b": ModelShape(32000, 5120, 40, 40, 40, 13824),
    "70b": ModelShape(32000, 8192, 80, 64, 8, 28672),
}


@dataclass(frozen=True)
class QuantSpec:
    base: GGMLType
    ftype: int  # llama_ftype written as general.file_type / the GGML header ftype
    mix: str | None  # None: every matrix is ``base``; else llama.cpp's rules for this ftype


_G = GGMLType
QTYPES: dict[str, QuantSpec] = {
    "f32": QuantSpec(_G.F32, 0, None),
    "f16": QuantSpec(_G.F16, 1, None),
    "q4_0": QuantSpec(_G.Q4_0, 2, None),
    "q4_1": QuantSpec(_G.Q4_1, 3, None),
    "q5_0": QuantSpec(_G.Q5_0, 8, None),
    "q5_1": QuantSpec(_G.Q5_1, 9, None),
    "q8_0": QuantSpec(_G.Q8_0, 7, None),
    "q2_k": QuantSpec(_G.Q2_K, 10, None),
    "q3_k": QuantSpec(_G.Q3_K, 11, None),
    "q4_k": QuantSpec(_G.Q4_K, 14, None),
    "q5_k": QuantSpec(_G.Q5_K, 16, None),
    "q6_k": QuantSpec(_G.Q6_K, 18, None),
    "f16_mix": QuantSpec(_G.F16, 1, "f16"),
    "q4_0_mix": QuantSpec(_G.Q4_0, 2, "q4_0"),
    "q4_1_mix": QuantSpec(_G.Q4_1, 3, "q4_1"),
    "q5_0_mix": QuantSpec(_G.Q5_0, 8, "q5_0"),
    "q5_1_mix": QuantSpec(_G.Q5_1, 9, "q5_1"),
    "q8_0_mix": QuantSpec(_G.Q8_0, 7, "q8_0"),
    "q2_k_mix": QuantSpec(_G.Q2_K, 10, "q2_k"),
    "q3_k_s": QuantSpec(_G.Q3_K, 11, "q3_k_s"),
    "q3_k_m": QuantSpec(_G.Q3_K, 12, "q3_k_m"),
    "q3_k_l": QuantSpec(_G.Q3_K, 13, "q3_k_l"),
    "q4_k_s": QuantSpec(_G.Q4_K, 14, "q4_k_s"),
    "q4_k_m": QuantSpec(_G.Q4_K, 15, "q4_k_m"),
    "q5_k_s": QuantSpec(_G.Q5_K, 16, "q5_k_s"),
    "q5_k_m": QuantSpec(_G.Q5_K, 17, "q5_k_m"),
    "q6_k_mix": QuantSpec(_G.Q6_K, 18, "q6_k"),
}
K_TYPES = frozenset({_G.Q2_K, _G.Q3_K, _G.Q4_K, _G.Q5_K, _G.Q6_K})


def use_more_bits(i_layer: int, n_layer: int) -> bool:
    """llama.cpp's choice of layers that get more bits in Q4_K_M / Q5_K_M files."""
    return (
        i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2
    )


def tensor_type(
    name: str, shape: tuple[int, ...], spec: QuantSpec, n_layer: int, n_head_kv: int, n_head: int
) -> GGMLType:
    """The type llama.cpp's quantizer (llama_model_quantize_internal, Aug 2023) gives a tensor."""
    if len(shape) == 1:
        return _G.F32  # norms stay f32
    new, mix = spec.base, spec.mix
    if mix is not None and name == "output.weight":
        new = _G.Q6_K
    elif mix is not None and name.endswith(
        ("attn_v.weight", "ffn_down.weight", "attn_output.weight")
    ):
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        if mix in ("q3_k_m", "q2_k"):
            new = _G.Q4_K
        elif mix == "q3_k_l":
            new = _G.Q5_K
        elif (
            mix in ("q4_k_m", "q5_k_m")
            and not name.endswith("attn_output.weight")
            and use_more_bits(layer, n_layer)
        ):
            new = _G.Q6_K
        # 70B: 8 query heads share each attn_v, so it is cheap to give it more bits.
        if (
            name.endswith("attn_v.weight")
            and n_layer == 80
            and n_head == 8 * n_head_kv
            and new in (_G.Q3_K, _G.Q4_K)
        ):
            new = _G.Q5_K
    # llama.cpp wants both dims of a K-quant tensor to divide by 256, else output -> F16 and
    # token_embd -> Q4_0. Other tensors only need whole blocks per row here, so tiny GQA shapes
    # work.
    if (
        new in K_TYPES
        and spec.mix is not None
        and name in ("output.weight", "token_embd.weight")
        and any(d % QK_K for d in shape)
    ):
        return _G.F16 if name == "output.weight" else _G.Q4_0
    if new in K_TYPES and shape[-1] % QK_K:
        raise FixtureError(
            f"tensor {name!r} of shape {shape} does not fit {new.name}'s {QK_K}-value blocks; "
            "pick a shape whose dimensions are multiples of 256 or a non-K type"
        )
    if shape[-1] % LAYOUTS[new].block_size:
        raise FixtureError(f"tensor {name!r}: rows of {shape[-1]} do not fit {new.name} blocks")
    return new


def tensor_shapes(s: ModelShape) -> list[tuple[str, tuple[int, ...]]]:
    """Llama tensors (GGUF names, numpy shapes) in the order llama.cpp's converter writes them."""
    kv = s.head_dim * s.n_head_kv
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (s.n_vocab, s.n_embd))]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (s.n_embd,)),
            (p + "attn_q.weight", (s.n_embd, s.n_embd)),
            (p + "attn_k.weight", (kv, s.n_embd)),
            (p + "attn_v.weight", (kv, s.n_embd)),
            (p + "attn_output.weight", (s.n_embd, s.n_embd)),
            (p + "ffn_norm.weight", (s.n_embd,)),
            (p + "ffn_gate.weight", (s.n_ff, s.n_embd)),
            (p + "ffn_up.weight", (s.n_ff, s.n_embd)),
            (p + "ffn_down.weight", (s.n_embd, s.n_ff)),
        ]
    return out + [("output_norm.weight", (s.n_embd,)), ("output.weight", (s.n_vocab, s.n_embd))]


# -- random blocks ---------------------------------------------------------------------------------
# RMS of a dequantized value per unit of the block scale d, for the code/scale distributions below;
# d = WEIGHT_STD / RMS puts the weights near N(0, 0.02).
_RMS_PER_D = {
    _G.Q4_0: 4.64,
    _G.Q4_1: 4.61,
    _G.Q5_0: 9.25,
    _G.Q5_1: 9.23,
    _G.Q8_0: 73.9,
    _G.Q2_K: 10.2,
    _G.Q3_K: 43.3,
    _G.Q4_K: 169.7,
    _G.Q5_K: 339.8,
    _G.Q6_K: 677.5,
}


def _f16_bytes(x: np.ndarray) -> np.ndarray:
    return x.astype("<f2").view(np.uint8).reshape(-1, 2)


def _pack_k4_scales(sc: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """8 six-bit scales and 8 mins per block -> the 12 bytes of Q4_K/Q5_K (inverse of
    k4_scales_mins)."""
    out = np.empty((sc.shape[0], 12), np.uint8)
    out[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    out[:, 4:8] = (mn[:, 0:4] & 63) | ((mn[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:8] & 0xF) | ((mn[:, 4:8] & 0xF) << 4)
    return out


def random_blocks(
    rng: np.random.Generator, qtype: GGMLType, n_blocks: int, std: float = WEIGHT_STD
) -> np.ndarray:
    """``n_blocks`` valid random blocks of ``qtype`` (uint8 [n_blocks, type_size]),
    zero-mean-ish."""
    size = LAYOUTS[qtype].type_size
    b = rng.integers(0, 256, (n_blocks, size), dtype=np.uint8)
    d = (std / _RMS_PER_D[qtype]) * rng.uniform(0.75, 1.25, n_blocks).astype(np.float32)
    d = d.astype(np.float16).astype(np.float32)  # offsets below use the d that is stored
    if qtype in (
        _G.Q4_0,
        _G.Q5_0,
    ):  # codes - 8 (or 16) average -0.5: a random sign of d cancels that
        d *= rng.choice(np.array([-1, 1], np.float32), n_blocks)
    if qtype == _G.Q4_0 or qtype == _G.Q5_0 or qtype == _G.Q8_0:
        b[:, 0:2] = _f16_bytes(d)
    elif qtype in (_G.Q4_1, _G.Q5_1):  # min centres the unsigned codes
        b[:, 0:2] = _f16_bytes(d)
        b[:, 2:4] = _f16_bytes(-d * (7.5 if qtype == _G.Q4_1 else 15.5))
    elif qtype == _G.Q2_K:  # equal 4-bit scale and min, dmin = 1.5 d: y = d*sc*(q - 1.5)
        sc = rng.integers(1, 16, (n_blocks, 16), dtype=np.uint8)
        b[:, 0:16] = sc | (sc << 4)
        b[:, 80:82] = _f16_bytes(d)
        b[:, 82:84] = _f16_bytes(1.5 * d)
    elif qtype == _G.Q3_K:  # random bytes are valid signed 6-bit scales
        b[:, 108:110] = _f16_bytes(d)
    elif qtype in (_G.Q4_K, _G.Q5_K):  # equal scale and min, dmin = mid-code * d
        sc = rng.integers(1, 64, (n_blocks, 8), dtype=np.uint8)
        b[:, 0:2] = _f16_bytes(d)
        b[:, 2:4] = _f16_bytes(d * (7.5 if qtype == _G.Q4_K else 15.5))
        b[:, 4:16] = _pack_k4_scales(sc, sc)
    elif qtype == _G.Q6_K:
        b[:, 192:208] = rng.integers(-63, 64, (n_blocks, 16), dtype=np.int8).view(np.uint8)
        b[:, 208:210] = _f16_bytes(d)
    else:
        raise FixtureError(f"no random block generator for {qtype.name}")
    return b


def _tensor_source(
    seed: int, index: int, name: str, shape: tuple[int, ...], qtype: GGMLType
) -> Callable[[], Iterator[np.ndarray]]:
    """Lazy chunks of rows; the rng depends only on (seed, tensor index), not on the chunking."""

    def gen() -> Iterator[np.ndarray]:
        rng = np.random.default_rng([seed, index])
        rows, cols = (1, shape[0]) if len(shape) == 1 else shape
        if len(shape) == 1:  # norm weights: near 1, like trained Llama norms
            yield (1.0 + 0.05 * rng.standard_normal(cols)).astype(np.float32)
            return
        layout = LAYOUTS[qtype]
        row_bytes = cols // layout.block_size * layout.type_size
        step = max(1, CHUNK_BYTES // row_bytes)
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            if qtype in (_G.F32, _G.F16):
                yield (WEIGHT_STD * rng.standard_normal((n, cols), dtype=np.float32)).astype(
                    np.float16 if qtype == _G.F16 else np.float32
                )
            else:
                yield random_blocks(rng, qtype, n * cols // layout.block_size)

    return gen


# -- vocab -----------------------------------------------------------------------------------------
def synthetic_vocab(n_vocab: int) -> Vocab:
    """<unk>, <s>, </s>, the 256 byte pieces, then "▁tok{i}" fillers with falling scores."""
    if n_vocab < 259:
        raise FixtureError(
            f"n_vocab {n_vocab} is too small: a SentencePiece vocab needs 259 special/byte pieces"
        )
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL] + [TOKEN_BYTE] * 256
    scores = [0.0] * 259
    for i in range(259, n_vocab):
        tokens.append(f"\u2581tok{i}")
        types.append(TOKEN_NORMAL)
        scores.append(-float(i - 259))
    return Vocab(tokens, np.asarray(scores, np.float32), np.asarray(types, np.int32))


def borrowed_vocab(path: str | Path, n_vocab: int) -> Vocab:
    """The first ``n_vocab`` pieces of a model file's vocab, padded with fillers if it is
    shorter."""
    from agent.llm.formats.files import open_model_file

    v = open_model_file(path).vocab
    if len(v) >= n_vocab:
        return replace(
            v,
            tokens=v.tokens[:n_vocab],
            scores=v.scores[:n_vocab].copy(),
            types=v.types[:n_vocab].copy(),
        )
    filler = synthetic_vocab(max(n_vocab, 259))
    return replace(
        v,
        tokens=v.tokens + filler.tokens[len(v) : n_vocab],
        scores=np.concatenate([v.scores, filler.scores[len(v) : n_vocab]]),
        types=np.concatenate([v.types, filler.types[len(v) : n_vocab]]),
    )


# -- the model file --------------------------------------------------------------------------------
def make_model(
    path: str | Path,
    shape: str | ModelShape = "tiny",
    qtype: str = "q4_0",
    *,
    vocab: str | Path | Vocab | None = None,
    seed: int = 0,
    format: str = "gguf",
    gguf_version: int = 3,
    ggml_kind: str = "ggjt",
    ggml_version: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a random-weight Llama model; returns ``path``. ``format`` is "gguf" or "ggml"."""
    s = SHAPES.get(shape.lower()) if isinstance(shape, str) else shape
    if s is None:
        raise FixtureError(
            f"unknown shape {shape!r}; known: {', '.join(SHAPES)} (or pass a ModelShape)"
        )
    spec = QTYPES.get(qtype.lower())
    if spec is None:
        raise FixtureError(f"unknown type {qtype!r}; known: {', '.join(QTYPES)}")
    if isinstance(vocab, Vocab):
        v = vocab
        if len(v) != s.n_vocab:
            s = replace(s, n_vocab=len(v))
    elif vocab is not None:
        v = borrowed_vocab(vocab, s.n_vocab)
    else:
        v = synthetic_vocab(s.n_vocab)
    tensors = [
        (n, sh, tensor_type(n, sh, spec, s.n_layer, s.n_head_kv, s.n_head))
        for n, sh in tensor_shapes(s)
    ]
    name = f"random {shape if isinstance(shape, str) else 'custom'} {qtype}"
    path = Path(path)
    if format == "gguf":
        gw = GGUFWriter(path, version=gguf_version, progress=progress)
        add_llama_keys(
            gw, s, name=name, file_type=spec.ftype, description=f"random weights, seed {seed}"
        )
        add_vocab_keys(gw, v)
        w: GGUFWriter | GGMLWriter = gw
    elif format == "ggml":
        hpg = GGMLHParams(
            s.n_vocab,
            s.n_embd,
            find_n_mult(s.n_ff, s.n_embd),
            s.n_head,
            s.n_layer,
            s.head_dim,
            spec.ftype,
        )
        w = GGMLWriter(path, hpg, kind=ggml_kind, version=ggml_version, progress=progress)
        w.set_vocab(v)
    else:
        raise FixtureError(f"unknown format {format!r}; use 'gguf' or 'ggml'")
    for i, (n, sh, t) in enumerate(tensors):
        w.add_tensor(n, _tensor_source(seed, i, n, sh, t), shape=sh, type=t)
    w.write()
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m agent.llm.formats.fixtures",
        description="Write a random-weight Llama model of a real shape and type mix.",
    )
    p.add_argument("out", metavar="OUT", help="output file (.gguf or .bin)")
    p.add_argument(
        "--shape", default="tiny", choices=list(SHAPES), help="model shape (default tiny)"
    )
    p.add_argument(
        "--type",
        dest="qtype",
        default="q4_0",
        choices=list(QTYPES),
        help="bare type = every matrix that type; *_s/_m/_l/_mix = llama.cpp's mix (default q4_0)",
    )
    p.add_argument("--vocab", metavar="FILE", help="borrow the vocab of this GGUF/GGML file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--format", choices=("gguf", "ggml"), default="gguf", help="gguf (v3) or ggml (ggjt v3)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    try:
        make_model(
            args.out,
            args.shape,
            args.qtype,
            vocab=args.vocab,
            seed=args.seed,
            format=args.format,
            progress=None if args.quiet else stderr_progress(f"writing {args.out}"),
        )
    except AgentError as exc:
        print(f"fixtures: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
