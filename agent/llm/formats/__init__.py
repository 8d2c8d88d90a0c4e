"""Model files: GGUF and GGML readers (``gguf``, ``ggml``, opened by ``files.open_model_file``) and
writers, the block-type table (``ggml_types``) and reference dequantizers (``quants``), GGML -> GGUF
conversion (``convert``), and random-weight fixture models (``fixtures``)."""
