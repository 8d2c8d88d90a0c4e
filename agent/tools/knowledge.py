"""KnowledgeModel[question given evidence]: answers from the evidence only, citing its sources.

The planner substitutes evidence into the input ("Who won, given :evidence0:?"), so the input is
the question with pages inside it. Pages in the document format (TextScraper, DuckDuckGo) are
split back out (``documents.split_evidence``) and each becomes its own BEGININPUT block with its
URL in BEGINCONTEXT, the closed-context format the model was tuned on, so its answer can name
the page it used. The question is the text around the pages, each group of pages replaced by
"the text above". Plain evidence without headers becomes one block.

When the prompt would not fit the context window (``model.n_ctx``, 4096 if absent, minus the
answer's ``max_tokens``), the pages are split into passages and the ones most relevant to the
question (BM25) are kept, in their original order; the output says what was left out.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field

from agent.errors import ToolError
from agent.llm import llama2
from agent.llm.prompts import ContextBlock, chat_prompt, closed_context_prompt
from agent.llm.protocol import SAMPLING_DEFAULTS, TextGenerator, count_tokens
from agent.tools.bm25 import BM25, split_passages
from agent.tools.documents import Document, split_evidence

DESCRIPTION = (
    "Question answering language model, particularly useful in answering questions based on an "
    "input passage of text. The input must be a text question that references an :evidence[n]: "
    "variable, e.g. What color is the cat, given :evidence1:?"
)
PLACEHOLDER = "the text above"
DEFAULT_N_CTX = llama2.CONTEXT_LENGTH  # for generators that do not say
_GIVEN = re.compile(r",?\s+given\s+(?:(?:the\s+)?context\s*:?\s*)?", re.IGNORECASE)
_SOURCES_TRAILER = re.compile(
    r"^\s*(?:sources?|references?|citations?)\s*:", re.IGNORECASE | re.MULTILINE
)
_GAP = "[...]"


@dataclass
class PromptPlan:
    """A KnowledgeModel prompt and what went into it."""

    prompt: str
    question: str
    used: list[Document]  # pages in the prompt (their text as kept)
    failed: list[Document] = field(default_factory=list)  # pages that could not be loaded
    left_out: str | None = None  # what budgeting dropped, for the reader


def split_question(text: str) -> tuple[str, list[Document]]:
    """The question and the evidence documents of a KnowledgeModel input."""
    evidence = split_evidence(text)
    docs = evidence.documents
    if docs:
        if not evidence.outside_text("").strip():
            return f"Summarize {PLACEHOLDER}.", docs
        return " ".join(evidence.outside_text(PLACEHOLDER).split()), docs
    stripped = text.strip()
    m = _GIVEN.search(stripped)
    if m and m.start() > 0 and stripped[m.end() :].strip():
        body = stripped[m.end() :].strip()
        end = "?" if body.endswith("?") else "."
        if body.endswith("?"):
            body = body[:-1].rstrip()
        return f"{stripped[: m.start()].rstrip(' ,')}, given {PLACEHOLDER}{end}", [
            Document(url="", text=body)
        ]
    return (
        f"Answer the question or follow the instruction in {PLACEHOLDER}, using only what it says.",
        [Document(url="", text=stripped)] if stripped else [],
    )


class KnowledgeModel:
    """The KnowledgeModel tool on any ``TextGenerator``; one model call at a time per instance."""

    name = "KnowledgeModel"
    description = DESCRIPTION

    def __init__(
        self,
        model: TextGenerator,
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        top_k: int = SAMPLING_DEFAULTS.top_k,
        top_p: float = 0.9,
        repeat_penalty: float = SAMPLING_DEFAULTS.repeat_penalty,
        seed: int | None = None,
        n_ctx: int | None = None,
        passage_chars: int = 800,
        cite: str = "Source?",
        lock: threading.Lock | None = None,
    ):
        self.model = model
        self.max_tokens = max_tokens
        self.sampling = {
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "repeat_penalty": repeat_penalty,
            "seed": seed,
        }
        self.n_ctx = n_ctx or getattr(model, "n_ctx", None) or DEFAULT_N_CTX
        self.passage_chars = passage_chars
        self.cite = cite
        # The engine keeps one KV cache: parallel plan steps must take turns.
        self._lock = lock or threading.Lock()

    # -- prompt ---------------------------------------------------------------------------
    def instruction(self, question: str) -> str:
        return f"{question} {self.cite}".strip() if self.cite else question

    def render(self, question: str, docs: list[Document]) -> str:
        blocks = []
        for d in docs:
            meta = {"url": d.url} if d.url else {}
            if d.title:
                meta["title"] = d.title
            blocks.append(ContextBlock(text=d.text, metadata=meta))
        return chat_prompt(closed_context_prompt(blocks, self.instruction(question)))

    def budget(self) -> int:
        """Tokens the prompt may use: the context window minus the answer and a small margin."""
        return self.n_ctx - self.max_tokens - 8

    def build_prompt(self, text: str) -> PromptPlan:
        """The prompt for a tool input, fitted to the context window."""
        question, docs = split_question(text)
        failed = [d for d in docs if not d.ok]
        usable = [d for d in docs if d.ok and d.text.strip()]
        if not usable:
            detail = "; ".join(f"{d.url}: {d.error}" for d in failed)
            raise ToolError(
                "KnowledgeModel got no evidence text to answer from"
                + (f" (every page failed: {detail})" if detail else "")
                + "; the plan should pass it a question with :evidenceN:"
            )
        prompt = self.render(question, usable)
        if count_tokens(self.model, prompt) <= self.budget():
            return PromptPlan(prompt, question, usable, failed)
        return self._fit(question, usable, failed)

    def _fit(self, question: str, docs: list[Document], failed: list[Document]) -> PromptPlan:
        budget = self.budget()
        base = count_tokens(self.model, self.render(question, []))
        if base >= budget:
            raise ToolError(
                f"KnowledgeModel: the question alone takes {base} tokens, more than "
                f"the {budget} available in a {self.n_ctx}-token context; shorten it"
            )
        passages: list[tuple[int, int, str]] = []  # (doc index, position, text)
        for i, d in enumerate(docs):
            passages += [
                (i, k, p) for k, p in enumerate(split_passages(d.text, self.passage_chars))
            ]
        scores = BM25([p for _, _, p in passages]).scores(question)
        order = sorted(range(len(passages)), key=lambda j: (-scores[j], j))
        overhead = {
            i: count_tokens(self.model, self.render("", [Document(d.url, "x", d.title)]))
            - count_tokens(self.model, self.render("", []))
            for i, d in enumerate(docs)
        }
        room = budget - base
        chosen: list[int] = []
        opened: set[int] = set()
        for j in order:
            i = passages[j][0]
            cost = (
                count_tokens(self.model, passages[j][2]) + 2 + (0 if i in opened else overhead[i])
            )
            if cost <= room:
                chosen.append(j)
                opened.add(i)
                room -= cost
        while (
            True
        ):  # estimates are per piece: confirm on the whole prompt, drop the weakest if over
            kept = self._assemble(docs, passages, chosen)
            prompt = self.render(question, kept)
            if count_tokens(self.model, prompt) <= budget or not chosen:
                break
            chosen.pop()
        if not chosen:
            raise ToolError(
                f"KnowledgeModel: no passage of the evidence fits in the "
                f"{self.n_ctx}-token context next to the question"
            )
        return PromptPlan(prompt, question, kept, failed, self._left_out(docs, passages, chosen))

    @staticmethod
    def _assemble(
        docs: list[Document], passages: list[tuple[int, int, str]], chosen: list[int]
    ) -> list[Document]:
        kept: list[Document] = []
        picked = sorted(chosen)
        for i, d in enumerate(docs):
            mine = [passages[j] for j in picked if passages[j][0] == i]
            if not mine:
                continue
            parts: list[str] = []
            prev = -1
            for _, k, text in mine:
                if k != prev + 1:
                    parts.append(_GAP)
                parts.append(text)
                prev = k
            if prev != sum(1 for p in passages if p[0] == i) - 1:
                parts.append(_GAP)
            kept.append(Document(d.url, "\n".join(parts), d.title))
        return kept

    def _left_out(
        self, docs: list[Document], passages: list[tuple[int, int, str]], chosen: list[int]
    ) -> str:
        picked = set(chosen)
        whole, partly = [], []
        for i, d in enumerate(docs):
            total = sum(1 for p in passages if p[0] == i)
            kept = sum(1 for j in picked if passages[j][0] == i)
            name = d.url or "the evidence"
            if kept == 0:
                whole.append(name)
            elif kept < total:
                partly.append(f"{name} ({kept} of {total} passages kept)")
        msg = (
            f"the evidence did not fit the {self.n_ctx}-token context, so the "
            f"{len(picked)} of {len(passages)} passages most relevant to the question were kept"
        )
        if whole:
            msg += "; left out entirely: " + ", ".join(whole)
        if partly:
            msg += "; left out in part: " + ", ".join(partly)
        return msg

    # -- answer ---------------------------------------------------------------------------
    def _turn(self) -> contextlib.AbstractContextManager[object]:
        """An engine that batches (``enable_batching``) runs parallel steps together, each in its
        own KV slot; any other model keeps one cache, so calls take turns."""
        if getattr(self.model, "batcher", None) is not None:
            return contextlib.nullcontext()
        return self._lock

    def __call__(self, text: str) -> str:
        plan = self.build_prompt(text)
        with self._turn():
            answer = self.model.complete(
                plan.prompt, max_tokens=self.max_tokens, stop=["USER:", "</s>"], **self.sampling
            )
        return self.format_answer(answer, plan)

    def format_answer(self, answer: str, plan: PromptPlan) -> str:
        """The answer, then the sources it cites (or was given), then what was left out."""
        answer = answer.strip()
        given = [d.url for d in plan.used if d.url]
        cited = [u for u in dict.fromkeys(given) if u in answer]
        trailer = _SOURCES_TRAILER.search(answer)
        if trailer and answer[: trailer.start()].strip():
            answer = answer[: trailer.start()].rstrip()  # our own list below replaces the model's
        lines = [answer or "(the model gave no answer)"]
        if cited:
            lines += ["", "Sources:"] + [f"- {u}" for u in cited]
        elif given:
            lines += ["", "Sources (given to the model, none cited):"]
            lines += [f"- {u}" for u in dict.fromkeys(given)]
        notes = []
        if plan.left_out:
            notes.append(f"Note: {plan.left_out}.")
        if plan.failed:
            notes.append("Not available: " + "; ".join(f"{d.url} ({d.error})" for d in plan.failed))
        if notes:
            lines += [""] + notes
        return "\n".join(lines)
