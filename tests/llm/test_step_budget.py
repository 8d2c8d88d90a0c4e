"""The prompt-row budget of a batched step: as many prompt rows as keep the streams' step near
its target, from the costs it measured."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.llm.step_budget import FIRST_ROWS, NEAR_END_CHUNKS, REFRESH, PromptBudget


def measured(decode_s: float, row_s: float, decoding: int = 2, seconds: float = 0.1):
    """A budget that saw one decode-only step and one mixed step of FIRST_ROWS rows."""
    b = PromptBudget(16, seconds)
    assert b.rows(decoding) == 0  # first a step without prompt rows, to time one
    b.observe(decode_s, decoding, 0)
    assert b.rows(decoding) == FIRST_ROWS
    b.observe(decode_s + FIRST_ROWS * row_s, decoding, FIRST_ROWS)
    return b


def test_prompts_alone_or_no_budget_take_the_whole_chunk():
    assert PromptBudget(16, 0.1).rows(0) == 16
    assert PromptBudget(16, None).rows(3) == 16


def test_rows_fill_the_step_up_to_its_target():
    assert measured(0.03, 0.01).rows(2) == 7  # 30 ms + 7 x 10 ms = 100 ms
    assert measured(0.03, 0.001).rows(2) == 16  # never more than the chunk
    assert measured(0.03, 1.0).rows(2) == 1  # never none: the prompt goes on


def test_a_decode_step_longer_than_the_target_leaves_the_prompt_as_much_again():
    assert measured(0.09, 0.015).rows(2) == 6  # target 180 ms: 90 ms of rows


def test_a_new_number_of_streams_or_a_stale_measurement_times_a_decode_step_again():
    b = measured(0.03, 0.01)
    assert b.rows(3) == 0  # three streams now: their step is timed first
    b.observe(0.05, 3, 0)
    assert b.decode_s == 0.05  # not averaged with the two-stream steps
    assert b.rows(3) == 5
    for _ in range(REFRESH):
        b.observe(0.1, 3, 5)
    assert b.rows(3) == 0


def test_steps_without_streams_or_with_other_streams_teach_nothing_of_a_row():
    b = measured(0.03, 0.01)
    b.observe(5.0, 0, 16)  # a long prompt read alone
    b.observe(0.5, 5, 16)  # five streams, whose step alone was never timed
    assert b.rows(2) == 7


def test_a_prompt_near_its_end_is_not_held_to_the_budget():
    b = measured(0.03, 0.01)
    assert b.near_end(NEAR_END_CHUNKS * 16) and not b.near_end(NEAR_END_CHUNKS * 16 + 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        PromptBudget(0, 0.1)
    with pytest.raises(ValueError, match="seconds must be positive"):
        PromptBudget(16, 0.0)


@given(
    st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 8), st.integers(0, 16)),
        max_size=40,
    ),
    st.integers(1, 8),
)
def test_fuzz_any_timings_give_a_row_count_within_the_chunk(steps, decoding):
    b = PromptBudget(16, 0.1)
    for seconds, decode_rows, prompt_rows in steps:
        b.observe(seconds, decode_rows, prompt_rows)
        assert 0 <= b.rows(decoding) <= 16
    if b.decode_s is not None and b.row_s is not None and b.decode_rows == decoding:
        assert b.rows(decoding) >= 1 or b.mixed_steps >= REFRESH
