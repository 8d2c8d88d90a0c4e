"""The reWOO plan parser: a line-at-a-time state machine, usable on a finished text or a stream.

``parse_plan(text)`` is ``PlanStream`` fed the whole text and closed, so the streaming and the
batch parser cannot disagree. Lines are classified by small anchored regexes with no nested
quantifiers; brackets are matched by a counting scan, so the cost is linear in the text length.
A line holding many steps (LangGraph's same-line form) is walked by offsets into it, never by
slicing off the rest of the line for each step, which would make that cost quadratic.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from agent.errors import PlanError
from agent.planner.plan import (
    PLACEHOLDER_RE,
    REF_RE,
    Plan,
    Problem,
    RefKey,
    Step,
    canonical_id,
    describe_problems,
    dialect_of,
    find_placeholders,
    find_refs,
    key_of,
    ref_key,
)

_MD = r"(?:\*\*|__)?"
# Markdown emphasis, bullets and indentation in front of a keyword ("**Plan:**", "- #E1 = ...").
_LEAD_RE = re.compile(r"[\s*_\->]*(?:\d{1,3}[.)][ \t]+)?[\s*_]*")  # also "1. " / "2) " numbering
# "Plan:", "Plan 2:", Gentopia's "#Plan1:" and "Step 3:" labels all introduce a step's reasoning.
_PLAN_RE = re.compile(
    rf"(?:#?plan(?:[ \t]*\d+)?|step[ \t]*\d+)[ \t]*{_MD}[ \t]*:[ \t]*{_MD}", re.IGNORECASE
)
_ANSWER_RE = re.compile(
    rf"(?:final[ \t]+answer|answer)[ \t]*{_MD}[ \t]*:[ \t]*{_MD}", re.IGNORECASE
)
_STEP_ID_RE = re.compile(
    rf"(?::evidence(?:\d+|\[\d+\]):?|#E\d+)(?!\d){_MD}[ \t]*(?P<sep>[=:])?[ \t]*", re.IGNORECASE
)
_TOOL_RE = re.compile(r"(?P<tool>[A-Za-z_][A-Za-z0-9_]*)[ \t]*\[")
# A step written after its reasoning on the same line ("Plan: ... #E1 = Google[...]", LangGraph's
# form): an id, '=' (or ':'), and a tool with its bracket, not inside a word.
_INLINE_STEP = (
    rf"(?::evidence(?:\d+|\[\d+\]):?|#E\d+)(?!\d){_MD}[ \t]*[=:][ \t]*\[?[ \t]*"
    r"[A-Za-z_][A-Za-z0-9_]*[ \t]*\["
)
_INLINE_STEP_RE = re.compile(rf"(?<![\w:#]){_INLINE_STEP}", re.IGNORECASE)
# The same at the very start of a piece of text. A lookbehind sees the characters before ``pos``
# in ``search(text, pos)``, where a slice ``text[pos:]`` has none, so the first position is tried
# with this one and the lookbehind form searches from the next.
_INLINE_STEP_AT_RE = re.compile(_INLINE_STEP, re.IGNORECASE)
_PLACEHOLDER_STEP_RE = re.compile(rf"(?:{PLACEHOLDER_RE.pattern}){_MD}[ \t]*[=:]", re.IGNORECASE)
_TRAILING_NOISE = " \t*_.,;"


def tool_names(tools: Any) -> list[str] | None:
    """Tool names from a ``ToolRegistry``, a mapping name -> callable, or names (None: any tool)."""
    if tools is None:
        return None
    if hasattr(tools, "names") and callable(tools.names):
        return list(tools.names())
    if isinstance(tools, Mapping):
        return [str(k) for k in tools.keys()]
    if isinstance(tools, str):
        return [tools]
    return [getattr(t, "name", t) for t in tools]


def _lead_end(text: str, pos: int = 0) -> int:
    """Offset just past the emphasis, bullets and numbering at ``pos`` (``pos`` if none)."""
    return _LEAD_RE.match(text, pos).end()  # type: ignore[union-attr]  # matches the empty string


def _strip_lead(line: str) -> str:
    return line[_lead_end(line) :]


def _strip_outer_brackets(text: str) -> str:
    """``[x]`` -> ``x`` when the first bracket closes at the very end; otherwise unchanged."""
    text = text.strip()
    while text.startswith("[") and text.endswith("]") and _close_index(text, 1, 1) == len(text) - 1:
        text = text[1:-1].strip()
    return text


def _close_index(text: str, start: int, depth: int, end: int | None = None) -> int:
    """Index of the ``]`` that brings ``depth`` to zero scanning ``text[start:end]``; -1 if none."""
    for i in range(start, len(text) if end is None else end):
        c = text[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _depth_after(text: str, depth: int) -> int:
    return depth + text.count("[") - text.count("]")


def _short(text: str, limit: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Pending:
    """A step whose input bracket is still open at the end of its first line."""

    def __init__(self, id: str, tool: str, line: int, plan: str, first: str, wrapped: bool):
        self.id, self.tool, self.line, self.plan, self.wrapped = id, tool, line, plan, wrapped
        self.parts = [first]
        self.depth = 1  # set by the caller once the first line is known not to close it


class PlanStream:
    """Incremental parser: ``feed`` text as the model writes it, get each step once complete.

    A step is returned by ``feed`` as soon as its line is finished, provided it is valid so far
    (known tool, references only to steps already returned): those steps are safe to run before
    the plan is done. ``close()`` returns the whole ``Plan`` or raises ``PlanError`` listing every
    problem.
    """

    def __init__(self, tools: Any = None):
        names = tool_names(tools)
        self._tools: dict[str, str] | None = (
            {n.lower(): n for n in names} if names is not None else None
        )
        self._buf = ""
        self._chunks: list[str] = []
        self._line_no = 0
        self._pending: _Pending | None = None
        self._plan_parts: list[str] = []
        self._in_plan_text = False
        # the rest of the current line after a step on it: (line, start, end of its text)
        self._rest: tuple[str, int, int] | None = None
        self._text_dialect: str | None = None  # of the first id-like token fed, for hints
        self._seen_step = False
        self._answer: str | None = None
        self._answer_line = 0
        self._answer_pending = False
        self._done = False
        self._closed: Plan | None = None
        self.steps: list[Step] = []
        self._defined: dict[RefKey, Step] = {}
        self._emitted: set[RefKey] = set()
        self._deferred: list[tuple[Step, RefKey]] = []
        self._problems: list[Problem] = []

    # -- public API -------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the answer line has been read (later text is ignored)."""
        return self._done

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    def feed(self, chunk: str) -> list[Step]:
        """Consume more text; return the steps completed by it that are safe to run now."""
        if self._closed is not None:
            raise PlanError("PlanStream.feed() called after close(); start a new PlanStream")
        self._chunks.append(chunk)
        if self._text_dialect is None and (REF_RE.search(chunk) or PLACEHOLDER_RE.search(chunk)):
            self._text_dialect = dialect_of(chunk)  # chunks are scanned until an id shows up
        if "\n" not in chunk:  # keep streaming of a long line linear: no rescans of the buffer
            self._buf += chunk
            return []
        lines = (self._buf + chunk).split("\n")
        self._buf = lines.pop()
        ready: list[Step] = []
        for line in lines:
            ready += self._line(line[:-1] if line.endswith("\r") else line)  # CRLF
        return ready

    def close(self) -> Plan:
        """Finish parsing: the plan, or ``PlanError`` with every problem found."""
        if self._closed is not None:
            return self._closed
        if self._buf:
            line, self._buf = self._buf, ""
            self._line(line[:-1] if line.endswith("\r") else line)
        if self._pending is not None:
            self._unclosed(self._pending)
        for step, key in self._deferred:
            self._reference_problem(step.id, step.line, key)
        answer_refs: list[str] = []
        if self._answer is None:
            hint = self._answer_hint()
            msg = (
                ("'Answer:' has no text; " + hint)
                if self._answer_pending
                else ("the plan has no 'Answer:' (or 'Final answer:') line; " + hint)
            )
            self._problem("missing_answer", self._answer_line or self._line_no, msg)
        else:
            answer_refs = self._check_answer(self._answer)
        if not self.steps:
            self._problem(
                "empty_plan",
                0,
                "the plan has no steps; write 'Plan: ...' lines each followed by "
                f"'{self._example_id()} = Tool[input]'",
            )
        if self._problems:
            problems = sorted(self._problems, key=lambda p: p.line)
            raise PlanError(describe_problems(problems), problems, steps=list(self.steps))
        self._closed = Plan(
            steps=list(self.steps),
            answer=self._answer or "",
            answer_refs=answer_refs,
            answer_line=self._answer_line,
            text=self.text,
        )
        return self._closed

    def _check_answer(self, answer: str) -> list[str]:
        """The answer's references (canonical ids); problems for placeholders and dangling ones."""
        refs: list[str] = []
        no = self._answer_line
        for spelling in find_placeholders(answer):
            self._problem(
                "undefined_reference",
                no,
                f"the answer is the prompt's placeholder {spelling!r}, not a step's evidence; "
                + self._answer_hint(),
            )
        for key, spelling in find_refs(answer):
            if key in self._defined:
                refs.append(self._defined[key].id)
            else:
                refs.append(canonical_id(key))
                self._problem(
                    "undefined_reference",
                    no,
                    f"the answer references {spelling}, which no step defines"
                    f"{self._other_dialect_hint(key)}",
                )
        if not refs and not find_placeholders(answer) and self.steps:
            self._problem(
                "missing_answer",
                no,
                f"the answer {_short(answer)!r} names no evidence, so no step can supply it; "
                + self._answer_hint(),
            )
        return refs

    # -- dialect-aware hints ----------------------------------------------------------------------
    def _dialect(self) -> str:
        if self.steps:
            return self.steps[0].key[0]
        return self._text_dialect or "evidence"

    def _example_id(self, n: int | None = None) -> str:
        e = self._dialect() == "E"
        if n is None:
            return "#EN" if e else ":evidenceN:"
        return f"#E{n}" if e else f":evidence{n}:"

    def _answer_hint(self) -> str:
        last = self.steps[-1].id if self.steps else self._example_id()
        word = "Final answer" if self._dialect() == "E" else "Answer"
        return f"end the plan with '{word}: {last}' naming the evidence that holds the final answer"

    # -- line handling -------------------------------------------------------------------------
    def _line(self, raw: str) -> list[Step]:
        self._line_no += 1
        no = self._line_no
        if self._done:
            return []
        head = _strip_lead(raw).rstrip()
        if self._answer_pending:
            if head:
                self._set_answer(head, no)
            return []
        if self._pending is not None:
            if self._kind(head, 0, len(head)) is None:
                return self._drain(self._continue_pending(raw), no)
            self._unclosed(self._pending)  # a new keyword line: the bracket was never closed
        return self._drain(self._segment(head, 0, len(head), no), no)

    def _drain(self, ready: list[Step], no: int) -> list[Step]:
        """Parse what a line still holds after its steps (a loop, not recursion: a line may
        hold any number of same-line steps)."""
        while self._rest is not None:
            (line, pos, end), self._rest = self._rest, None
            ready.extend(self._segment(line, pos, end, no))
        return ready

    def _segment(self, line: str, pos: int, end: int, no: int) -> list[Step]:
        """One line, or the rest of one after a step closed on it: dispatch on its keyword.

        The text is ``line[pos:end]`` (``end`` is past its last non-space character); offsets,
        not slices, so that a line of many steps is not copied once for each of them.
        """
        start = _lead_end(line, pos)  # unbounded, as on the unstripped text; cut at ``end``
        if self._done:
            return []
        if start >= end:
            self._in_plan_text = False
            return []
        m = _PLAN_RE.match(line, start, end)
        if m:
            self._in_plan_text = True
            at = m.end() + _ws(line, m.end(), end)
            label = _PLAN_RE.match(line, at, end)
            if label:  # "Step 1: Plan: ..." -- two labels, one reasoning
                at = label.end()
            return self._plan_text(line, at, end, no)
        m = _ANSWER_RE.match(line, start, end)
        if m:
            rest = line[m.end() : end].strip()
            if rest:
                self._set_answer(rest, no)
            else:
                self._answer_pending, self._answer_line = True, no
            return []
        m = _STEP_ID_RE.match(line, start, end)
        if m and (
            m.group("sep")
            or _TOOL_RE.match(line, m.end(), end)
            # What _plan_text splits off as a same-line step must be a step here, or the text
            # goes back to _plan_text, which splits it off again, for ever. In ":evidence1:
            # [S[x]]" (the card's template without its '=') the id's own colon is the separator
            # for _INLINE_STEP_RE, while _STEP_ID_RE takes it into the id and finds no separator.
            or _INLINE_STEP_AT_RE.match(line, start, end)
        ):
            return self._step_line(line, start, end, m, no)
        m = _PLACEHOLDER_STEP_RE.match(line, start, end)
        if m:
            self._take_plan()
            self._problem(
                "syntax",
                no,
                f"the step id {m.group(0).rstrip('=: ')!r} is the prompt's placeholder; number "
                f"the steps ({self._example_id(0 if self._dialect() == 'evidence' else 1)}, ...)",
            )
            return []
        if self._in_plan_text:
            return self._plan_text(line, start, end, no)
        head = line[start:end]  # the last piece of this line: one copy
        if self._seen_step and _TOOL_RE.match(head) and "]" in head:
            self._problem(
                "syntax",
                no,
                f"tool call without an evidence id: {_short(head)!r}; "
                f"write it as '{self._example_id()} = Tool[input]'",
            )
        return []

    def _plan_text(self, line: str, pos: int, end: int, no: int) -> list[Step]:
        """Reasoning text ``line[pos:end]``; a step written after it on the same line is split
        off and parsed."""
        m = _INLINE_STEP_AT_RE.match(line, pos, end) or _INLINE_STEP_RE.search(line, pos + 1, end)
        if m is None:
            self._plan_parts.append(line[pos:end].strip(" \t*_"))
            return []
        self._plan_parts.append(line[pos : m.start()].strip(" \t*_"))
        self._rest = (line, m.start(), end)
        return []

    def _kind(self, line: str, pos: int, end: int) -> str | None:
        """The keyword ``line[pos:end]`` starts with: "plan", "answer", "step", or None."""
        if _PLAN_RE.match(line, pos, end):
            return "plan"
        if _ANSWER_RE.match(line, pos, end):
            return "answer"
        m = _STEP_ID_RE.match(line, pos, end)
        if m and _TOOL_RE.match(line, m.end(), end):
            return "step"
        return None

    def _set_answer(self, text: str, no: int) -> None:
        self._answer = _strip_outer_brackets(text.strip().strip("*_").strip())
        self._answer_line = no
        self._answer_pending = False
        self._done = True

    def _step_line(self, line: str, start: int, end: int, m: re.Match[str], no: int) -> list[Step]:
        """The step at ``line[start:end]`` (``m``: its id); the rest of the line goes on."""
        self._in_plan_text = False
        self._seen_step = True
        ref = REF_RE.search(line, start, m.end())
        assert ref is not None  # _STEP_ID_RE starts with an id
        id_ = canonical_id(ref_key(ref))  # one spelling whatever the spacing and case
        pos = m.end()
        wrapped = False
        if line.startswith("[", pos, end) and _TOOL_RE.match(
            line, pos + 1 + _ws(line, pos + 1, end), end
        ):
            wrapped = True  # ":evidence0: = [Tool[input]]", the card's template taken literally
            pos += 1 + _ws(line, pos + 1, end)
        tm = _TOOL_RE.match(line, pos, end)
        if tm is None:
            self._take_plan()  # this step's plan text goes with it
            self._problem(
                "syntax",
                no,
                f"expected 'Tool[input]' after '{id_} =', found "
                f"{_short(line[pos:end]) or 'nothing'!r}; write it as '{id_} = Tool[input]'",
            )
            return []
        open_ = tm.end()
        close = _close_index(line, open_, 1, end)  # offsets, not slices: a line may hold many steps
        if close < 0:
            first = line[open_:end]
            self._pending = _Pending(id_, tm.group("tool"), no, self._take_plan(), first, wrapped)
            self._pending.depth = _depth_after(first, 1)
            return []
        pending = _Pending(id_, tm.group("tool"), no, self._take_plan(), line[open_:close], wrapped)
        return self._finish(pending, line, close + 1, end)

    def _continue_pending(self, raw: str) -> list[Step]:
        p = self._pending
        assert p is not None
        close = _close_index(raw, 0, p.depth)
        if close < 0:
            p.parts.append(raw)
            p.depth = _depth_after(raw, p.depth)
            return []
        p.parts.append(raw[:close])
        self._pending = None
        return self._finish(p, raw, close + 1, len(raw.rstrip()))

    def _unclosed(self, p: _Pending) -> None:
        self._pending = None
        self._problem(
            "syntax",
            p.line,
            f"the input of {p.id} opens '[' after {p.tool} but never "
            "closes it; end the input with ']'",
        )

    def _take_plan(self) -> str:
        text = " ".join(t for t in self._plan_parts if t)
        self._plan_parts = []
        return text

    def _finish(self, p: _Pending, line: str, pos: int, end: int) -> list[Step]:
        """Complete ``p``, whose input closed just before ``line[pos:]``; ``end`` is past the
        line's last non-space character."""
        if p.wrapped:
            q = pos
            while q < len(line) and line[q].isspace():
                q += 1
            if line.startswith("]", q):
                pos = q + 1
        rest = _lead_end(line, _skip(line, pos, _TRAILING_NOISE))
        if self._kind(line, rest, end) is not None:  # "... #E1 = A[x] Plan: next ... #E2 = B[y]"
            self._rest = (line, rest, end)
            return self._finish_step(p, "")
        return self._finish_step(p, line[pos:])  # nothing more on this line: one copy

    def _finish_step(self, p: _Pending, trailing: str) -> list[Step]:
        noise = trailing.strip(_TRAILING_NOISE)
        if "[" in noise or "]" in noise or REF_RE.search(noise):
            self._problem(
                "syntax",
                p.line,
                f"unexpected text after the input of {p.id}: "
                f"{_short(noise)!r}; everything the tool needs goes inside the brackets",
            )
            return []
        text = "\n".join(p.parts).strip()
        key = key_of(p.id)
        assert key is not None
        bad = False
        tool = p.tool
        if self._tools is not None:
            known = self._tools.get(tool.lower())
            if known is None:
                bad = True
                self._problem("unknown_tool", p.line, self._unknown_tool_message(p.id, tool))
            else:
                tool = known
        refs: list[str] = []
        for rkey, _spelling in find_refs(text):
            if rkey in self._defined and rkey != key:
                refs.append(self._defined[rkey].id)
                bad = bad or rkey not in self._emitted
            else:
                refs.append(canonical_id(rkey))
                bad = True
        for spelling in find_placeholders(text):
            bad = True
            self._problem(
                "undefined_reference",
                p.line,
                f"{p.id} uses {spelling!r}, the prompt's placeholder, not a step's evidence; "
                f"write the id of the step it needs (e.g. "
                f"{self.steps[-1].id if self.steps else self._example_id()})",
            )
        step = Step(id=p.id, tool=tool, input=text, refs=refs, plan=p.plan, line=p.line)
        for rkey, _ in find_refs(text):
            if rkey not in self._defined or rkey == key:
                self._deferred.append((step, rkey))
        if key in self._defined:
            first = self._defined[key]
            self._problem(
                "duplicate_id",
                p.line,
                f"{p.id} is defined again (first on line {first.line}); give each step its own id",
            )
            return []
        self.steps.append(step)
        self._defined[key] = step
        if bad:
            return []
        self._emitted.add(key)
        return [step]

    # -- problems -------------------------------------------------------------------------------
    def _problem(self, kind: str, line: int, message: str) -> None:
        self._problems.append(Problem(kind, line, message))

    def _unknown_tool_message(self, id_: str, tool: str) -> str:
        assert self._tools is not None
        names = list(self._tools.values())
        close = difflib.get_close_matches(tool.lower(), list(self._tools), n=1, cutoff=0.5)
        hint = f"did you mean '{self._tools[close[0]]}'? " if close else ""
        return (
            f"{id_} calls unknown tool '{tool}'; {hint}available tools: "
            f"{', '.join(names) or '(none)'}"
        )

    def _reference_problem(self, id_: str, line: int, key: RefKey) -> None:
        ref = canonical_id(key)
        if key == key_of(id_):
            self._problem(
                "forward_reference",
                line,
                f"{id_} references itself; a step can only use evidence from earlier steps",
            )
        elif key in self._defined:
            later = self._defined[key]
            self._problem(
                "forward_reference",
                line,
                f"{id_} references {later.id}, which is only defined later (line "
                f"{later.line}); a step can only use evidence from earlier steps",
            )
        else:
            self._problem(
                "undefined_reference",
                line,
                f"{id_} references {ref}, which no step defines{self._other_dialect_hint(key)}",
            )

    def _other_dialect_hint(self, key: RefKey) -> str:
        other: RefKey = ("E", key[1]) if key[0] == "evidence" else ("evidence", key[1])
        if other in self._defined:
            return f"; did you mean {self._defined[other].id}?"
        return ""


def _ws(text: str, pos: int, end: int | None = None) -> int:
    """Number of spaces/tabs at ``pos`` (before ``end``)."""
    stop = len(text) if end is None else end
    n = 0
    while pos + n < stop and text[pos + n] in " \t":
        n += 1
    return n


def _skip(text: str, pos: int, chars: str) -> int:
    """Offset of the first character at or after ``pos`` not in ``chars`` (``len(text)`` if
    none): ``text[pos:].lstrip(chars)`` without the copy."""
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def parse_plan(text: str, tools: Any = None) -> Plan:
    """Parse a reWOO plan; ``tools`` (registry, mapping or names) enables tool-name checks.

    Raises ``PlanError`` whose ``problems`` lists every problem with its line.
    """
    stream = PlanStream(tools)
    stream.feed(text)
    return stream.close()


def iter_refs(text: str) -> Iterable[re.Match[str]]:
    """Every reference in ``text`` (for highlighting or substitution)."""
    return REF_RE.finditer(text)


__all__ = ["PlanStream", "parse_plan", "tool_names", "ref_key", "iter_refs"]
