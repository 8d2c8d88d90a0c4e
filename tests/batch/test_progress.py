"""The progress line: counts, rate and ETA; one line per question when stderr is not a terminal."""

from __future__ import annotations

import io

from agent.batch.progress import ProgressBar, _duration


def test_progress_lines_count_and_estimate():
    out = io.StringIO()
    bar = ProgressBar(out, 4, skipped=3)
    bar.t0 -= 60  # as if the first question took a minute
    bar.update({"id": "a", "status": "ok"})
    bar.update({"id": "b", "status": "error"})
    first, second = out.getvalue().splitlines()
    assert "1/4 (1 ok, 0 error, 3 done before)" in first and "id='a' ok" in first
    assert "2/4 (1 ok, 1 error, 3 done before)" in second and "ETA 1m0" in second
    assert "[############............]" in second and "q/min" in second
    bar.update({"id": "c", "status": "ok"})
    bar.update({"id": "d", "status": "ok"})
    assert "4/4" in out.getvalue().splitlines()[-1] and "took 1m" in out.getvalue()


def test_durations_read_well():
    assert [_duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]
