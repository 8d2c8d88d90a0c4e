"""The Llama-2 forward pass, readable on one screen.

RMSNorm, RoPE on consecutive pairs (llama.cpp's "normal" mode), grouped-query attention with a
preallocated f16 KV cache (as llama.cpp keeps it), SwiGLU feed-forward. ``forward`` evaluates
a batch of tokens at positions n_past.. and returns their logits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.llm.formats.modelfile import ModelFile
from agent.llm.hparams import ModelInfo
from agent.llm.kernels import runtime
from agent.llm.kernels.linear import Embedding, Linear, vector

# Prompts go through the layers this many tokens at a time (llama.cpp's "ubatch"): activations
# stay a few MB whatever the prompt's length, at no cost in speed (prefill at 128 and at 512
# tokens ran at the same rate here, bench/engine.py).
N_BATCH = 128
# Attention scores are computed for this many floats at most (query rows x heads x positions): 1M
# floats, 4 MB, instead of [n, n_head, T], 67 MB for a 128-token batch at position 4096 on 32 heads.
MAX_SCORES = 1 << 20
# Up to this many query rows, attention goes to the kernel module's f16 kernel when it has one:
# every prompt chunk (N_BATCH). Since its sums and exponentials are vectorized it beats numpy's
# sgemm path at 128 rows too (1.1B Q4_0, 2 threads: a 2,000-token prompt 70 -> 105 tok/s, a
# 512-token one 122 -> 139).
ATTEND_MAX_ROWS = 128


@dataclass
class Layer:
    attn_norm: np.ndarray
    wq: Linear
    wk: Linear
    wv: Linear
    wo: Linear
    ffn_norm: np.ndarray
    w_gate: Linear
    w_down: Linear
    w_up: Linear


@dataclass
class Span:
    """Rows [start, stop) of a forward batch: one sequence's tokens, written at positions n_past..
    of its own KV cache ([n_layer, n_ctx, n_head_kv, head_dim] f16 arrays, a slot's)."""

    start: int
    stop: int
    n_past: int
    k_cache: np.ndarray
    v_cache: np.ndarray


class Transformer:
    def __init__(
        self,
        mf: ModelFile,
        info: ModelInfo,
        n_ctx: int,
        linear: type = Linear,
        attend: Callable[..., None] | None = None,
        attend_rows: Callable[..., Any] | None = None,
        ops: Any = None,
    ):
        self.info, self.n_ctx, self.attend = info, n_ctx, attend
        # a kernel module's rms_norm, rope and silu_mul: one call each instead of numpy's 5-8
        self.ops = ops
        self._decode: Any = None  # DecodeLayers once built, False where it cannot be
        self.attend_rows = attend_rows  # several sequences' rows in one call (batched steps)
        t = mf.tensor
        self.embed = Embedding(t("token_embd.weight"))
        self.layers = [
            Layer(
                vector(t(f"blk.{i}.attn_norm.weight")),
                linear(t(f"blk.{i}.attn_q.weight")),
                linear(t(f"blk.{i}.attn_k.weight")),
                linear(t(f"blk.{i}.attn_v.weight")),
                linear(t(f"blk.{i}.attn_output.weight")),
                vector(t(f"blk.{i}.ffn_norm.weight")),
                linear(t(f"blk.{i}.ffn_gate.weight")),
                linear(t(f"blk.{i}.ffn_down.weight")),
                linear(t(f"blk.{i}.ffn_up.weight")),
            )
            for i in range(info.n_layer)
        ]
        self.norm = vector(t("output_norm.weight"))
        out = mf.tensors.get("output.weight") or t("token_embd.weight")  # tied embeddings fallback
        self.output = linear(out)
        hd = info.head_dim
        # np.zeros maps pages lazily: an unused context costs no resident memory.
        self.k_cache = np.zeros((info.n_layer, n_ctx, info.n_head_kv, hd), np.float16)
        self.v_cache = np.zeros((info.n_layer, n_ctx, info.n_head_kv, hd), np.float16)
        self.inv_freq = info.rope_freq_base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)

    def linears(self) -> list:
        """Every matrix of the model, in file order of use."""
        mats = [
            m for L in self.layers for m in (L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_down, L.w_up)
        ]
        return mats + [self.output]

    def rms_norm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        if self.ops is not None:
            return self.ops.rms_norm(x, w, self.info.rms_norm_eps)
        # float32 squares summed in float64, then a float32 scale: as llama.cpp's ggml_rms_norm
        ms = np.square(x).sum(axis=-1, keepdims=True, dtype=np.float64) / x.shape[-1]
        return x * (1.0 / np.sqrt(ms + self.info.rms_norm_eps)).astype(np.float32) * w

    def rope_table(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cos and sin [N, 1, hd/2] of pos * scale * base^(-2i/head_dim): once per batch, every
        layer."""
        angle = (pos[:, None] * self.info.rope_freq_scale) * self.inv_freq[None, :]
        return np.cos(angle).astype(np.float32)[:, None, :], np.sin(angle).astype(np.float32)[
            :, None, :
        ]

    def rope(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """Rotate pairs (2i, 2i+1) of every head by the angles of ``rope_table`` (x may be
        overwritten)."""
        if self.ops is not None and x.flags.c_contiguous and x.flags.writeable:
            return self.ops.rope(x, cos, sin)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out

    def silu_mul(self, g: np.ndarray, u: np.ndarray) -> np.ndarray:
        """g * sigmoid(g) * u, in g's memory."""
        if self.ops is not None and g.flags.c_contiguous and u.flags.c_contiguous:
            return self.ops.silu_mul(g, u)
        sig = np.negative(g)  # SiLU, g * sigmoid(g), with one temporary
        np.exp(sig, out=sig)
        sig += 1.0
        g /= sig
        g *= u
        return g

    def attention(
        self,
        q: np.ndarray,
        li: int,
        n_past: int,
        k_cache: np.ndarray | None = None,
        v_cache: np.ndarray | None = None,
    ) -> np.ndarray:
        """Causal attention of q (positions n_past..) over a KV cache (default: the model's)."""
        k_cache = self.k_cache if k_cache is None else k_cache
        v_cache = self.v_cache if v_cache is None else v_cache
        n, n_head, hd = q.shape
        if self.attend is not None and n <= ATTEND_MAX_ROWS:
            out = np.empty((n, n_head, hd), np.float32)
            self.attend(k_cache[li], v_cache[li], np.ascontiguousarray(q), n_past, out)
            return out.reshape(n, n_head * hd)
        n_kv = self.info.n_head_kv
        total = n_past + n
        k = k_cache[li, :total].astype(np.float32).transpose(1, 2, 0)[:, None]  # [n_kv, 1, hd, T]
        v = v_cache[li, :total].astype(np.float32).transpose(1, 0, 2)[:, None]  # [n_kv, 1, T, hd]
        qg = q.reshape(n, n_kv, n_head // n_kv, hd).transpose(
            1, 2, 0, 3
        )  # query head h uses KV head h // group
        out = np.empty((n, n_head * hd), np.float32)
        rows = max(1, MAX_SCORES // (n_head * total))  # query rows per block of scores
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            scores = (
                qg[:, :, r0:r1] @ k
            )  # [n_kv, group, rows, T]: batched sgemm, float32 as llama.cpp
            scores *= np.float32(1.0 / np.sqrt(hd))
            causal = np.arange(total)[None, :] > (n_past + np.arange(r0, r1))[:, None]
            scores[..., causal] = -np.inf
            scores -= scores.max(axis=-1, keepdims=True)  # softmax in place
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            out[r0:r1] = (scores @ v).transpose(2, 0, 1, 3).reshape(r1 - r0, n_head * hd)
        return out

    def forward(self, ids: np.ndarray, n_past: int, last_only: bool = False) -> np.ndarray:
        """Logits of ``ids`` at positions n_past.. (only the last token's with ``last_only``)."""
        n = len(ids)
        logits = np.empty((1 if last_only else n, self.info.n_vocab), np.float32)
        for s in range(0, n, N_BATCH):
            x = self.layers_forward(ids[s : s + N_BATCH], n_past + s)
            if not last_only:
                logits[s : s + len(x)] = self.head(x)
            elif s + len(x) == n:  # a prompt only needs its last logits: skip [n, n_vocab] of work
                logits[0] = self.head(x[-1:])[0]
        return logits

    def head(self, x: np.ndarray) -> np.ndarray:
        return self.output(self.rms_norm(x, self.norm))

    def decode_layers(self) -> Any:
        """The kernel module's one-call decode of rows through every layer (``DecodeLayers``), if
        every projection has an integer kernel for few tokens; else None (the layers run one
        kernel call at a time)."""
        if self._decode is None:
            self._decode = self._make_decode_layers() or False
        return self._decode or None

    def _make_decode_layers(self) -> Any:
        make = getattr(self.ops, "DecodeLayers", None)
        if make is None or self.attend is None:
            return None
        lins = [[L.wq, L.wk, L.wv, L.wo, L.w_gate, L.w_up, L.w_down] for L in self.layers]
        found = [[getattr(m, "decode_descriptor", lambda: None)() for m in ms] for ms in lins]
        if any(d is None for ds in found for d in ds):
            return None
        info = self.info
        return make(
            [(L.attn_norm, L.ffn_norm) for L in self.layers],
            found,
            info.n_head,
            info.n_head_kv,
            info.head_dim,
            self.layers[0].w_gate.n_out,
            info.rms_norm_eps,
        )

    def layers_forward(self, ids: np.ndarray, n_past: int | list[Span]) -> np.ndarray:
        """The hidden states of ``ids`` after the last layer; fills the KV cache at n_past..

        With a list of spans instead of n_past, the rows are several sequences (batched decoding):
        the matrix products run once over all rows, attention per span in the span's own cache.
        """
        info, n = self.info, len(ids)
        if isinstance(n_past, int):
            spans = [Span(0, n, n_past, self.k_cache, self.v_cache)]
        else:
            spans = n_past
        pos = np.concatenate([np.arange(s.n_past, s.n_past + s.stop - s.start) for s in spans])
        cos, sin = self.rope_table(pos.astype(np.float64))
        x = np.array(self.embed(ids), np.float32)  # our own copy: updated in place below
        decode = self.decode_layers() if self.ops is not None and n <= ATTEND_MAX_ROWS else None
        if decode is not None and all(
            s.start == i and s.stop == i + 1 for i, s in enumerate(spans)
        ):
            # decode rows (one token of each sequence): every layer in one kernel call
            runtime.sync_threads(self.ops, runtime.get_threads())
            decode(x, cos, sin, [s.k_cache for s in spans], [s.v_cache for s in spans], pos)
            return x
        rows_attention = None
        if self.attend_rows is not None and len(spans) > 1 and n <= ATTEND_MAX_ROWS:
            owner = [s for s in spans for _ in range(s.stop - s.start)]
            rows_attention = self.attend_rows(
                [s.k_cache for s in owner], [s.v_cache for s in owner], pos, info.n_head
            )
        for li, L in enumerate(self.layers):
            h = self.rms_norm(x, L.attn_norm)
            h.flags.writeable = False  # the kernels quantize (or round) it once for q, k and v
            q = self.rope(L.wq(h).reshape(n, info.n_head, info.head_dim), cos, sin)
            k = self.rope(L.wk(h).reshape(n, info.n_head_kv, info.head_dim), cos, sin)
            v = L.wv(h).reshape(n, info.n_head_kv, info.head_dim)
            att = np.empty((n, info.n_head * info.head_dim), np.float32)
            for s in spans:
                a, b, p = s.start, s.stop, s.n_past
                s.k_cache[li, p : p + b - a] = k[a:b]
                s.v_cache[li, p : p + b - a] = v[a:b]
                if rows_attention is None:
                    att[a:b] = self.attention(q[a:b], li, p, s.k_cache, s.v_cache)
            if rows_attention is not None:
                rows_attention(li, q, att.reshape(n, info.n_head, info.head_dim))
            x += L.wo(att)
            h = self.rms_norm(x, L.ffn_norm)
            h.flags.writeable = False  # ... and once for gate and up
            x += L.w_down(self.silu_mul(L.w_gate(h), L.w_up(h)))
        return x
