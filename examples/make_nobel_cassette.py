"""Record examples/nobel-prize.cassette.json: the model card's Nobel question, run offline.

What is real and what is not:
- real: the plan parser, the parallel executor, evidence substitution, the recording, and the
  TextScraper / HyperlinkExtractor / DuckDuckGo / KnowledgeModel tools of ``agent.tools``;
  TextScraper fetches the pages over HTTP from a loopback server.
- stand-ins: the web is the handful of pages in ``examples/fixture_web/`` (served on
  127.0.0.1), the search engine is a fake backend ranking ``fixture_web/search_index.json`` by
  word overlap, and the model is a ``ScriptedModel``: it writes the plan the model card shows
  and gives fixed KnowledgeModel answers. No Llama weights are involved.

Run from the repository root:  .venv/bin/python examples/make_nobel_cassette.py
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from agent.llm.scripted import ScriptedModel  # noqa: E402
from agent.planner import RecordingModel, ask, make_cassette, replay, save_cassette  # noqa: E402
from agent.planner.card import CARD_PLAN  # noqa: E402
from agent.planner.card import CARD_QUESTION as QUESTION  # noqa: E402
from agent.tools.defaults import default_tools  # noqa: E402
from agent.tools.search import SearchResult  # noqa: E402

PORT = 8731  # fixed, so the recorded URLs are the same every time the cassette is remade
OUT = HERE / "nobel-prize.cassette.json"


LAUREATE = "Louise Glück, the American poet, won the Nobel Prize in Literature in 2020."
FAMOUS_WORK = (
    "Louise Glück's most famous work is The Wild Iris (1992), a collection of poems "
    "set in a garden that won the Pulitzer Prize for Poetry in 1993."
)


def scripted_answer(prompt: str) -> str:
    """The scripted model: the card's plan for the planning prompt, fixed answers otherwise."""
    if "Please construct a systematic plan" in prompt:
        return CARD_PLAN
    instruction = prompt.rsplit("BEGININSTRUCTION", 1)[-1]
    if "most famous work" in instruction:
        return FAMOUS_WORK
    if "Who won" in instruction:
        return LAUREATE
    return "I don't know."


class FixtureSearch:
    """A fake search backend: the fixture index ranked by word overlap with the query."""

    def __init__(self, index: Path, base_url: str):
        self.entries = json.loads(index.read_text(encoding="utf-8"))["results"]
        self.base_url = base_url

    @staticmethod
    def _words(text: str) -> set[str]:
        return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}

    def search(self, query: str, max_results: int) -> list[SearchResult]:
        q = self._words(query)
        scored = []
        for rank, e in enumerate(self.entries):
            score = len(q & self._words(e["title"] + " " + e["snippet"]))
            if score:
                scored.append((-score, rank, e))
        return [
            SearchResult(e["title"], self.base_url + e["path"], e["snippet"])
            for _, _, e in sorted(scored)[:max_results]
        ]


def serve_fixture_web() -> ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(HERE / "fixture_web"))
    server = ThreadingHTTPServer(("127.0.0.1", PORT), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the offline Nobel-prize example run.")
    parser.add_argument("--out", type=Path, default=OUT, help=f"cassette path (default {OUT.name})")
    out = parser.parse_args(argv).out
    server = serve_fixture_web()
    try:
        base = f"http://127.0.0.1:{PORT}"
        model = RecordingModel(ScriptedModel(scripted_answer, name="nobel-example-script"))
        tools = default_tools(
            model,
            allow_private=True,
            min_search_interval=0.0,
            search_backend=FixtureSearch(HERE / "fixture_web" / "search_index.json", base),
        )
        result = ask(model, QUESTION, tools)
    finally:
        server.shutdown()
    if not result.ok:
        print(f"the example run failed: {result.error}", file=sys.stderr)
        return 1
    note = (
        "Scripted, offline recording. The model is a ScriptedModel that writes the model "
        "card's plan and gives fixed KnowledgeModel answers; the web is the local pages of "
        "examples/fixture_web served on 127.0.0.1 and the search engine a fake index. The "
        "parser, executor and tools ran for real. Remake with "
        "examples/make_nobel_cassette.py."
    )
    meta = {
        "format": "scripted",
        "name": "nobel-example-script",
        "note": "stands in for airoboros-l2-13b-gpt4-m2.0; no model weights were used",
    }
    cassette = make_cassette(result, model=model, tools=tools, note=note, model_meta=meta)
    save_cassette(cassette, out)
    replayed = replay(out)  # the cassette must replay to the same answer
    print(f"wrote {out}; answer:\n{replayed.answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
