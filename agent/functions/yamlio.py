"""YAML readers that avoid YAML 1.1's typing traps.

PyYAML implements YAML 1.1: ``NO`` becomes ``False``, ``1:20`` becomes 80, ``012`` becomes 10.
A model's call is read with ``load_plain``: every scalar stays the string the model wrote (plain,
unquoted ones are marked ``PlainStr`` so the schema can later decide if ``5`` meant a number).
Definition files are read with ``load_core``: YAML 1.2 core-schema typing (only ``true``/``false``
are booleans, no sexagesimals, no leading-zero octals). Both are safe loaders; aliases and
unusual tags are refused in model output (an alias bomb would expand when values are walked).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_STR = "tag:yaml.org,2002:str"


class PlainStr(str):
    """A scalar the model wrote unquoted: the schema may read it as a number, bool or null."""

    __slots__ = ()


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), used for untyped
# values in model output and for definition files.
_CORE_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_CORE_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_CORE_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_CORE_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)$")
_CORE_SPECIAL_FLOAT = re.compile(r"^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$")


def core_int(text: str) -> int | None:
    """The integer a YAML 1.2 core int scalar denotes, else None."""
    if not _CORE_INT.match(text):
        return None
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def core_float(text: str) -> float | None:
    """The finite float a YAML 1.2 core float scalar denotes, else None (inf/nan are not JSON)."""
    if _CORE_FLOAT.match(text):
        return float(text)
    return None


def core_bool(text: str) -> bool | None:
    return (text.lower() == "true") if _CORE_BOOL.match(text) else None


def is_core_null(text: str) -> bool:
    return bool(_CORE_NULL.match(text))


def resolve_core(text: str) -> Any:
    """Type a plain scalar by the YAML 1.2 core schema: null, bool, int, float, else the string."""
    if is_core_null(text):
        return None
    b = core_bool(text)
    if b is not None:
        return b
    i = core_int(text)
    if i is not None:
        return i
    f = core_float(text)
    if f is not None:
        return f
    return str(text)


class _NoAliasComposer:
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):  # type: ignore[attr-defined]
            mark = self.peek_event().start_mark  # type: ignore[attr-defined]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in a function call", mark
            )
        return super().compose_node(parent, index)  # type: ignore[misc]


class PlainLoader(_NoAliasComposer, yaml.SafeLoader):
    """Safe loader for model output: no implicit typing, duplicate keys refused."""

    yaml_implicit_resolvers: dict = {}

    def construct_plain_str(self, node: yaml.ScalarNode) -> str:
        value = self.construct_scalar(node)
        return PlainStr(value) if node.style is None else str(value)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark
            )
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain text", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen[key] = True
        return super().construct_mapping(node, deep=deep)

    def _refuse_tag(self, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"the tag {node.tag} is not allowed in a function call", node.start_mark
        )


PlainLoader.add_constructor(_STR, PlainLoader.construct_plain_str)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    PlainLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", PlainLoader._refuse_tag)
PlainLoader.add_constructor(None, PlainLoader._refuse_tag)


class CoreLoader(yaml.SafeLoader):
    """Safe loader with YAML 1.2 core-schema typing, for definition files."""

    yaml_implicit_resolvers: dict = {}


CoreLoader.add_implicit_resolver("tag:yaml.org,2002:null", _CORE_NULL, list("~nN") + [""])
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:bool", _CORE_BOOL, list("tTfF"))
CoreLoader.add_implicit_resolver("tag:yaml.org,2002:int", _CORE_INT, list("-+0123456789"))
CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(_CORE_FLOAT.pattern + "|" + _CORE_SPECIAL_FLOAT.pattern),
    list("-+.0123456789"),
)


def _core_int_constructor(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    value = core_int(text)
    if value is None:  # an explicit !!int on YAML 1.1 syntax: let PyYAML decide
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    return value


CoreLoader.add_constructor("tag:yaml.org,2002:int", _core_int_constructor)


def load_plain(text: str) -> Any:
    """Parse model output; raises ``yaml.YAMLError`` on malformed input."""
    return yaml.load(text, Loader=PlainLoader)  # noqa: S506 - PlainLoader is a SafeLoader


def load_core(text: str) -> Any:
    """Parse a definitions file with YAML 1.2 core typing; raises ``yaml.YAMLError``."""
    return yaml.load(text, Loader=CoreLoader)  # noqa: S506 - CoreLoader is a SafeLoader


def plain_to_str(value: Any) -> Any:
    """Strip the ``PlainStr`` marks so the result is plain JSON data."""
    if isinstance(value, PlainStr):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain_to_str(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_to_str(v) for v in value]
    return value
