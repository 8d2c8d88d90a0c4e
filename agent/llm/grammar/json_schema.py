"""JSON Schema -> grammar, for JSON text and for YAML (block mappings, flow values).

Enforced: type (and type lists), enum, const, anyOf / oneOf / single-branch allOf, local ``$ref``
(non-recursive), object properties / required / additionalProperties, string minLength / maxLength /
pattern (regex subset) / format (date, uuid, email), integer minimum / maximum / exclusive bounds,
number bounds (integral and fractional values between them), boolean, null, array items / minItems /
maxItems. Annotations (title, description, default, examples, ...) are allowed. Every other keyword is
reported in one ``SchemaUnsupportedError``, never ignored.

``oneOf`` is generated like ``anyOf``: when its branches overlap, a value may match several of them
and fail oneOf's "exactly one" rule (validate after decoding when that matters; disjoint branches,
e.g. with distinct ``const`` tags, are always fine).

Everything generated is bounded (``JsonOptions``: string length, digits, array length, nesting
depth of untyped values, whitespace), so a constrained generation always terminates. Objects list
their properties in schema order, required and optional alike (an optional one may be skipped);
no properties beyond the schema's are generated.

YAML output avoids PyYAML's type traps: strings are always double-quoted, numbers have no leading
zeros and exponents only in the ``1.5e+3`` form YAML 1.1 reads as a float, keys that YAML would read
as booleans or nulls are quoted.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from agent.llm.grammar.errors import SchemaUnsupportedError
from agent.llm.grammar.grammar import Grammar
from agent.llm.grammar.nodes import (
    EMPTY,
    Node,
    Ref,
    Rep,
    alt,
    byte_set,
    lit,
    opt,
    printable_utf8_char,
    rep,
    seq,
    text_char,
)
from agent.llm.grammar.regex import CharSet, RegexError, regex_node

ANNOTATIONS = {
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
}
_BY_TYPE = {
    "string": {"minLength", "maxLength", "pattern", "format"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems", "uniqueItems"},
    "boolean": set(),
    "null": set(),
}
_GENERAL = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"}
_TYPES = tuple(_BY_TYPE)
_FORMATS = ("date", "uuid", "email")
_YAML_SPECIAL = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class JsonOptions:
    max_string_length: int = 128  # strings without maxLength
    max_items: int = 16  # arrays without maxItems; keys of untyped objects
    max_digits: int = 15  # integer digits when no bound says otherwise
    max_fraction_digits: int = 6
    max_depth: int = 3  # nesting of untyped ("any JSON") values
    max_indent: int = 16  # spaces after a newline between JSON tokens
    max_repeat: int = 32  # unbounded regex repeats (* +) in patterns


def _render(value: Any, yaml: bool) -> str:
    """A JSON value as text that reads back as the same value (in JSON, or in YAML flow style)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no JSON form")
        text = repr(value)
        if yaml and "e" in text:
            mant, exp = text.split("e")
            text = f"{mant if '.' in mant else mant + '.0'}e{exp if exp[0] in '+-' else '+' + exp}"
        return text
    if isinstance(value, str):
        return yaml_quote(value) if yaml else json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_render(v, yaml) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{_render(str(k), yaml)}: {_render(v, yaml)}" for k, v in value.items())
            + "}"
        )
    raise ValueError(f"{type(value).__name__} is not a JSON value")


_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff\ud800-\udfff]")


def yaml_quote(text: str) -> str:
    """A double-quoted YAML scalar that reads back as ``text`` (JSON escapes, minus the surrogate
    pairs YAML does not join, plus escapes for what YAML would fold or refuse)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def yaml_key(name: str) -> str:
    """A mapping key as YAML reads it back unchanged (plain when safe, else double-quoted)."""
    if _PLAIN_KEY.fullmatch(name) and name.lower() not in _YAML_SPECIAL:
        return name
    return yaml_quote(name)


_DIGIT = byte_set("0123456789")
_HEX = byte_set("0123456789abcdef")


def _json_char_for(cs: CharSet) -> Node:
    """One character of a charset, as it appears inside a double-quoted JSON/YAML string."""
    specials = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
    plain = cs.ascii & ~((1 << 32) - 1) & ~(1 << ord('"')) & ~(1 << ord("\\")) & ~(1 << 127)
    alts: list[Node] = []
    if plain:
        alts.append(byte_set(ranges=[(b, b) for b in range(128) if plain >> b & 1]))
    for b in range(128):
        if cs.ascii >> b & 1 and not plain >> b & 1:
            c = chr(b)
            alts.append(lit(specials.get(c, f"\\u{b:04x}")))
    if cs.any_non_ascii:
        alts.append(printable_utf8_char())
    alts.extend(lit(c) for c in sorted(cs.extra))
    if not alts:
        raise RegexError("", 0, "a character class matches nothing")
    return alt(*alts)


class _Builder:
    def __init__(self, root_schema: Any, options: JsonOptions, yaml: bool):
        self.root = root_schema
        self.o = options
        self.yaml = yaml
        self.rules: dict[str, Node] = {}
        self.problems: list[str] = []
        self._ref_stack: list[str] = []
        self._n = 0
        ws_tail = seq("\n", rep(" ", 0, options.max_indent))
        self.ws = self._rule("ws", opt(alt(" ", ws_tail)))
        self.sep = self._rule("comma", seq(",", self.ws))  # between members / items
        self.colon = lit(": ") if yaml else self._rule("colon", seq(opt(" "), ":", self.ws))
        self.char = self._rule("char", alt(text_char('"\\'), seq("\\", byte_set('"\\nrt'))))

    def _rule(self, name: str, node: Node) -> Node:
        self._n += 1
        key = f"{name}#{self._n}"
        self.rules[key] = node
        return Ref(key)

    def problem(self, path: str, what: str) -> Node:
        self.problems.append(f"{path or '#'}: {what}")
        return lit("null")

    # -- dispatch ----------------------------------------------------------------------------------
    def value(self, schema: Any, path: str, depth: int = 0) -> Node:
        """A value in flow context (JSON text, or a YAML flow value)."""
        if schema is True or schema == {}:
            return self.any_value(self.o.max_depth)
        if schema is False:
            return self.problem(path, "schema false allows no value")
        if not isinstance(schema, dict):
            return self.problem(
                path, f"a schema must be an object or a boolean, got {type(schema).__name__}"
            )
        if "$ref" in schema:
            return self._via_ref(schema, path, lambda s: self.value(s, path, depth))
        self.check_keywords(schema, path)
        if "const" in schema:
            return self.literal(schema["const"], path)
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                return self.problem(path, "enum must be a non-empty list")
            return alt(*[self.literal(v, path) for v in values])
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                branches = schema[key]
                if not isinstance(branches, list) or not branches:
                    return self.problem(f"{path}/{key}", "must be a non-empty list of schemas")
                if key == "allOf" and len(branches) != 1:
                    return self.problem(
                        f"{path}/allOf", "allOf with several schemas is not supported"
                    )
                rest = {k: v for k, v in schema.items() if k not in (key, "$defs", "definitions")}
                nodes = []
                for i, b in enumerate(branches):
                    merged = b if not rest or not isinstance(b, dict) else {**rest, **b}
                    nodes.append(self.value(merged, f"{path}/{key}/{i}", depth))
                return alt(*nodes)
        types = self.types_of(schema, path)
        if types is None:
            return self.any_value(self.o.max_depth)
        return alt(*[self.typed(t, schema, path) for t in types])

    def _via_ref(self, schema: dict, path: str, build) -> Node:
        """Build the schema a ``$ref`` points to, refusing references to a schema being built."""
        ref = schema["$ref"]
        if ref in self._ref_stack:
            return self.problem(f"{path}/$ref", f"recursive reference {ref} cannot be bounded")
        resolved = self.resolve(schema, path)
        if resolved is None:
            return lit("null")
        self._ref_stack.append(ref)
        try:
            return build(resolved)
        finally:
            self._ref_stack.pop()

    def resolve(self, schema: dict, path: str) -> dict | None:
        ref = schema.get("$ref")
        if ref is None:
            return schema
        if not isinstance(ref, str) or not ref.startswith("#"):
            self.problem(
                f"{path}/$ref", f"only local references (#/...) are supported, got {ref!r}"
            )
            return None
        if ref in self._ref_stack:
            self.problem(f"{path}/$ref", f"recursive reference {ref} cannot be bounded")
            return None
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                self.problem(f"{path}/$ref", f"{ref} does not point into the schema")
                return None
            target = target[part]
        if not isinstance(target, dict):
            self.problem(f"{path}/$ref", f"{ref} is not a schema object")
            return None
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        self._ref_stack.append(ref)
        try:
            resolved = self.resolve(dict(target), path)
        finally:
            self._ref_stack.pop()
        return None if resolved is None else {**resolved, **rest}

    def check_keywords(self, schema: dict, path: str) -> None:
        known = set(ANNOTATIONS) | _GENERAL
        for keys in _BY_TYPE.values():
            known |= keys
        for k in schema:
            if k not in known:
                self.problems.append(f"{path or '#'}: keyword {k!r} is not supported")
        if schema.get("uniqueItems") is True:
            self.problems.append(f"{path or '#'}: uniqueItems true is not supported")
        fmt = schema.get("format")
        if fmt is not None and fmt not in _FORMATS:
            self.problems.append(
                f"{path or '#'}: format {fmt!r} is not supported (supported: {', '.join(_FORMATS)})"
            )

    def types_of(self, schema: dict, path: str) -> list[str] | None:
        t = schema.get("type")
        if t is None:
            inferred = [
                name for name, keys in _BY_TYPE.items() if keys & set(schema) and name != "number"
            ]
            return inferred or None
        types = t if isinstance(t, list) else [t]
        bad = [x for x in types if x not in _TYPES]
        if bad or not types:
            self.problems.append(f"{path or '#'}: unknown type {bad or t!r}")
            return ["null"]
        return types

    def typed(self, t: str, schema: dict, path: str) -> Node:
        if t == "string":
            return self.string(schema, path)
        if t == "integer":
            return self.integer(schema, path)
        if t == "number":
            return self.number(schema, path)
        if t == "boolean":
            return alt("true", "false")
        if t == "null":
            return lit("null")
        if t == "array":
            return self.array(schema, path)
        return self.object(schema, path)

    def literal(self, value: Any, path: str) -> Node:
        try:
            return lit(_render(value, self.yaml))
        except ValueError as exc:
            return self.problem(path, str(exc))

    # -- scalars -----------------------------------------------------------------------------------
    def string(self, schema: dict, path: str) -> Node:
        lo = schema.get("minLength", 0)
        hi = schema.get("maxLength")
        if (
            not isinstance(lo, int)
            or lo < 0
            or (hi is not None and (not isinstance(hi, int) or hi < lo))
        ):
            return self.problem(path, f"bad minLength/maxLength ({lo!r}, {hi!r})")
        fmt, pattern = schema.get("format"), schema.get("pattern")
        if pattern is not None or fmt in _FORMATS:
            if "minLength" in schema or "maxLength" in schema:
                return self.problem(
                    path, "pattern/format together with minLength/maxLength is not supported"
                )
            if pattern is not None and fmt is not None:
                return self.problem(path, "pattern together with format is not supported")
            pattern = (
                pattern
                if pattern is not None
                else {
                    "date": r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$",
                    "uuid": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                    "email": r"^[a-z0-9._]{1,32}@[a-z0-9]{1,32}\.[a-z]{2,6}$",
                }[fmt]
            )
            if not isinstance(pattern, str):
                return self.problem(path, "pattern must be a string")
            try:
                body = regex_node(pattern, _json_char_for, max_repeat=self.o.max_repeat)
            except RegexError as exc:
                return self.problem(f"{path}/pattern", str(exc))
            return seq('"', body, '"')
        if hi is None:
            hi = max(lo, self.o.max_string_length)
        return seq('"', Rep(self.char, lo, hi), '"')

    def _bounds(self, schema: dict, path: str) -> tuple[float | None, float | None, bool, bool]:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        lo_ex = hi_ex = False
        if isinstance(xlo, bool):  # draft 4: a flag on minimum
            lo_ex = xlo
        elif xlo is not None:
            lo, lo_ex = (xlo, True) if lo is None or xlo >= lo else (lo, False)
        if isinstance(xhi, bool):
            hi_ex = xhi
        elif xhi is not None:
            hi, hi_ex = (xhi, True) if hi is None or xhi <= hi else (hi, False)
        for name, v in (("minimum", lo), ("maximum", hi)):
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            ):
                self.problems.append(f"{path or '#'}: {name} must be a finite number")
                return None, None, False, False
        return lo, hi, lo_ex, hi_ex

    def _int_bounds(self, schema: dict, path: str) -> tuple[int, int] | None:
        lo, hi, lo_ex, hi_ex = self._bounds(schema, path)
        big = 10**self.o.max_digits - 1
        ilo = -big if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
        ihi = big if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
        if ilo > ihi:
            return None
        return ilo, ihi

    def integer(self, schema: dict, path: str) -> Node:
        bounds = self._int_bounds(schema, path)
        if bounds is None:
            return self.problem(path, "no integer lies between minimum and maximum")
        return int_range(*bounds)

    def number(self, schema: dict, path: str) -> Node:
        frac = seq(".", rep(_DIGIT, 1, self.o.max_fraction_digits))
        if not any(
            k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
        ):
            int_part = seq(
                opt("-"),
                alt("0", seq(byte_set("123456789"), rep(_DIGIT, 0, self.o.max_digits - 1))),
            )
            if self.yaml:  # YAML 1.1 reads 1e5 as a string: exponents only after a fraction, signed
                return seq(
                    int_part,
                    opt(seq(frac, opt(seq(byte_set("eE"), byte_set("+-"), rep(_DIGIT, 1, 3))))),
                )
            return seq(
                int_part,
                opt(frac),
                opt(seq(byte_set("eE"), opt(byte_set("+-")), rep(_DIGIT, 1, 3))),
            )
        bounds = self._int_bounds(schema, path)
        if bounds is None:
            return self.problem(
                path, "number bounds without an integer between them are not supported"
            )
        ilo, ihi = bounds
        alts = [int_range(ilo, ihi)]
        if max(0, ilo) <= ihi - 1:  # i.fff in [i, i+1) stays inside when i and i+1 do
            alts.append(seq(int_range(max(0, ilo), ihi - 1), frac))
        if max(0, -ihi) <= -ilo - 1:  # -(i.fff) in (-(i+1), -i]
            alts.append(seq("-", int_range(max(0, -ihi), -ilo - 1), frac))
        return alt(*alts)

    # -- containers --------------------------------------------------------------------------------
    def array(self, schema: dict, path: str) -> Node:
        items = schema.get("items", {})
        if isinstance(items, list):
            return self.problem(
                f"{path}/items", "tuple-style items (a list of schemas) is not supported"
            )
        lo = schema.get("minItems", 0)
        hi = schema.get("maxItems")
        if (
            not isinstance(lo, int)
            or lo < 0
            or (hi is not None and (not isinstance(hi, int) or hi < lo))
        ):
            return self.problem(path, f"bad minItems/maxItems ({lo!r}, {hi!r})")
        if hi is None:
            hi = max(lo, self.o.max_items)
        item = self._rule("item", self.value(items, f"{path}/items"))
        return self.bracketed("[", "]", item, lo, hi)

    def bracketed(self, open_: str, close: str, item: Node, lo: int, hi: int) -> Node:
        if hi == 0:
            return seq(open_, self.ws, close)
        body = seq(item, Rep(seq(self.sep, item), max(lo - 1, 0), hi - 1))
        return seq(open_, self.ws, body if lo > 0 else opt(body), self.ws, close)

    def _members(self, schema: dict, path: str) -> list[tuple[str, Any, bool]]:
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, dict) or not isinstance(required, list):
            self.problems.append(f"{path or '#'}: properties must be an object and required a list")
            return []
        members = [(name, sub, name in required) for name, sub in props.items()]
        members += [(name, {}, True) for name in required if name not in props]
        return members

    def object(self, schema: dict, path: str) -> Node:
        members = self._members(schema, path)
        if not members:
            return seq("{", self.ws, "}")
        nodes = [
            (
                seq(
                    lit(json.dumps(name)), self.colon, self.value(sub, f"{path}/properties/{name}")
                ),
                req,
            )
            for name, sub, req in members
        ]
        body = self._sequence(nodes, self.sep, allow_empty=True)
        return seq("{", self.ws, body, self.ws, "}")

    def _sequence(self, members: list[tuple[Node, bool]], sep: Node, allow_empty: bool) -> Node:
        """Members in order, required ones always, optional ones maybe, ``sep`` between present ones.

        rest(i, first) = what may follow after members[:i] (``first``: none present yet); named
        rules keep the grammar linear in the number of members.
        """
        n = len(members)
        tag = f"obj{self._n}"
        self._n += 1

        def name(i: int, first: bool) -> str:
            return f"{tag}_{i}_{int(first)}"

        possible = {(n, True): allow_empty, (n, False): True}
        for i in range(n, -1, -1):
            for first in (True, False):
                if i == n:
                    if possible[(i, first)]:
                        self.rules[name(i, first)] = EMPTY
                    continue
                node, required = members[i]
                present = seq(*([] if first else [sep]), node, Ref(name(i + 1, False)))
                skip = not required and possible[(i + 1, first)]
                self.rules[name(i, first)] = (
                    alt(present, Ref(name(i + 1, first))) if skip else present
                )
                possible[(i, first)] = True
        return Ref(name(0, True))

    def any_value(self, depth: int) -> Node:
        key = f"any{depth}"
        if key not in self.rules:
            self.rules[key] = EMPTY  # placeholder: filled below, referenced by name
            scalars = [
                self.string({}, ""),
                self.number({}, ""),
                lit("true"),
                lit("false"),
                lit("null"),
            ]
            if depth > 0:
                inner = self.any_value(depth - 1)
                pair = seq(self.string({}, ""), self.colon, inner)
                scalars.append(self.bracketed("[", "]", inner, 0, self.o.max_items))
                scalars.append(self.bracketed("{", "}", pair, 0, self.o.max_items))
            self.rules[key] = alt(*scalars)
        return Ref(key)

    # -- YAML block style --------------------------------------------------------------------------
    def block_value(self, schema: Any, path: str, indent: int) -> Node:
        """What follows ``key:`` in a YAML block mapping: `` scalar`` / `` [flow]`` or a nested block."""
        if isinstance(schema, dict) and "$ref" in schema:
            return self._via_ref(schema, path, lambda s: self.block_value(s, path, indent))
        resolved = schema
        if (
            isinstance(resolved, dict)
            and self.types_of(resolved, path) == ["object"]
            and not any(k in resolved for k in ("const", "enum", "anyOf", "oneOf", "allOf"))
        ):
            self.check_keywords(resolved, path)
            members = self._members(resolved, path)
            pad = " " * indent
            nodes = [
                (
                    seq(
                        pad,
                        lit(yaml_key(name)),
                        ":",
                        self.block_value(sub, f"{path}/properties/{name}", indent + 2),
                    ),
                    req,
                )
                for name, sub, req in members
            ]
            forms: list[Node] = []
            if all(not r for _, _, r in members):
                forms.append(lit(" {}"))
            if members:
                forms.append(seq("\n", self._sequence(nodes, lit("\n"), allow_empty=False)))
            return alt(*forms)
        return seq(" ", self.value(schema, path))


def _same_length_range(x: str, y: str) -> Node:
    """Digit strings of equal length between x and y inclusive."""
    n = len(x)
    if set(x) == {"0"} and set(y) == {"9"}:
        return rep(_DIGIT, n, n)
    if n == 1:
        return byte_set(ranges=[(ord(x), ord(y))])
    if x[0] == y[0]:
        return seq(x[0], _same_length_range(x[1:], y[1:]))
    alts = [seq(x[0], _same_length_range(x[1:], "9" * (n - 1)))]
    if int(y[0]) - int(x[0]) > 1:
        alts.append(
            seq(byte_set(ranges=[(ord(x[0]) + 1, ord(y[0]) - 1)]), rep(_DIGIT, n - 1, n - 1))
        )
    alts.append(seq(y[0], _same_length_range("0" * (n - 1), y[1:])))
    return alt(*alts)


def _nonneg_range(a: int, b: int) -> Node:
    alts = []
    for n in range(len(str(a)), len(str(b)) + 1):
        lo = max(a, 10 ** (n - 1) if n > 1 else 0)
        hi = min(b, 10**n - 1)
        if lo <= hi:
            alts.append(_same_length_range(str(lo), str(hi)))
    return alt(*alts)


def int_range(lo: int, hi: int) -> Node:
    """Integers lo..hi in canonical decimal (no leading zeros, no ``-0``)."""
    alts = []
    if lo < 0:
        alts.append(seq("-", _nonneg_range(max(1, -hi), -lo)))
    if hi >= 0:
        alts.append(_nonneg_range(max(lo, 0), hi))
    return alt(*alts)


def _finish(b: _Builder, root: Node, name: str, lead: bool = True) -> Grammar:
    """The grammar, or every problem found; ``lead``: allow the space a chat answer starts with."""
    if b.problems:
        raise SchemaUnsupportedError(b.problems)
    return Grammar(seq(opt(" "), root) if lead else root, b.rules, name=name)


def json_schema_grammar(
    schema: Any, options: JsonOptions | None = None, *, yaml: bool = False
) -> Grammar:
    """A grammar for JSON text (or a YAML flow value) valid against ``schema``."""
    b = _Builder(schema, options or JsonOptions(), yaml)
    return _finish(b, b.value(schema, ""), "json-schema")


def json_value_grammar(options: JsonOptions | None = None, *, object_only: bool = True) -> Grammar:
    """Any JSON (an object by default, as OpenAI's json_object mode), nesting bounded by max_depth."""
    b = _Builder({}, options or JsonOptions(), False)
    depth = b.o.max_depth
    if object_only:
        inner = b.any_value(depth - 1)
        pair = seq(b.string({}, ""), b.colon, inner)
        root = b.bracketed("{", "}", pair, 0, b.o.max_items)
    else:
        root = b.any_value(depth)
    return _finish(b, root, "json")


def json_schema_node(builder: _Builder, schema: Any) -> Node:
    return builder.value(schema, "")
