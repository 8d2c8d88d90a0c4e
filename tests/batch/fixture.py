"""The batch tests' engine: a scripted model and the fixture web of ``examples/``.

Loaded by name (``--model-factory tests.batch.fixture:scripted_model``, ``--tools-factory
tests.batch.fixture:fixture_tools``) inside worker processes and Ray actors, configured through
environment variables that ``EngineSpec.env`` sets in each worker:
- ``BATCH_FIXTURE_WEB``: base URL of the fixture web served on 127.0.0.1;
- ``BATCH_FIXTURE_DELAY``: seconds before each streamed piece (slow questions, to kill mid-run);
- ``BATCH_FIXTURE_MARKS``: a directory; a question containing FLAKY fails on its first attempt.

The plan searches for the question, reads the pages found and asks KnowledgeModel, whose scripted
answer names the question, the first source and what the scraped pages say: an answer that
depends on the question, the fake search and the real TextScraper over HTTP.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agent.llm.scripted import ScriptedModel
from agent.tools.defaults import default_tools
from examples.make_nobel_cassette import FixtureSearch

FIXTURE_WEB = Path(__file__).resolve().parents[2] / "examples" / "fixture_web"

PLAN = """Plan: Search the web for the question.
:evidence0: = DuckDuckGo[{question}]
Plan: Take the links of the results.
:evidence1: = HyperlinkExtractor[:evidence0:]
Plan: Read the pages.
:evidence2: = TextScraper[:evidence1:]
Plan: Answer from the pages.
:evidence3: = KnowledgeModel[{question} Given :evidence2:]
Answer: :evidence3:"""


def _respond(prompt: str) -> str:
    if "Please construct a systematic plan" in prompt:
        question = prompt.rsplit("Question: ", 1)[-1].removesuffix(" ASSISTANT:").strip()
        if "BROKEN" in question:
            return "I would rather not write a plan."
        return PLAN.format(question=question.replace("[", "(").replace("]", ")"))
    instruction = prompt.rsplit("BEGININSTRUCTION", 1)[-1].split("ENDINSTRUCTION")[0].strip()
    question = instruction.split(" Given ")[0]
    marks = os.environ.get("BATCH_FIXTURE_MARKS")
    if "FLAKY" in question and marks:
        mark = Path(marks) / hashlib.sha256(question.encode()).hexdigest()
        if not mark.exists():
            mark.write_text("failed once")
            raise RuntimeError("a flaky failure on the first attempt")
    urls = re.findall(r"https?://[^\s\]]+", prompt)
    mentions = prompt.count("Wild Iris")
    return f"{question} -> {urls[0] if urls else 'no source'} ({mentions} mentions of Wild Iris)"


def scripted_model() -> ScriptedModel:
    delay = float(os.environ.get("BATCH_FIXTURE_DELAY", "0") or 0)
    return ScriptedModel(_respond, chunk_size=16, delay=delay, name="batch-fixture")


def fixture_tools(model):
    base = os.environ["BATCH_FIXTURE_WEB"]
    return default_tools(
        model,
        allow_private=True,
        min_search_interval=0.0,
        search_backend=FixtureSearch(FIXTURE_WEB / "search_index.json", base),
    )


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def serve_fixture_web() -> ThreadingHTTPServer:
    """The fixture web on a free loopback port (``server.server_address``)."""
    handler = functools.partial(_Quiet, directory=str(FIXTURE_WEB))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


TOPICS = [
    "Who won the Nobel Prize in Literature in 2020",
    "What is the most famous work of Louise Glück",
    "When was The Wild Iris published",
    "Which prize did The Wild Iris win in 1993",
    "Who is the American poet Louise Glück",
]


def questions(n: int = 20) -> list[dict]:
    return [{"id": f"q{i:02d}", "question": f"{TOPICS[i % len(TOPICS)]}? (#{i})"} for i in range(n)]


def limiter_times(limiter, calls: int, out) -> None:
    """In a child process: ``calls`` waits on ``limiter``, sending ``(before, delay, after)`` of
    each on ``out`` (what ``tests.timing.assert_paced`` checks)."""
    import time

    for _ in range(calls):
        before = time.monotonic()
        delay = limiter.wait()
        out.put((before, delay, time.monotonic()))
