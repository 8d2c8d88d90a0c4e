"""Plan records: steps, problems, and the dependency graph between steps.

Evidence ids come in two dialects the model saw in training: ``:evidence0:`` (the model card) and
``#E1`` (the ReWOO paper). Each id maps to a *key* (dialect, number) so ``#E1`` never matches a
prefix of ``#E10`` and ``:evidence0`` (missing its closing colon, as in the card's own template)
still names ``:evidence0:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# One evidence reference. Digits are taken whole: `(?!\d)` stops `#E1` matching inside `#E10`.
# `:evidence[1]:` is the prompt's own `:evidence[n]:` notation filled in, so it is accepted too.
REF_RE = re.compile(r":evidence(?:(\d+)(?!\d)|\[(\d+)\]):?|#E(\d+)(?!\d)", re.IGNORECASE)

# The prompts' own placeholders copied as if they were ids: ``:evidence[n]:``, ``:evidenceN:``,
# ``#E[n]``, ``#E[index]``, ``#En``. A letter or a bracketed word where the number should be; a
# word that merely starts with "#E" (``#Energy``) is not one.
PLACEHOLDER_RE = re.compile(
    r":evidence(?:\[(?!\d+\])[^\]\n]{0,20}\]|[a-z](?![a-z0-9])):?"
    r"|#E(?:\[(?!\d+\])[^\]\n]{0,20}\]|[a-z](?![a-z0-9]))",
    re.IGNORECASE,
)

# A PlanError message lists this many problems; the rest are counted (all are in ``.problems``).
MAX_LISTED_PROBLEMS = 20

PROBLEM_KINDS = (
    "syntax",
    "unknown_tool",
    "undefined_reference",
    "forward_reference",
    "duplicate_id",
    "missing_answer",
    "empty_plan",
)

RefKey = tuple[str, int]


def ref_key(match: re.Match[str]) -> RefKey:
    """The dialect-and-number key of a ``REF_RE`` match."""
    if match.group(3) is not None:
        return ("E", int(match.group(3)))
    return ("evidence", int(match.group(1) or match.group(2)))


def key_of(ref: str) -> RefKey | None:
    """The key of an id string such as ``:evidence3:`` or ``#E3`` (None if it is not one)."""
    m = REF_RE.fullmatch(ref.strip())
    return ref_key(m) if m else None


def canonical_id(key: RefKey) -> str:
    dialect, n = key
    return f":evidence{n}:" if dialect == "evidence" else f"#E{n}"


def find_placeholders(text: str) -> list[str]:
    """Placeholder spellings in ``text`` (``:evidence[n]:``, ``#E[n]``...), each once, in order."""
    return list(dict.fromkeys(m.group(0) for m in PLACEHOLDER_RE.finditer(text)))


def dialect_of(text: str) -> str:
    """``"E"`` when the first id-like token of ``text`` is ``#E...``, else ``"evidence"``."""
    first = min(
        (m.start() for m in (REF_RE.search(text), PLACEHOLDER_RE.search(text)) if m), default=-1
    )
    return "E" if first >= 0 and text[first] == "#" else "evidence"


def find_refs(text: str) -> list[tuple[RefKey, str]]:
    """Keys and spellings of the references in ``text``: first-appearance order, each key once."""
    seen: dict[RefKey, str] = {}
    for m in REF_RE.finditer(text):
        seen.setdefault(ref_key(m), m.group(0))
    return list(seen.items())


@dataclass
class Step:
    """One ``id = Tool[input]`` line of a plan."""

    id: str  # as written: ":evidence0:" or "#E1"
    tool: str  # the registry's spelling when tools were given
    input: str  # inside the outermost brackets, stripped; may contain newlines
    refs: list[str]  # ids referenced by the input, first-appearance order, each once
    plan: str = ""  # the "Plan:" text written before this step
    line: int = 0  # 1-based line of the step in the plan text

    @property
    def key(self) -> RefKey:
        key = key_of(self.id)
        assert key is not None, self.id  # the parser only builds steps with valid ids
        return key


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, at a 1-based line (0 when it concerns the whole plan)."""

    kind: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "plan"
        return f"{where}: {self.kind}: {self.message}"


def describe_problems(problems: list[Problem], limit: int = MAX_LISTED_PROBLEMS) -> str:
    """The text of a ``PlanError``: the first ``limit`` problems by line, and how many more."""
    ordered = sorted(problems, key=lambda p: p.line)
    lines = [f"the plan has {len(ordered)} problem(s):"]
    lines += [f"  {p}" for p in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"  ... and {len(ordered) - limit} more (all are in PlanError.problems)")
    return "\n".join(lines)


@dataclass
class Plan:
    """A parsed plan: steps in written order and the answer expression."""

    steps: list[Step]
    answer: str
    answer_refs: list[str] = field(default_factory=list)
    answer_line: int = 0
    text: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self._by_key = {s.key: s for s in self.steps}

    def __iter__(self) -> Iterator[Step]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.steps]

    def step(self, id: str) -> Step:
        """The step defining ``id`` (either spelling of the same key works)."""
        key = key_of(id)
        if key is None or key not in self._by_key:
            raise KeyError(f"plan has no step {id!r}; its steps are {', '.join(self.ids)}")
        return self._by_key[key]

    def dependencies(self, id: str) -> list[str]:
        """Ids the step ``id`` references directly."""
        return list(self.step(id).refs)

    def ancestors(self, id: str) -> list[str]:
        """Every id ``id`` depends on, directly or not, in plan order."""
        wanted: set[RefKey] = set()
        todo = [self.step(id)]
        while todo:
            for ref in todo.pop().refs:
                key = key_of(ref)
                if key is not None and key not in wanted and key in self._by_key:
                    wanted.add(key)
                    todo.append(self._by_key[key])
        return [s.id for s in self.steps if s.key in wanted]

    def answer_dependencies(self) -> list[str]:
        """Every id the answer depends on, directly or not, in plan order."""
        wanted = {key_of(r) for r in self.answer_refs}
        for ref in self.answer_refs:
            if key_of(ref) in self._by_key:
                wanted.update(key_of(a) for a in self.ancestors(ref))
        return [s.id for s in self.steps if s.key in wanted]

    def layers(self) -> list[list[Step]]:
        """Steps grouped so that each group only depends on earlier groups (run together)."""
        depth: dict[RefKey, int] = {}
        for s in self.steps:  # refs always point backwards in a valid plan
            deps = (key_of(r) for r in s.refs)
            depth[s.key] = 1 + max((depth.get(k, -1) for k in deps if k is not None), default=-1)
        out: list[list[Step]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for s in self.steps:
            out[depth[s.key]].append(s)
        return out

    def to_dict(self) -> dict:
        return {
            "steps": [
                {
                    "id": s.id,
                    "tool": s.tool,
                    "input": s.input,
                    "refs": s.refs,
                    "plan": s.plan,
                    "line": s.line,
                }
                for s in self.steps
            ],
            "answer": self.answer,
            "answer_refs": self.answer_refs,
            "layers": [[s.id for s in layer] for layer in self.layers()],
        }
