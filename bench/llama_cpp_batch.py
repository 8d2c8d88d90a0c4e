"""The batching gain of llama.cpp itself (llama-cpp-python's low-level API): one ``llama_decode``
over n sequences, one token each, against n one-sequence decodes, every sequence with ``position``
tokens already in its cache. Run by ``bench/batch_step.py --vs-llama-cpp`` with a Python that can
import ``llama_cpp`` (no dependency of ours); prints one JSON line per row count.

    python bench/llama_cpp_batch.py MODEL --rows 1,2,4,8 --position 64 --repeats 7 -t 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model")
    p.add_argument("--rows", default="1,2,4,8")
    p.add_argument("--position", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("-t", "--threads", type=int, default=2)
    args = p.parse_args()
    import llama_cpp as ll

    rows = [int(x) for x in args.rows.split(",")]
    n_seq = max(rows)
    ll.llama_backend_init()
    quiet = ll.llama_log_callback(lambda *_: None)  # kept referenced while llama.cpp may call it
    ll.llama_log_set(quiet, None)
    model = ll.llama_model_load_from_file(args.model.encode(), ll.llama_model_default_params())
    if not model:
        raise SystemExit(f"llama.cpp could not load {args.model}")
    cp = ll.llama_context_default_params()
    steps = 2 * args.repeats * len(rows) + 1  # tokens a sequence decodes at most (2 a repeat)
    cp.n_seq_max, cp.kv_unified = n_seq, False  # a cache per sequence, as ours
    cp.n_ctx = n_seq * (args.position + steps + 8)
    cp.n_batch = cp.n_ubatch = 512
    cp.n_threads = cp.n_threads_batch = args.threads
    ctx = ll.llama_init_from_model(model, cp)
    if not ctx:
        raise SystemExit(f"llama.cpp could not make a context of {cp.n_ctx} positions")
    batch = ll.llama_batch_init(cp.n_batch, 0, n_seq)
    next_pos = [0] * n_seq

    def decode(items: list[tuple[int, int]], logits: bool = True) -> None:
        """One llama_decode of (sequence, token) pairs, each at its sequence's next position."""
        batch.n_tokens = len(items)
        for i, (s, tok) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, next_pos[s], 1
            batch.seq_id[i][0], batch.logits[i] = s, int(logits)
            next_pos[s] += 1
        if ll.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        ll.llama_synchronize(ctx)

    for s in range(n_seq):  # every sequence's cache holds `position` tokens
        for start in range(0, args.position, cp.n_batch):
            decode(
                [(s, 5 + p % 100) for p in range(start, min(args.position, start + cp.n_batch))],
                False,
            )
    decode([(s, 7) for s in range(n_seq)])  # warm-up
    for n in rows:
        together, apart = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            decode([(s, 9) for s in range(n)])
            together.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s in range(n):
                decode([(s, 9)])
            apart.append(time.perf_counter() - t0)
        print(
            json.dumps(
                {
                    "rows": n,
                    "step_s": statistics.median(together),
                    "one_row_steps_s": statistics.median(apart),
                }
            ),
            flush=True,
        )
    ll.llama_batch_free(batch)
    ll.llama_free(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
