"""JSON Schema derived from type hints and docstrings, and params converted back for handlers."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, TypedDict, Union

import pytest
from jsonschema import Draft202012Validator

from agent.functions import FunctionDefinitionError, FunctionRegistry
from agent.functions.docstrings import parse_docstring
from agent.functions.schema import function_schema, to_python, type_schema


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Filters:
    """Filters for a search.

    Attributes:
        keyword: The word or phrase we want to search for.
    """

    keyword: str
    case_sensitive: bool = False
    tags: list[str] = field(default_factory=list, metadata={"description": "Labels to match."})


class Window(TypedDict, total=False):
    start: int
    end: int


class Point(TypedDict):
    x: float
    y: float


@pytest.mark.parametrize(
    "hint, schema",
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, "x"], {"enum": [1, "x"]}),
        (Unit, {"type": "string", "enum": ["celsius", "fahrenheit"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Optional[int], {"type": ["integer", "null"]}),
        (int | None, {"type": ["integer", "null"]}),
        (Optional[Literal["a"]], {"type": ["string", "null"], "enum": ["a", None]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        (
            Optional[list[int]],
            {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]},
        ),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (Sequence[int], {"type": "array", "items": {"type": "integer"}}),
        (list, {"type": "array"}),
        (set[str], {"type": "array", "uniqueItems": True, "items": {"type": "string"}}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "items": False,
                "minItems": 2,
                "maxItems": 2,
            },
        ),
        (dict, {"type": "object"}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (dt.date, {"type": "string", "format": "date"}),
        (dt.datetime, {"type": "string", "format": "date-time"}),
        (Annotated[int, "How many."], {"description": "How many.", "type": "integer"}),
        (
            Window,
            {
                "type": "object",
                "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
            },
        ),
        (
            Point,
            {
                "type": "object",
                "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                "required": ["x", "y"],
            },
        ),
    ],
)
def test_type_schema(hint, schema):
    assert type_schema(hint, "p") == schema
    Draft202012Validator.check_schema(schema)


def test_nested_dataclass_schema_with_descriptions_and_defaults():
    assert type_schema(Filters, "filters") == {
        "type": "object",
        "description": "Filters for a search.",
        "properties": {
            "keyword": {
                "description": "The word or phrase we want to search for.",
                "type": "string",
            },
            "case_sensitive": {"type": "boolean", "default": False},
            "tags": {
                "description": "Labels to match.",
                "type": "array",
                "items": {"type": "string"},
            },
        },
        "required": ["keyword"],
    }


@pytest.mark.parametrize(
    "hint, words",
    [
        (bytes, "has no JSON Schema"),
        (dict[int, str], "keys are strings"),
        (list[complex], "has no JSON Schema"),
    ],
)
def test_unsupported_types_name_the_parameter(hint, words):
    with pytest.raises(FunctionDefinitionError, match=words) as info:
        type_schema(hint, "f(x)")
    assert "f(x)" in str(info.value)


@dataclass
class Node:
    value: int
    children: list[Node]


def test_recursive_dataclass_is_refused():
    with pytest.raises(FunctionDefinitionError, match="recursive"):
        type_schema(Node, "tree")


def test_decorated_function_schema_from_hints_and_google_docstring():
    reg = FunctionRegistry()

    @reg.function
    def file_analytics(
        action: Literal["count_occurrences", "find_line"],
        filters: Filters,
        limit: int | None = None,
        unit: Unit = Unit.CELSIUS,
    ) -> int:
        """This tool performs various operations on a text file.

        Longer explanation that is not part of the summary.

        Args:
            action: The operation we want to perform on the data, such as
                "count_occurrences", "find_line", etc.
            filters: What to look for.
            limit (int): At most this many results.

        Returns:
            The count.
        """
        return 0

    spec = reg["file_analytics"]
    assert spec.description == "This tool performs various operations on a text file."
    params = reg.schema("file_analytics")
    assert params["required"] == ["action", "filters"]
    assert params["properties"]["action"] == {
        "description": "The operation we want to perform on the data, such as "
        '"count_occurrences", "find_line", etc.',
        "type": "string",
        "enum": ["count_occurrences", "find_line"],
    }
    assert params["properties"]["limit"] == {
        "description": "At most this many results.",
        "type": ["integer", "null"],
        "default": None,
    }
    assert params["properties"]["unit"]["default"] == "celsius"
    assert params["properties"]["filters"]["description"] == "What to look for."
    assert "      keyword: The word or phrase we want to search for." in reg.describe()
    Draft202012Validator.check_schema(params)


def test_decorator_with_overrides_and_undocumented_params():
    reg = FunctionRegistry()

    @reg.function(name="lookup", description="Looks things up.")
    def _impl(query, *args, top: int = 3, **kwargs):
        return query

    assert reg.names() == ["lookup"]
    assert reg.schema("lookup") == {
        "type": "object",
        "properties": {"query": {}, "top": {"type": "integer", "default": 3}},
        "required": ["query"],
    }
    assert _impl("x") == "x"  # the decorator returns the function itself


def test_positional_only_parameters_are_refused():
    reg = FunctionRegistry()
    with pytest.raises(FunctionDefinitionError, match="positional-only"):

        @reg.function
        def f(a: int, /) -> None: ...


def test_unresolvable_hint_is_refused():
    reg = FunctionRegistry()
    with pytest.raises(FunctionDefinitionError, match="cannot resolve"):

        @reg.function
        def f(a: NoSuchType) -> None: ...  # noqa: F821


@pytest.mark.parametrize(
    "doc",
    [
        """Do it.

    Args:
        a (int): First
            value.
        b: Second.
    """,
        """Do it.

    Parameters
    ----------
    a : int
        First
        value.
    b : str
        Second.

    Returns
    -------
    int
    """,
        """Do it.

    :param int a: First
        value.
    :param b: Second.
    :returns: nothing
    """,
    ],
)
def test_docstring_styles(doc):
    parsed = parse_docstring(doc)
    assert parsed.summary == "Do it."
    assert parsed.params == {"a": "First value.", "b": "Second."}


def test_docstring_summary_is_the_first_paragraph_folded():
    parsed = parse_docstring("Counts words\n  in a file.\n\nDetails.\n")
    assert parsed.summary == "Counts words in a file."
    assert parse_docstring(None).params == {}


def test_to_python_builds_the_hinted_types():
    sig = function_schema(_typed)
    assert to_python({"keyword": "x", "tags": ["a"]}, sig.hints["filters"]) == Filters(
        "x", False, ["a"]
    )
    assert to_python("fahrenheit", sig.hints["unit"]) is Unit.FAHRENHEIT
    assert to_python([1, "a"], sig.hints["pair"]) == (1, "a")
    assert to_python(["a", "a"], sig.hints["labels"]) == {"a"}
    assert to_python("2024-01-05", sig.hints["day"]) == dt.date(2024, 1, 5)
    assert to_python("2024-01-05T10:00:00Z", sig.hints["at"]) == dt.datetime(
        2024, 1, 5, 10, tzinfo=dt.timezone.utc
    )
    assert to_python(3, sig.hints["ratio"]) == 3.0 and isinstance(to_python(3, float), float)
    assert to_python(None, sig.hints["maybe"]) is None
    assert to_python({"keyword": "k"}, sig.hints["maybe"]) == Filters("k")
    assert to_python([{"keyword": "k"}], sig.hints["many"]) == [Filters("k")]
    assert to_python({"a": {"keyword": "k"}}, sig.hints["by_name"]) == {"a": Filters("k")}
    assert to_python(2, Level) is Level.HIGH


def _typed(
    filters: Filters,
    unit: Unit,
    pair: tuple[int, str],
    labels: set[str],
    day: dt.date,
    at: dt.datetime,
    ratio: float,
    maybe: Filters | None,
    many: list[Filters],
    by_name: dict[str, Filters],
) -> None:
    """Typed."""
