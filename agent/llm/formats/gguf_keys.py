"""GGUF metadata keys, as named constants (the names gguf-py and llama.cpp use, dots as ``_``).

One home for every key the readers, writers and converter use; a key's string appears nowhere else.
GGML files store none of them: their reader fills the same keys from the header and tensor shapes.
"""

from __future__ import annotations

# general.*: what the file is
GENERAL_ALIGNMENT = "general.alignment"
GENERAL_ARCHITECTURE = "general.architecture"
GENERAL_DESCRIPTION = "general.description"
GENERAL_FILE_TYPE = "general.file_type"
GENERAL_NAME = "general.name"
GENERAL_QUANTIZATION_VERSION = "general.quantization_version"

# llama.*: the architecture's hyperparameters
LLAMA_ATTENTION_HEAD_COUNT = "llama.attention.head_count"
LLAMA_ATTENTION_HEAD_COUNT_KV = "llama.attention.head_count_kv"
LLAMA_ATTENTION_LAYER_NORM_RMS_EPSILON = "llama.attention.layer_norm_rms_epsilon"
LLAMA_BLOCK_COUNT = "llama.block_count"
LLAMA_CONTEXT_LENGTH = "llama.context_length"
LLAMA_EMBEDDING_LENGTH = "llama.embedding_length"
LLAMA_FEED_FORWARD_LENGTH = "llama.feed_forward_length"
LLAMA_ROPE_DIMENSION_COUNT = "llama.rope.dimension_count"
LLAMA_ROPE_FREQ_BASE = "llama.rope.freq_base"
LLAMA_ROPE_SCALE_LINEAR = "llama.rope.scale_linear"
LLAMA_ROPE_SCALING_FACTOR = "llama.rope.scaling.factor"
LLAMA_ROPE_SCALING_TYPE = "llama.rope.scaling.type"
LLAMA_VOCAB_SIZE = "llama.vocab_size"

# tokenizer.ggml.*: the SentencePiece vocabulary
TOKENIZER_GGML_ADD_BOS_TOKEN = "tokenizer.ggml.add_bos_token"
TOKENIZER_GGML_ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"
TOKENIZER_GGML_BOS_TOKEN_ID = "tokenizer.ggml.bos_token_id"
TOKENIZER_GGML_EOS_TOKEN_ID = "tokenizer.ggml.eos_token_id"
TOKENIZER_GGML_MODEL = "tokenizer.ggml.model"
TOKENIZER_GGML_SCORES = "tokenizer.ggml.scores"
TOKENIZER_GGML_TOKEN_TYPE = "tokenizer.ggml.token_type"
TOKENIZER_GGML_TOKENS = "tokenizer.ggml.tokens"
TOKENIZER_GGML_UNKNOWN_TOKEN_ID = "tokenizer.ggml.unknown_token_id"
