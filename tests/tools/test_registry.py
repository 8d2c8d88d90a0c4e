from __future__ import annotations

import sys
import types

import pytest

from agent.errors import ToolError
from agent.tools import FunctionTool, Tool, ToolRegistry, as_tool, load_tool_spec
from agent.tools.links import HyperlinkExtractor


def test_decorator_and_call_registration_with_case_insensitive_lookup() -> None:
    reg = ToolRegistry()

    @reg.tool()
    def WikiSearch(text: str) -> str:  # noqa: N802 - tool names are CamelCase in plans
        """Search Wikipedia for a page title.

        More details that are not part of the description."""
        return f"wiki:{text}"

    reg.add(lambda s: s.upper(), name="Shout", description="Upper-cases its input.")
    reg.add(HyperlinkExtractor())
    assert reg.names() == ["WikiSearch", "Shout", "HyperlinkExtractor"]
    assert reg.get("wikisearch")("x") == "wiki:x" and reg["SHOUT"]("a") == "A"
    assert "hyperlinkextractor" in reg and "Nope" not in reg and reg.get("nope") is None
    assert reg.describe().splitlines()[0] == "WikiSearch[input]: Search Wikipedia for a page title."
    assert isinstance(reg["HyperlinkExtractor"], HyperlinkExtractor)  # kept as is, not wrapped
    with pytest.raises(KeyError):
        reg["missing"]


def test_same_name_replaces_and_order_is_kept() -> None:
    reg = ToolRegistry({"A": lambda s: "1", "B": lambda s: "2"})
    reg.add(lambda s: "3", name="a")
    assert reg.names() == ["a", "B"] and reg["A"]("") == "3" and len(reg) == 2


def test_bad_tools_are_refused_with_reasons() -> None:
    with pytest.raises(ToolError, match="callable"):
        as_tool("not callable")
    with pytest.raises(ToolError, match="identifier"):
        as_tool(lambda s: s, name="two words")


def test_tool_protocol_is_structural() -> None:
    assert isinstance(FunctionTool("X", "d", str), Tool)
    assert isinstance(HyperlinkExtractor(), Tool)


def test_load_tool_spec_imports_module_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("my_tools_for_test")

    def Echo(text: str) -> str:  # noqa: N802
        """Repeat the input."""
        return text

    mod.Echo = Echo  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_tools_for_test", mod)
    tool = load_tool_spec("my_tools_for_test:Echo")
    assert tool.name == "Echo" and tool.description == "Repeat the input." and tool("hi") == "hi"
    tool = load_tool_spec("agent.tools.links:HyperlinkExtractor")  # a class: instantiated
    assert isinstance(tool, HyperlinkExtractor) and tool("see https://a.test/") == "https://a.test/"


@pytest.mark.parametrize(
    "spec, reason",
    [
        ("no_colon", "must look like"),
        (":attr", "must look like"),
        ("module:", "must look like"),
        ("agent.tools.no_such_module:X", "cannot import"),
        ("agent.tools.links:NoSuchThing", "has no attribute"),
        ("agent.tools.knowledge:KnowledgeModel", "without arguments"),
    ],
)
def test_load_tool_spec_errors(spec: str, reason: str) -> None:
    with pytest.raises(ToolError, match=reason):
        load_tool_spec(spec)
