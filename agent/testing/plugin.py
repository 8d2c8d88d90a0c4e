"""pytest plugin (entry point ``pytest11``): record model and tool calls once, replay them in CI.

    @pytest.mark.agent_cassette                       # cassettes/<module>/<test>.json
    def test_app(agent_cassette, agent_model):        # agent_model: from agent_model_factory
        result = ask(agent_model, "Who won?", agent_cassette.tools(my_tools))

``--agent-record-mode {none,once,new_episodes,all}`` chooses the record mode; without it,
``none`` when the ``CI`` environment variable is set, else the marker's ``record_mode``, else
``once``. Filters come from the ``agent_cassette_config`` fixture and the marker's
keyword arguments (``agent.testing.filters``). A request the cassette does not hold fails the
test with the closest recorded request and the difference, even when the app caught the error.

This module imports only pytest and the standard library: it loads in every pytest run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

MODES = ("none", "once", "new_episodes", "all")
OPTION = "--agent-record-mode"
_CASSETTE = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agent", "agent: record and replay model and tool calls")
    group.addoption(
        OPTION,
        choices=MODES,
        default=None,
        help="how agent_cassette tests use their cassettes: none (replay only, the CI "
        "setting), once (record a missing cassette), new_episodes (record new requests), "
        "all (record again). Default: none if CI is set, else once.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "agent_cassette(path=None, record_mode=None, **filters): record the model and tool "
        "calls of this test to a cassette (default cassettes/<module>/<test>.json) and replay "
        "them (agent.testing)",
    )


def record_mode(config: pytest.Config, marker: pytest.Mark | None) -> str:
    """The command line, else ``none`` in CI, else the marker, else ``once``.

    CI comes before the marker so that no test records (and needs a model) in CI unless the
    command line asks for it.
    """
    chosen = config.getoption(OPTION)
    if chosen:
        return str(chosen)
    marked = marker.kwargs.get("record_mode") if marker else None
    if marked is not None and marked not in MODES:
        raise pytest.UsageError(
            f"agent_cassette(record_mode={marked!r}): use one of {', '.join(MODES)}"
        )
    if os.environ.get("CI"):
        return "none"
    return str(marked) if marked is not None else "once"


def cassette_path(item: pytest.Item, marker: pytest.Mark | None) -> Path:
    """The marker's ``path`` (relative to the test file), else cassettes/<module>/<test>.json."""
    base = Path(str(item.path)).parent
    given = None
    if marker is not None:
        given = marker.kwargs.get("path") or (marker.args[0] if marker.args else None)
    if given:
        path = Path(given)
        return path if path.is_absolute() else base / path
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", item.name).strip("-")
    return base / "cassettes" / Path(str(item.path)).stem / f"{name}.json"


@pytest.fixture
def agent_cassette_config() -> dict[str, Any]:
    """Override to set filters for every test in a scope (``filter_secrets``, ...)."""
    return {}


@pytest.fixture
def agent_model_factory() -> Any:
    """Override to return the model (or a callable loading it) that records cassettes."""
    return None


@pytest.fixture
def agent_cassette(
    request: pytest.FixtureRequest, agent_cassette_config: dict[str, Any]
) -> Iterator[Any]:
    """The test's ``agent.testing.Cassette``: ``.model(factory)``, ``.tools(tools)``."""
    from agent.testing.filters import Filters
    from agent.testing.recorder import Cassette

    node = request.node
    marker = node.get_closest_marker("agent_cassette")
    marked = marker.kwargs if marker else {}
    config = {**agent_cassette_config}
    for key, value in marked.items():  # marker filters add to the configured ones
        if key in ("path", "record_mode"):
            continue
        config[key] = (
            [*(config.get(key) or ()), *value] if isinstance(value, (list, tuple)) else value
        )
    cassette = Cassette(
        cassette_path(node, marker),
        record_mode(request.config, marker),
        Filters.from_config(config),
        note=f"recorded by the agent pytest plugin for {node.path.name}::{node.name}",
    )
    node.stash[_CASSETTE] = cassette
    yield cassette
    cassette.save()


@pytest.fixture
def agent_model(agent_cassette: Any, agent_model_factory: Any) -> Any:
    """The cassette's model: replays, or records with ``agent_model_factory`` when needed."""
    return agent_cassette.model(agent_model_factory)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Fail a test whose cassette missed a request, even if the app swallowed the error."""
    try:
        result = yield
    except BaseException as exc:
        miss = _miss(item)
        if miss is not None and miss is not exc:
            raise miss from exc
        raise
    miss = _miss(item)
    if miss is not None:
        raise miss
    return result


def _miss(item: pytest.Item) -> BaseException | None:
    """The cassette's miss (all of them in one error when there were several), or None."""
    cassette = item.stash.get(_CASSETTE, None)
    misses = list(cassette.misses) if cassette is not None else []
    if len(misses) <= 1:
        return misses[0] if misses else None
    text = "\n\n".join(f"miss {i}: {m}" for i, m in enumerate(misses, 1))
    return type(misses[0])(f"{len(misses)} requests are not in the cassette:\n\n{text}")
