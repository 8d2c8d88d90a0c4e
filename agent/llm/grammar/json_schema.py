"""JSON Schema -> grammar, for JSON text and for YAML (block mappings, flow values).

The grammar admits only values valid for the schema (it may admit fewer: every bound is capped).
Enforced: type (and type lists), enum / const (each value checked against the whole schema),
anyOf / oneOf / allOf and ``$ref`` with sibling keywords as the intersection of the parts
(``schema_ops``), local ``$ref`` including recursive ones (one rule per reference), object
properties / required / additionalProperties / patternProperties / propertyNames / min- and
maxProperties, string minLength / maxLength / pattern (regex subset) / the common formats, integer
and number bounds, boolean, null, array items / prefixItems / tuple items / minItems / maxItems,
uniqueItems for arrays of enum values. Annotations and unknown keywords (``title``, ``x-*``,
draft-4 ``id``, ...) are ignored, as validators ignore them.

Keywords the grammar cannot express (``not``, ``if``, ``multipleOf``, ``dependencies``, overlapping
``oneOf`` branches, uniqueItems of free values, a pattern with length bounds, ...) are listed in
``Grammar.unenforced``: the grammar still constrains everything else, and the caller must validate
the output against the schema (the server does, and retries or reports a clear error).

Compiling is linear in the schema's size: numbers only cap repeats (a maxLength of 1e4 generates at
most ``JsonOptions.max_string_length`` characters), references are built once, and a work and time
budget (``max_work``, ``max_seconds``) turns anything larger into ``SchemaTooLargeError`` naming the
part of the schema being built. Two limits refuse what is almost surely an attack or a mistake even
though it would compile: a length or count bound above ``max_bound`` (no context window comes near
it), and references that, written out, would make the schema larger than ``max_expansion`` nodes
(the "billion laughs" of XML entities: a few lines whose expansion doubles per level).

YAML output avoids PyYAML's type traps: strings are always double-quoted, numbers have no leading
zeros and exponents only in the ``1.5e+3`` form YAML 1.1 reads as a float, keys that YAML would read
as booleans or nulls are quoted.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from agent.llm.grammar.errors import SchemaTooLargeError, SchemaUnsupportedError
from agent.llm.grammar.grammar import Grammar
from agent.llm.grammar.nodes import (
    EMPTY,
    Alt,
    Lit,
    Node,
    Ref,
    Rep,
    Seq,
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
from agent.llm.grammar.schema_ops import (
    BY_TYPE,
    CHECKED_AFTER,
    ENFORCED,
    TYPES,
    Unsatisfiable,
    as_dict,
    both,
    canonical,
    intersect,
    member_schema,
    normalize_bounds,
    required_names,
    small_key,
)

_T = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_D = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
_LABEL = r"[a-z]([a-z0-9-]{0,20}[a-z0-9])?"
_HOST = rf"{_LABEL}(\.{_LABEL}){{0,3}}"
_URI = rf"(https?|ftp)://{_HOST}(/[A-Za-z0-9._~-]{{1,24}}){{0,6}}"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# Conservative patterns: every string they admit is valid for the format (RFC 3339, 3986, 5321...).
FORMATS = {
    "date": f"^{_D}$",
    "time": f"^{_T}$",
    "date-time": f"^{_D}T{_T}$",
    "uuid": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    "email": r"^[a-z0-9_]{1,32}(\.[a-z0-9_]{1,16}){0,2}@[a-z0-9]{1,32}\.[a-z]{2,6}$",
    "idn-email": r"^[a-z0-9_]{1,32}@[a-z0-9]{1,32}\.[a-z]{2,6}$",
    "hostname": f"^{_HOST}$",
    "idn-hostname": f"^{_HOST}$",
    "ipv4": rf"^{_OCTET}(\.{_OCTET}){{3}}$",
    "ipv6": r"^[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}$",
    "uri": f"^{_URI}$",
    "uri-reference": f"^{_URI}$",
    "iri": f"^{_URI}$",
    "iri-reference": f"^{_URI}$",
    "json-pointer": r"^(/[A-Za-z0-9_]{1,16}){0,8}$",
}
_YAML_SPECIAL = {"y", "n", "yes", "no", "true", "false", "on", "off", "null", "~"}
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_PROBLEMS = 20  # kept; the message shows fewer (SchemaUnsupportedError)
_YAML_BLOCK_DEPTH = 6  # deeper YAML mappings are written in flow style


@dataclass(frozen=True)
class JsonOptions:
    max_string_length: int = 128  # strings without maxLength (and the cap of a larger maxLength)
    max_items: int = 16  # arrays without maxItems; keys of untyped objects
    max_digits: int = 15  # integer digits when no bound says otherwise
    max_fraction_digits: int = 6
    max_depth: int = 3  # nesting of untyped ("any JSON") values
    max_indent: int = 16  # spaces after a newline between JSON tokens
    max_repeat: int = 32  # unbounded regex repeats (* +) in patterns
    max_nesting: int = 48  # nesting of schemas inside each other
    max_min_count: int = 4096  # largest minLength / minItems that is generated in full
    max_work: int = 200_000  # grammar nodes built per schema (about linear in the schema's size)
    max_seconds: float = 2.0  # compile CPU time per schema
    # refused as bombs (None: accepted, and capped or built once as above); the 198 schemas of
    # JSONSchemaBench stay far below: bounds up to 65,535, expansions up to 74,000 nodes
    max_bound: int | None = 1_000_000  # largest maxLength / maxItems / maxProperties
    max_expansion: int | None = 1_000_000  # schema nodes with every $ref written out
    # strings without maxLength end only when the model closes them (or max_tokens runs out):
    # one automaton state instead of one per length, so masks are computed once per string kind
    open_strings: bool = False


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


class SchemaBuilder:
    def __init__(self, root_schema: Any, options: JsonOptions, yaml: bool):
        self.o = options
        self.yaml = yaml
        self.rules: dict[str, Node] = {}
        self.problems: list[str] = []
        self.n_problems = 0
        self.unenforced: list[str] = []
        self._refs: dict[tuple, str] = {}
        self._bad: dict[str, str] = {}  # memo rules whose schema had a problem
        self._validators: dict[int, Any] = {}
        self._n = 0
        self.work = 0
        # CPU time of this thread: a busy machine slows the compile, not the budget
        self.deadline = time.thread_time() + options.max_seconds
        self.set_root(root_schema)
        ws_tail = seq("\n", rep(" ", 0, options.max_indent))
        self.ws = self._rule("ws", opt(alt(" ", ws_tail)))
        self.sep = self._rule("comma", seq(",", self.ws))  # between members / items
        self.colon = lit(": ") if yaml else self._rule("colon", seq(opt(" "), ":", self.ws))
        self.char = self._rule("char", alt(text_char('"\\'), seq("\\", byte_set('"\\nrt'))))

    def set_root(self, schema: Any) -> None:
        """The document local ``$ref``s resolve against (each tool's own parameters schema)."""
        self.root = schema
        if self.o.max_expansion is not None:
            self._check_expansion(schema, self.o.max_expansion)

    def _check_expansion(self, root: Any, limit: int) -> None:
        """Refuse a schema whose references, written out, exceed ``limit`` nodes. Linear: each
        reference target is measured once; a recursive reference counts as one node (the
        grammar builds recursion as a rule), and so does anything nested past the guard depth
        (the builder refuses such nesting itself)."""
        sizes: dict[str, int] = {}
        open_refs: set[str] = set()
        worst: dict[str, Any] = {"size": 0, "ref": "#"}

        def size(node: Any, depth: int) -> int:
            if depth > 200 or not isinstance(node, (dict, list)):
                return 1
            items = node.items() if isinstance(node, dict) else enumerate(node)
            n = 1
            for key, sub in items:
                if isinstance(node, dict) and key in ("$defs", "definitions"):
                    continue  # counted where they are referenced
                if key == "$ref" and isinstance(node, dict) and isinstance(sub, str):
                    n += ref_size(sub, depth)
                else:
                    n += size(sub, depth + 1)
                if n > limit:
                    return n
            return n

        def ref_size(ref: str, depth: int) -> int:
            if ref in open_refs or not ref.startswith("#"):
                return 1
            if ref not in sizes:
                target = _resolve_pointer(root, ref)
                open_refs.add(ref)
                sizes[ref] = size(target, depth + 1) if target is not None else 1
                open_refs.discard(ref)
                if sizes[ref] > worst["size"]:
                    worst.update(size=sizes[ref], ref=ref)
            return sizes[ref]

        if size(root, 0) > limit:
            raise SchemaTooLargeError(
                worst["ref"],
                detail=f"its references written out make more than {limit:,} schema nodes "
                f"(the largest from {worst['ref']}); a reference used several times at each "
                "level doubles the schema per level: share fewer references or flatten it",
            )

    def _rule(self, name: str, node: Node) -> Node:
        self._n += 1
        key = f"{name}#{self._n}"
        self.rules[key] = node
        return Ref(key)

    def problem(self, path: str, what: str) -> Node:
        self.n_problems += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"{path or '#'}: {what}")
        return lit("null")

    def spend(self, units: int, path: str) -> None:
        """Charge the compile budget; past it, stop with an error naming where the work went."""
        self.work += units
        if self.work > self.o.max_work or time.thread_time() > self.deadline:
            raise SchemaTooLargeError(
                path or "#",
                detail=f"the budget of {self.o.max_work} grammar nodes or {self.o.max_seconds:g} s "
                "of compiling ran out there; shrink that part (fewer alternatives, smaller bounds, "
                "fewer nested references)",
            )

    def is_valid(self, value: Any, schema: Any) -> bool:
        """``value`` against ``schema`` in the current root document (formats checked)."""
        import jsonschema

        v = self._validators.get(id(self.root))
        try:
            if v is None:
                root = self.root if isinstance(self.root, (dict, bool)) else {}
                cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft7Validator)
                v = self._validators[id(self.root)] = cls(root, format_checker=cls.FORMAT_CHECKER)
            return bool(v.evolve(schema=schema).is_valid(value))
        except Exception:  # noqa: BLE001 -- a schema jsonschema cannot use: not known valid
            return False

    # -- references and intersections --------------------------------------------------------------
    def lookup(self, ref: Any, path: str) -> Any:
        """The schema a local ``$ref`` points to, or None (a problem is recorded)."""
        where = f"{path}/$ref"
        if not isinstance(ref, str) or not ref.startswith("#"):
            self.problem(where, f"only local references (#/...) are supported, got {ref!r}")
            return None
        target = _resolve_pointer(self.root, ref)
        if target is None:
            self.problem(where, f"{ref} does not point into the schema")
            return None
        if not isinstance(target, (dict, bool)):
            self.problem(where, f"{ref} is not a schema")
            return None
        return target

    def flatten(self, schema: Any, path: str) -> dict | None:
        """``schema`` with its top-level ``$ref``s and ``allOf``s folded in (see ``schema_ops``)."""
        acc: dict = {}
        todo = [schema]
        hops = 0
        while todo:
            part = todo.pop()
            hops += 1
            self.spend(1, path)
            if hops > 512:
                self.problem(path, "$ref / allOf chain longer than 512 (a reference loop?)")
                return None
            if part is False:
                raise Unsatisfiable("schema false (or a part of allOf) allows no value")
            d = as_dict(part)
            if not isinstance(part, (dict, bool)):
                self.problem(
                    path, f"a schema must be an object or a boolean, got {type(part).__name__}"
                )
                return None
            assert d is not None
            if "$ref" in d:
                target = self.lookup(d["$ref"], path)
                if target is None:
                    return None
                todo.append(target)
                d = {k: v for k, v in d.items() if k != "$ref"}
            if "allOf" in d:
                subs = d["allOf"]
                if not isinstance(subs, list) or not subs:
                    self.problem(f"{path}/allOf", "must be a non-empty list of schemas")
                    return None
                todo.extend(subs)
                d = {k: v for k, v in d.items() if k != "allOf"}
            acc = intersect(acc, normalize_bounds(d))
        return acc if self._bounds_accepted(acc, path) else None

    def _bounds_accepted(self, s: dict, path: str) -> bool:
        """False (a problem recorded) for a length/count bound above ``max_bound``."""
        limit = self.o.max_bound
        for key in ("maxLength", "maxItems", "maxProperties", "maxContains"):
            bound = s.get(key)
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            if limit is not None and isinstance(bound, (int, float)) and bound > limit:
                self.problem(
                    path,
                    f"{key} {bound:,} is above the largest bound accepted ({limit:,}); no output "
                    "comes near it: lower it or leave it out",
                )
                return False
        return True

    def _only_ref(self, schema: dict) -> bool:
        return "$ref" in schema and not any(
            k in ENFORCED or k in CHECKED_AFTER for k in schema if k != "$ref"
        )

    def memo_rule(self, key: tuple, build: Any) -> Node:
        """One named rule per key: a schema reached again (recursion, fan-out) costs nothing."""
        name = self._refs.get(key)
        if name is None:
            self._n += 1
            name = self._refs[key] = f"memo#{self._n}"
            self.rules[name] = EMPTY  # placeholder while the target (maybe recursive) is built
            n_before = self.n_problems
            self.rules[name] = build()
            if self.n_problems > n_before:  # every later use must fail the same way
                self._bad[name] = (self.problems[n_before : n_before + 1] or ["#: unsupported"])[0]
        elif name in self._bad:
            where, _, what = self._bad[name].partition(": ")
            self.problem(where, what)
        return Ref(name)

    def ref_rule(self, ref: str, path: str, depth: int, build: Any, indent: int = -1) -> Node:
        """The rule of a ``$ref`` (per YAML indent)."""
        if not isinstance(ref, str):
            self.lookup(ref, path)  # records the problem
            return lit("null")
        key = (id(self.root), "$ref", ref, indent)
        if key not in self._refs:
            target = self.lookup(ref, path)
            if target is None:
                return lit("null")
            return self.memo_rule(key, lambda: build(target, ref, depth + 1))
        return self.memo_rule(key, lambda: EMPTY)

    def note(self, path: str, what: str) -> None:
        if len(self.unenforced) < _MAX_PROBLEMS:
            self.unenforced.append(f"{path or '#'}: {what}")

    def _note_unenforced(self, s: dict, path: str) -> None:
        for k in CHECKED_AFTER:
            if k in s:
                self.note(path, k)
        for k in s.get("_unenforced", ()):
            self.note(path, f"a second {k}")

    # -- dispatch ----------------------------------------------------------------------------------
    def value(self, schema: Any, path: str, depth: int = 0) -> Node:
        """A value in flow context (JSON text, or a YAML flow value)."""
        self.spend(1, path)
        if depth > self.o.max_nesting:
            return self.problem(
                path, f"schemas nest more than {self.o.max_nesting} levels deep; flatten the schema"
            )
        if schema is True or schema == {}:
            return self.any_value(self.o.max_depth)
        if schema is False:
            return self.problem(path, "schema false allows no value")
        if not isinstance(schema, dict):
            return self.problem(
                path, f"a schema must be an object or a boolean, got {type(schema).__name__}"
            )
        if self._only_ref(schema):
            return self.ref_rule(
                schema["$ref"], path, depth, lambda t, ref, d: self.value(t, ref, d)
            )
        try:
            s = self.flatten(schema, path)
        except Unsatisfiable as exc:
            return self.problem(path, str(exc))
        if s is None:
            return lit("null")
        self._note_unenforced(s, path)
        if "const" in s or "enum" in s:
            return self.enum(s, schema, path)
        for key in ("anyOf", "oneOf"):
            if key in s:
                return self.union(key, s, path, depth)
        types = self.types_of(s, path)
        if types is None:
            return self.any_value(self.o.max_depth)
        return alt(*[self.typed(t, s, path, depth) for t in types])

    def enum(self, s: dict, original: Any, path: str) -> Node:
        """The listed values that satisfy the whole schema (type, bounds, other branches...)."""
        values = [s["const"]] if "const" in s else s["enum"]
        if not isinstance(values, list) or not values:
            return self.problem(path, "enum must be a non-empty list")
        self.spend(len(values), path)
        ok = [v for v in values if self.is_valid(v, original)]
        if not ok:
            return self.problem(path, "no value of enum/const satisfies the rest of the schema")
        return alt(*[self.literal(v, path) for v in ok])

    def union(self, key: str, s: dict, path: str, depth: int) -> Node:
        branches = s[key]
        if not isinstance(branches, list) or not branches:
            return self.problem(f"{path}/{key}", "must be a non-empty list of schemas")
        rest = {  # the assertions next to the union apply to every branch (annotations do not)
            k: v
            for k, v in s.items()
            if k != key and (k in ENFORCED or k in CHECKED_AFTER or k == "_unenforced")
        }
        if key == "oneOf" and not self._disjoint(branches, rest, path):
            self.note(path, "oneOf branches that may overlap")
        nodes = []
        first_dropped = ""
        for i, b in enumerate(branches):
            mark = self._mark()
            n_before = mark[0]
            where = f"{path}/{key}/{i}"
            if b is False:
                continue
            merged = both(rest, b) if rest else b
            memo = small_key(merged)
            if memo is not None:  # the same branch with the same siblings: built once
                node = self.memo_rule(
                    (id(self.root), "branch", memo),
                    lambda m=merged, w=where: self.value(m, w, depth + 1),
                )
            else:
                node = self.value(merged, where, depth + 1)
            if self.n_problems == n_before:
                nodes.append(node)
            elif len(branches) > 1:
                first_dropped = first_dropped or "".join(self.problems[n_before : n_before + 1])
                self._drop_branch(mark)
            else:
                nodes.append(node)
        if not nodes:
            why = f" (the first: {first_dropped})" if first_dropped else ""
            return self.problem(path, f"no branch of {key} allows a value{why}")
        return alt(*nodes)

    def _mark(self) -> tuple[int, int]:
        """Where the problems and the unenforced notes stand, to drop a branch's own later."""
        return self.n_problems, len(self.unenforced)

    def _drop_branch(self, mark: tuple[int, int]) -> None:
        """An unsatisfiable or unsupported branch of a union (or an optional property) is left
        out, others still serve: its problems go, and so do its notes, since what is not generated
        needs no enforcing."""
        n_before, notes_before = mark
        del self.problems[n_before:]
        self.n_problems = n_before
        del self.unenforced[notes_before:]

    def _disjoint(self, branches: list, rest: dict, path: str) -> bool:
        """True when no value can match two branches (distinct types, or distinct tag values)."""
        if len(branches) > 32:
            return False
        flat = []
        for b in branches:
            try:
                f = self.flatten(both(rest, b) if rest else b, path)
            except Unsatisfiable:
                f = None
            flat.append(f or {})
        for i in range(len(flat)):
            for j in range(i):
                if not _exclusive(flat[i], flat[j], self):
                    return False
        return True

    def types_of(self, schema: dict, path: str) -> list[str] | None:
        t = schema.get("type")
        if t is None:
            inferred = [name for name, keys in BY_TYPE.items() if keys & set(schema)]
            return inferred or None
        types = t if isinstance(t, list) else [t]
        if "any" in types:
            return None
        bad = [x for x in types if x not in TYPES]
        if bad or not types:
            self.problem(path, f"unknown type {bad or t!r}")
            return ["null"]
        if "number" in types and "integer" in types:
            types = [x for x in types if x != "integer"]
        return list(dict.fromkeys(types))

    def typed(self, t: str, schema: dict, path: str, depth: int) -> Node:
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
            return self.array(schema, path, depth)
        return self.object(schema, path, depth)

    def literal(self, value: Any, path: str) -> Node:
        try:
            return lit(_render(value, self.yaml))
        except (ValueError, RecursionError) as exc:
            return self.problem(path, str(exc))

    # -- scalars -----------------------------------------------------------------------------------
    def _count(self, schema: dict, lo_key: str, hi_key: str, cap: int, path: str):
        """(lo, hi) of a length/count, hi capped at max(lo, cap); None (a problem) if malformed."""
        lo, hi = schema.get(lo_key, 0), schema.get(hi_key)
        if isinstance(lo, float) and lo.is_integer():
            lo = int(lo)
        if isinstance(hi, float) and hi.is_integer():
            hi = int(hi)
        if (
            isinstance(lo, bool)
            or not isinstance(lo, int)
            or lo < 0
            or (hi is not None and (isinstance(hi, bool) or not isinstance(hi, int)))
        ):
            self.problem(path, f"bad {lo_key}/{hi_key} ({lo!r}, {hi!r})")
            return None
        if hi is not None and hi < lo:
            self.problem(path, f"{lo_key} {lo} is above {hi_key} {hi}: no value fits")
            return None
        if lo > self.o.max_min_count:
            self.problem(
                path, f"{lo_key} {lo} is larger than this server generates ({self.o.max_min_count})"
            )
            return None
        cap = max(lo, cap)
        hi = cap if hi is None else min(hi, cap)
        self.spend(hi + 1, path)
        return lo, hi

    def string(self, schema: dict, path: str) -> Node:
        counts = self._count(schema, "minLength", "maxLength", self.o.max_string_length, path)
        if counts is None:
            return lit("null")
        lo, hi = counts
        fmt, pattern = schema.get("format"), schema.get("pattern")
        if not isinstance(fmt, str) or fmt not in FORMATS:
            fmt = None  # unknown formats are annotations, as validators treat them
        if pattern is not None or fmt is not None:
            if pattern is not None and fmt is not None:
                self.note(path, f"format {fmt!r} next to a pattern")
            regex = pattern if pattern is not None else FORMATS[fmt or ""]
            if not isinstance(regex, str):
                return self.problem(path, "pattern must be a string")
            self.spend(len(regex), path)
            max_len = schema.get("maxLength") if isinstance(schema.get("maxLength"), int) else None
            try:
                shortest = _length_range(regex_node(regex, _ONE_CHAR, max_repeat=0))[0]
                if max_len is not None and shortest > max_len:
                    return self.problem(
                        path, f"the pattern needs {shortest} characters, over maxLength: no value"
                    )
                repeat = self._repeat_for_length(regex, lo, max_len)
                if repeat is None:
                    self.note(path, "minLength/maxLength next to a pattern or format")
                    repeat = self.o.max_repeat
                body = regex_node(regex, _json_char_for, max_repeat=repeat)
            except (RegexError, RecursionError) as exc:
                return self.problem(f"{path}/pattern", str(exc))
            return seq('"', body, '"')
        if self.o.open_strings and schema.get("maxLength") is None:
            return seq('"', Rep(self.char, lo, None), '"')  # one state per string: masks reused
        return seq('"', Rep(self.char, lo, hi), '"')

    def _repeat_for_length(self, regex: str, lo: int, hi: int | None) -> int | None:
        """A cap on the pattern's open repeats under which every match has lo..hi characters
        (the grammar is then exact), or None when no cap does it."""
        caps = [self.o.max_repeat]
        if hi is not None:
            caps += list(range(min(self.o.max_repeat, hi), -1, -1))[:40]
        for cap in caps:
            mn, mx = _length_range(regex_node(regex, _ONE_CHAR, max_repeat=cap))
            if mn >= lo and (hi is None or mx <= hi):
                return cap
            if mn < lo:
                return None  # lowering the cap only shortens the matches
        return None

    def _bounds(self, schema: dict, path: str) -> tuple[float | None, float | None, bool, bool]:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        lo_ex = hi_ex = False
        if xlo is not None and not isinstance(xlo, bool):
            lo, lo_ex = (xlo, True) if lo is None or _num(xlo) and xlo >= lo else (lo, False)
        if xhi is not None and not isinstance(xhi, bool):
            hi, hi_ex = (xhi, True) if hi is None or _num(xhi) and xhi <= hi else (hi, False)
        for name, v in (("minimum", lo), ("maximum", hi)):
            if v is not None and not _num(v):
                self.problem(path, f"{name} must be a finite number, got {v!r}")
                return None, None, False, False
        return lo, hi, lo_ex, hi_ex

    def _int_bounds(self, schema: dict, path: str) -> tuple[int, int] | None:
        """Integer range within the bounds, clamped to ``max_digits`` digits around them."""
        lo, hi, lo_ex, hi_ex = self._bounds(schema, path)
        ilo = None if lo is None else (math.floor(lo) + 1 if lo_ex else math.ceil(lo))
        ihi = None if hi is None else (math.ceil(hi) - 1 if hi_ex else math.floor(hi))
        big = 10**self.o.max_digits - 1
        if ilo is not None and ihi is not None and ilo > ihi:
            return None
        # clamp to a window of at most `big` values that lies inside the bounds
        if ilo is None and ihi is None:
            ilo, ihi = -big, big
        elif ilo is None:
            ilo = min(-big, ihi - big)
        elif ihi is None:
            ihi = max(big, ilo + big)
        assert ilo is not None and ihi is not None  # each branch above set both
        if ilo < -big and ihi > big:
            ilo, ihi = -big, big
        elif ihi - ilo > 2 * big:
            ilo, ihi = (ilo, ilo + big) if ilo > -big else (ihi - big, ihi)
        self.spend(min(4 * len(str(ihi)), 200), path)
        return ilo, ihi

    def integer(self, schema: dict, path: str) -> Node:
        bounds = self._int_bounds(schema, path)
        if bounds is None:
            return self.problem(path, "no integer lies between minimum and maximum")
        return _int_node(*bounds)

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
            return self._between(schema, path)
        ilo, ihi = bounds
        if _huge(ilo, ihi):
            return _int_node(ilo, ihi)
        alts = [int_range(ilo, ihi)]
        if max(0, ilo) <= ihi - 1:  # i.fff in [i, i+1) stays inside when i and i+1 do
            alts.append(seq(int_range(max(0, ilo), ihi - 1), frac))
        if max(0, -ihi) <= -ilo - 1:  # -(i.fff) in (-(i+1), -i]
            alts.append(seq("-", int_range(max(0, -ihi), -ilo - 1), frac))
        return alt(*alts)

    def _between(self, schema: dict, path: str) -> Node:
        """Bounds with no integer between them: the bounds themselves and their midpoint."""
        lo, hi, lo_ex, hi_ex = self._bounds(schema, path)
        if lo is None or hi is None or lo > hi or (lo == hi and (lo_ex or hi_ex)):
            return self.problem(path, "no number lies between minimum and maximum")
        values = [(lo + hi) / 2] + ([] if lo_ex else [lo]) + ([] if hi_ex else [hi])
        ok = [v for v in dict.fromkeys(values) if self.is_valid(v, schema)]
        if not ok:
            return self.problem(path, "no number lies between minimum and maximum")
        return alt(*[self.literal(v, path) for v in ok])

    # -- containers --------------------------------------------------------------------------------
    def _item(self, schema: Any, path: str, depth: int) -> Node:
        return self._rule("item", self.value(schema, path, depth + 1))

    def array(self, schema: dict, path: str, depth: int) -> Node:
        items = schema.get("items", True)
        prefix: list = []
        if isinstance(schema.get("prefixItems"), list):
            prefix, rest = schema["prefixItems"], items
            if not self._draft_2019():  # older drafts ignore prefixItems: items covers them too
                prefix = [both(p, items) for p in prefix]
        elif isinstance(items, list):
            prefix, rest = items, schema.get("additionalItems", True)
        else:
            rest = items
        counts = self._count(
            schema, "minItems", "maxItems", max(self.o.max_items, len(prefix)), path
        )
        if counts is None:
            return lit("null")
        lo, hi = counts
        if rest is False:
            hi = min(hi, len(prefix))
            if lo > hi:
                return self.problem(path, f"minItems {lo} needs more items than the schema allows")
        if schema.get("uniqueItems") is True and hi > 1 and not prefix:
            unique = self._unique_enum_array(rest, lo, hi, path)
            if unique is not None:
                return unique
            self.note(path, "uniqueItems")
        elif schema.get("uniqueItems") is True and hi > 1:
            self.note(path, "uniqueItems")
        if not prefix:
            return self.bracketed("[", "]", self._item(rest, f"{path}/items", depth), lo, hi)
        nodes = [
            self._item(
                p, f"{path}/{'prefixItems' if 'prefixItems' in schema else 'items'}/{i}", depth
            )
            for i, p in enumerate(prefix[:hi])
        ]
        n = len(nodes)
        tail: Node = EMPTY
        if hi > n:  # items beyond the prefix
            more = self._item(rest, f"{path}/items", depth)
            tail = Rep(seq(self.sep, more), max(lo - n, 0), hi - n)
        # built explicitly: elements 1..n in order, stopping anywhere at or after minItems
        chain: Node = tail if hi > n else EMPTY
        for k in range(n - 1, 0, -1):
            step = seq(self.sep, nodes[k], chain)
            chain = alt(step, EMPTY) if k >= lo else step
        first = seq(nodes[0], chain)
        return seq("[", self.ws, first if lo > 0 else opt(first), self.ws, "]")

    def _draft_2019(self) -> bool:
        meta = self.root.get("$schema", "") if isinstance(self.root, dict) else ""
        return isinstance(meta, str) and ("2020-12" in meta or "2019-09" in meta)

    def _unique_enum_array(self, items: Any, lo: int, hi: int, path: str) -> Node | None:
        """Arrays of distinct enum values: a subsequence of the enum, in order (always unique)."""
        if items is True or not isinstance(items, dict):
            return None
        try:
            s = self.flatten(items, path)
        except Unsatisfiable:
            return None
        if not s or ("enum" not in s and "const" not in s and s.get("type") != "boolean"):
            return None
        values = (
            [True, False]
            if s.get("type") == "boolean" and "enum" not in s
            else ([s["const"]] if "const" in s else s["enum"])
        )
        if not isinstance(values, list):
            return None
        ok, seen = [], set()
        for v in values:
            key = canonical(v)
            if key not in seen and self.is_valid(v, items):
                seen.add(key)
                ok.append(v)
        if len(ok) > hi or len(ok) < lo or lo > 1:
            return None  # count bounds a plain subsequence does not respect
        members = [(self.literal(v, path), False) for v in ok]
        body = self._sequence(members, self.sep, allow_empty=lo == 0)
        return seq("[", self.ws, body, self.ws, "]")

    def bracketed(self, open_: str, close: str, item: Node, lo: int, hi: int) -> Node:
        if hi == 0:
            return seq(open_, self.ws, close)
        body = seq(item, Rep(seq(self.sep, item), max(lo - 1, 0), hi - 1))
        return seq(open_, self.ws, body if lo > 0 else opt(body), self.ws, close)

    def _members(self, schema: dict, path: str) -> list[tuple[str, Any, bool]] | None:
        """(name, schema, required) of the generated properties, in order; None: a problem."""
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, dict) or not isinstance(required, list):
            self.problem(path, "properties must be an object and required a list")
            return None
        if not all(isinstance(r, str) for r in required):
            self.problem(f"{path}/required", "must list property names (strings)")
            return None
        self.spend(len(props) + len(required), path)
        required_names = set(required)
        members: list[tuple[str, Any, bool]] = []
        for name in list(props) + [r for r in dict.fromkeys(required) if r not in props]:
            sub = member_schema(schema, name)
            if sub is None:
                self.note(f"{path}/patternProperties", "a pattern Python's re cannot read")
                sub = props.get(name, True)
            if sub is False:
                if name in required_names:
                    self.problem(path, f"required property {name!r} is not allowed by the schema")
                    return None
                continue
            members.append((name, sub, name in required_names))
        names = schema.get("propertyNames")
        if names is not None and names is not True:
            kept = []
            for m in members:
                if self.is_valid(m[0], names):
                    kept.append(m)
                elif m[2]:
                    self.problem(path, f"required property {m[0]!r} fails propertyNames")
                    return None
            members = kept
        n_req = sum(1 for m in members if m[2])
        min_p, max_p = schema.get("minProperties", 0), schema.get("maxProperties")
        if isinstance(min_p, int) and min_p > n_req:
            promote = min_p - n_req  # the first optional properties become required
            promoted = []
            for name, sub, req in members:
                if not req and promote > 0:
                    promote -= 1
                    promoted.append((name, sub, True))
                else:
                    promoted.append((name, sub, req))
            if promote > 0 and members:
                self.note(path, "minProperties")
            members = promoted
        if isinstance(max_p, int) and not isinstance(max_p, bool) and len(members) > max_p:
            n_req = sum(1 for m in members if m[2])
            if n_req > max_p:
                self.problem(path, f"maxProperties {max_p} is less than the required properties")
                return None
            room = max_p - n_req  # only the first optional properties are offered
            out = []
            for m in members:
                if m[2] or room > 0:
                    room -= 0 if m[2] else 1
                    out.append(m)
            members = out
        return members

    def object(self, schema: dict, path: str, depth: int) -> Node:
        members = self._members(schema, path)
        if members is None:
            return lit("null")
        if not members:
            return self._free_object(schema, path, depth)
        nodes = []
        for name, sub, req in members:
            mark = self._mark()
            value = self._item(sub, f"{path}/properties/{name}", depth)
            if self.n_problems > mark[0] and not req:
                self._drop_branch(mark)  # an optional property we cannot generate is left out
                continue
            nodes.append((seq(lit(json.dumps(name)), self.colon, value), req))
        if not nodes:
            return seq("{", self.ws, "}")
        body = self._sequence(nodes, self.sep, allow_empty=True)
        return seq("{", self.ws, body, self.ws, "}")

    def _free_object(self, schema: dict, path: str, depth: int) -> Node:
        """An object that names no property: keys from its one pattern, or any key when
        additionalProperties gives a schema; otherwise ``{}``."""
        pats = schema.get("patternProperties") or {}
        extra = schema.get("additionalProperties", True)
        min_p = schema.get("minProperties", 0)
        min_p = min_p if isinstance(min_p, int) and not isinstance(min_p, bool) else 0
        max_p = schema.get("maxProperties")
        hi = self.o.max_items if not isinstance(max_p, int) else min(max_p, self.o.max_items)
        if "propertyNames" in schema or min_p > hi:
            if min_p > 0:
                return self.problem(path, "minProperties without named properties is not supported")
            return seq("{", self.ws, "}")
        if isinstance(pats, dict) and len(pats) == 1:
            ((pat, sub),) = pats.items()
            try:
                key = regex_node(str(pat), _json_char_for, max_repeat=8)
            except (RegexError, RecursionError) as exc:
                if min_p > 0:
                    return self.problem(f"{path}/patternProperties", str(exc))
                return seq("{", self.ws, "}")
            value = self._item(sub, f"{path}/patternProperties/{pat}", depth)
            pair = seq('"', key, '"', self.colon, value)
            if min_p > 1:  # a repeated key would count once
                self.note(path, "distinct keys of patternProperties")
            return self.bracketed("{", "}", self._rule("pair", pair), min_p, hi)
        if not pats and extra is not False and (extra not in (True, {}) or min_p > 0):
            value = self._item(
                extra if isinstance(extra, dict) else {}, f"{path}/additionalProperties", depth
            )
            pair = seq(self.string({}, path), self.colon, value)
            if min_p > 1:
                self.note(path, "distinct keys of additionalProperties")
            return self.bracketed("{", "}", self._rule("pair", pair), min_p, hi)
        if min_p > 0:
            return self.problem(path, "minProperties without named properties is not supported")
        return seq("{", self.ws, "}")

    def _sequence(self, members: list[tuple[Node, bool]], sep: Node, allow_empty: bool) -> Node:
        """Members in order, required ones always, optional ones maybe, ``sep`` between present
        ones.

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
                seq('"', Rep(self.char, 0, self.o.max_string_length), '"'),
                self.number({}, ""),
                lit("true"),
                lit("false"),
                lit("null"),
            ]
            if depth > 0:
                inner = self.any_value(depth - 1)
                pair = seq(scalars[0], self.colon, inner)
                scalars.append(self.bracketed("[", "]", inner, 0, self.o.max_items))
                scalars.append(self.bracketed("{", "}", pair, 0, self.o.max_items))
            self.rules[key] = alt(*scalars)
        return Ref(key)

    # -- YAML block style --------------------------------------------------------------------------
    def block_value(self, schema: Any, path: str, indent: int, depth: int = 0) -> Node:
        """What follows ``key:`` in a YAML block mapping: `` scalar`` / `` [flow]`` or a nested
        block."""
        self.spend(1, path)
        if (
            not isinstance(schema, dict)
            or indent > 2 * _YAML_BLOCK_DEPTH
            or depth > self.o.max_nesting
        ):
            return seq(" ", self.value(schema, path, depth))
        if self._only_ref(schema):
            return self.ref_rule(
                schema["$ref"],
                path,
                depth,
                lambda t, ref, d: self.block_value(t, ref, indent, d),
                indent,
            )
        try:
            s = self.flatten(schema, path)
        except Unsatisfiable:
            s = None
        if (
            s is not None
            and self.types_of(s, path) == ["object"]
            and not any(k in s for k in ("const", "enum", "anyOf", "oneOf"))
            and (s.get("properties") or s.get("required"))
        ):
            self._note_unenforced(s, path)
            members = self._members(s, path)
            if members is None:
                return lit("null")
            pad = " " * indent
            nodes = [
                (
                    seq(
                        pad,
                        lit(yaml_key(name)),
                        ":",
                        self.block_value(sub, f"{path}/properties/{name}", indent + 2, depth + 1),
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
        return seq(" ", self.value(schema, path, depth))


def _resolve_pointer(root: Any, ref: str) -> Any:
    """What the local reference ``ref`` ("#/a/b") points to in ``root``, or None."""
    target: Any = root
    for raw in [p for p in ref[1:].split("/") if p]:
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        elif isinstance(target, dict) and part in target:
            target = target[part]
        else:
            return None
    return target


def _ONE_CHAR(cs: CharSet) -> Node:  # noqa: N802 -- a constant-like emitter for measuring
    return lit("x")


def _length_range(node: Node) -> tuple[int, float]:
    """Fewest and most characters a measuring regex node (one byte per character) matches."""
    if isinstance(node, Lit):
        return len(node.data), len(node.data)
    if isinstance(node, Seq):
        parts = [_length_range(n) for n in node.items]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if isinstance(node, Alt):
        parts = [_length_range(n) for n in node.items]
        return min(p[0] for p in parts), max(p[1] for p in parts)
    if isinstance(node, Rep):
        mn, mx = _length_range(node.item)
        return node.lo * mn, (math.inf if node.hi is None else node.hi * mx)
    return 1, 1  # a byte set


def _huge(lo: int, hi: int) -> bool:
    return max(len(str(lo)), len(str(hi))) > 40


def _int_node(lo: int, hi: int) -> Node:
    """Integers lo..hi; beyond 40 digits only the two ends (the digit grammar would be large)."""
    if _huge(lo, hi):
        return alt(lit(str(lo)), lit(str(hi)))
    return int_range(lo, hi)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _exclusive(a: dict, b: dict, builder: SchemaBuilder) -> bool:
    """True when ``a`` and ``b`` (flat schemas) share no value: by type, or by a tag property."""
    ta, tb = a.get("type"), b.get("type")
    if ta is not None and tb is not None:
        sa = set(ta if isinstance(ta, list) else [ta])
        sb = set(tb if isinstance(tb, list) else [tb])
        sa |= {"integer"} if "number" in sa else set()
        sb |= {"integer"} if "number" in sb else set()
        if not sa & sb:
            return True
    for s, t in ((a, b), (b, a)):
        vals = _tag_values(s)
        if vals is not None and all(not builder.is_valid(v, t) for v in vals):
            return True
    props_a, props_b = a.get("properties") or {}, b.get("properties") or {}
    common = set(required_names(a)) & set(required_names(b))
    for name in common:
        va, vb = props_a.get(name), props_b.get(name)
        if isinstance(va, dict) and isinstance(vb, dict):
            xa, xb = _tag_values(va), _tag_values(vb)
            if (
                xa is not None
                and xb is not None
                and not {canonical(x) for x in xa} & {canonical(x) for x in xb}
            ):
                return True
    return False


def _tag_values(s: dict) -> list | None:
    if "const" in s:
        return [s["const"]]
    if isinstance(s.get("enum"), list):
        return s["enum"]
    return None


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


@functools.lru_cache(maxsize=256)  # nodes are immutable: the same bounds share one node
def int_range(lo: int, hi: int) -> Node:
    """Integers lo..hi in canonical decimal (no leading zeros, no ``-0``)."""
    alts = []
    if lo < 0:
        alts.append(seq("-", _nonneg_range(max(1, -hi), -lo)))
    if hi >= 0:
        alts.append(_nonneg_range(max(lo, 0), hi))
    return alt(*alts)


def finish_grammar(b: SchemaBuilder, root: Node, name: str, lead: bool = True) -> Grammar:
    """The grammar, or every problem found; ``lead``: allow the space a chat answer starts with."""
    if b.problems:
        raise SchemaUnsupportedError(b.problems, total=b.n_problems)
    g = Grammar(seq(opt(" "), root) if lead else root, b.rules, name=name)
    g.unenforced = tuple(b.unenforced)
    return g


def json_schema_grammar(
    schema: Any, options: JsonOptions | None = None, *, yaml: bool = False
) -> Grammar:
    """A grammar for JSON text (or a YAML flow value) valid against ``schema``."""
    b = SchemaBuilder(schema, options or JsonOptions(), yaml)
    try:
        root = b.value(schema, "")
    except RecursionError:  # guarded by max_nesting; kept as a last line of defence
        raise SchemaTooLargeError("#", detail="it nests too deeply to compile") from None
    return finish_grammar(b, root, "json-schema")


def json_value_grammar(options: JsonOptions | None = None, *, object_only: bool = True) -> Grammar:
    """Any JSON (an object by default, as OpenAI's json_object mode), nesting bounded by
    max_depth."""
    b = SchemaBuilder({}, options or JsonOptions(), False)
    depth = b.o.max_depth
    if object_only:
        inner = b.any_value(depth - 1)
        pair = seq('"', Rep(b.char, 0, b.o.max_string_length), '"', b.colon, inner)
        root = b.bracketed("{", "}", pair, 0, b.o.max_items)
    else:
        root = b.any_value(depth)
    return finish_grammar(b, root, "json")


def json_schema_node(builder: SchemaBuilder, schema: Any) -> Node:
    return builder.value(schema, "")
