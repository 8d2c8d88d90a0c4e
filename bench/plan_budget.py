"""Cost of the plan grammar's token budget per generated token, on the real 32000-token Llama
vocabulary (the golden vocab-only GGUF), all figures from the same run.

The card's plan is walked one byte token at a time; at each token the allowed mask is computed
by the plain plan grammar, by the budgeted one while the budget is loose (more tokens left than
any state's distance: nothing to check), and by the budgeted one when every token is checked
(the last few dozen tokens of a plan that runs out of room). Each mode gets its own grammar, so
no mode profits from states or masks another one built.

    .venv/bin/python bench/plan_budget.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.llm.formats.gguf import read_gguf  # noqa: E402
from agent.llm.grammar.budget import within_budget  # noqa: E402
from agent.llm.grammar.tokens import TokenTable  # noqa: E402
from agent.planner.card import CARD_PLAN, CARD_TOOLS  # noqa: E402
from agent.planner.grammar import plan_grammar  # noqa: E402
from tests import golden  # noqa: E402


def walk(grammar, table: TokenTable, tight: bool) -> float:
    """Milliseconds per token over the card plan."""
    by_byte = {table.pieces[i]: i for i in range(table.n_vocab) if len(table.pieces[i]) == 1}
    m = grammar.matcher(table)
    data = CARD_PLAN.encode()
    t0 = time.perf_counter()
    for b in data:
        if tight:
            m.left = 1 + m._dist.of(m.state)  # always at the edge: every token is checked
        m.allowed_mask()
        m.accept(by_byte[bytes([b])])
    return 1000 * (time.perf_counter() - t0) / len(data)


def main() -> None:
    table = TokenTable.from_vocab(read_gguf(golden.vocab_dir() / "ggml-vocab-llama-spm.gguf").vocab)
    runs = [
        ("plain grammar", plan_grammar(CARD_TOOLS, max_steps=6), False),
        ("budget, loose", within_budget(plan_grammar(CARD_TOOLS, max_steps=7), 100_000), False),
        (
            "budget, every token checked",
            within_budget(plan_grammar(CARD_TOOLS, max_steps=8), 1),
            True,
        ),
        ("plain grammar (again)", plan_grammar(CARD_TOOLS, max_steps=9), False),
    ]
    print(f"vocabulary {table.n_vocab} tokens, card plan {len(CARD_PLAN.encode())} byte tokens")
    for label, grammar, tight in runs:
        print(f"{label:30} {walk(grammar, table, tight):6.2f} ms/token")


if __name__ == "__main__":
    main()
