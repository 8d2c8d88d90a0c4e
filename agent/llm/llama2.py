"""Llama-2's constants and its hyperparameter record.

GGML files store no context length, RMSNorm epsilon or RoPE settings: the readers, the converter,
the fixtures and every ``n_ctx=`` default take them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.errors import ModelFormatError

CONTEXT_LENGTH = 4096  # Llama-2's training context
RMS_NORM_EPS = 1e-5  # what Llama-2 was trained with
ROPE_FREQ_BASE = 10000.0
ROPE_FREQ_SCALE = 1.0  # no scaling


@dataclass(frozen=True)
class LlamaHParams:
    """A Llama model's hyperparameters: everything the ``llama.*`` GGUF keys hold."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int = CONTEXT_LENGTH
    rms_norm_eps: float = RMS_NORM_EPS
    rope_freq_base: float = ROPE_FREQ_BASE
    rope_freq_scale: float = ROPE_FREQ_SCALE

    def __post_init__(self) -> None:
        dims = (self.n_vocab, self.n_embd, self.n_layer, self.n_head, self.n_head_kv, self.n_ff)
        if min(dims) <= 0:
            raise ModelFormatError(f"{self}: every dimension must be positive")
        if self.n_embd % self.n_head or self.n_head % self.n_head_kv or self.head_dim % 2:
            raise ModelFormatError(
                f"{self}: n_embd must split into n_head even-sized heads (RoPE rotates pairs), "
                "and n_head into n_head_kv groups"
            )

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head
