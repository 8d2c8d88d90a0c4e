"""How many prompt rows a batched step may read beside the sequences that are decoding.

Every step advances each decoding sequence by one token, so a step's time is the gap between two
of their tokens. Prompt rows read in the same step lengthen that gap by their cost, which depends
on the CPU (a row costs a fraction of a decode step where the int8 products are cheap, a large
part of one without VNNI) and grows with the prompt's position (each row attends to the whole
cache before it). A fixed number of rows per step therefore either freezes the streams on a slow
CPU or reads prompts needlessly slowly on a fast one; the budget measures both costs as it goes
and takes as many rows as keep a step near ``seconds``, or near twice a decode step where one
decode step alone takes longer (the prompt then still gets about half of the time).

A prompt near its end (at most ``NEAR_END_CHUNKS`` chunks left: 128 tokens by default) is read at
the chunk rate regardless: its first token is close, and the streams lose a second or so at most,
where holding it to the budget would make requests that arrive together (a chat turn of a hundred
tokens each) wait for each other's prompts. (Counted in rows, not in measured time: a row's cost
measured beside a long prompt includes attention over that prompt's positions, which a short
prompt's rows do not pay.)

A decode step's cost is measured on a step without prompt rows: the first step beside streams,
again when the number of decoding sequences changed, and every ``REFRESH`` steps (the prompt loses
one step in that many). The rest of a mixed step's time is its prompt rows'.
"""

from __future__ import annotations

# Beside decoding sequences a step takes fewer prompt rows where they would make it longer than
# this (a stream then gets >= 10 tokens a second while a long prompt is read; on a 2-core AVX2 CPU
# 16 rows of a 2,000-token prompt made steps of ~250 ms: 3.3 tokens a second).
DEFAULT_STEP_SECONDS = 0.1
SMOOTHING = 0.3  # weight of the newest measurement in the running averages
FIRST_ROWS = 4  # prompt rows of the first mixed step, before a row's cost is known
REFRESH = 50  # mixed steps between two measurements of a decode step
NEAR_END_CHUNKS = 8


class PromptBudget:
    def __init__(self, max_rows: int, seconds: float | None):
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds must be positive (or None for no budget), got {seconds}")
        self.max_rows, self.seconds = max_rows, seconds
        self.decode_s: float | None = None  # a step of decode rows only
        self.decode_rows = 0  # ... of this many decoding sequences
        self.row_s: float | None = None  # one prompt row's share of a mixed step
        self.mixed_steps = 0  # since decode_s was measured

    def rows(self, decoding: int) -> int:
        """Prompt rows for the next step, where ``decoding`` sequences decode in it too."""
        if not decoding or self.seconds is None:
            return self.max_rows  # nobody waits on this step but the prompts themselves
        if self.decode_s is None or decoding != self.decode_rows or self.mixed_steps >= REFRESH:
            return 0  # a decode step alone, to measure it
        if self.row_s is None:
            return min(self.max_rows, FIRST_ROWS)
        target = max(self.seconds, 2 * self.decode_s)
        fit = (target - self.decode_s) / self.row_s
        return max(1, min(self.max_rows, int(fit + 1e-9)))  # 6.9999999 rows fit 7

    def near_end(self, left: int) -> bool:
        """Whether a prompt with ``left`` rows to read goes at the chunk rate, budget or not."""
        return left <= NEAR_END_CHUNKS * self.max_rows

    def observe(self, seconds: float, decode_rows: int, prompt_rows: int) -> None:
        """A step of ``decode_rows`` decoding sequences and ``prompt_rows`` prompt rows took
        ``seconds``."""
        if not decode_rows:
            return  # prompts only: says nothing of what a stream waits
        if not prompt_rows:
            same = decode_rows == self.decode_rows
            self.decode_s = _smooth(self.decode_s if same else None, seconds)
            self.decode_rows, self.mixed_steps = decode_rows, 0
        elif self.decode_s is not None and decode_rows == self.decode_rows:
            self.mixed_steps += 1
            # the decode part is taken as the last decode-only step's: what remains is the rows'
            share = max(seconds - self.decode_s, 0.0) / prompt_rows
            self.row_s = _smooth(self.row_s, max(share, 1e-6))


def _smooth(average: float | None, value: float) -> float:
    return value if average is None else (1 - SMOOTHING) * average + SMOOTHING * value
