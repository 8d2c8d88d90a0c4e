"""Scrub secrets from requests and responses before they are matched or written to a cassette.

The same filters run on a live request before it is looked up, so a request that carried a
secret when it was recorded still matches in CI, where the secret is different or absent.

- ``secrets``: literal strings (API keys, tokens) replaced wherever they appear;
- ``patterns``: regular expressions; the named group ``secret`` is replaced, or the whole match.
  The defaults catch ``Authorization:`` / ``api_key=`` style values and bearer tokens;
- ``keys``: JSON object keys whose values are replaced, in structured data and in strings that
  hold a JSON object (a function call's arguments, a tool's JSON output);
- ``tool_inputs``: tools whose whole input is replaced (the input of such a tool then matches
  any recorded input of it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AgentError

PLACEHOLDER = "[FILTERED]"
DEFAULT_PATTERNS = (
    r"(?i)\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?"
    r"(?P<secret>[^\s\"',;}]+)",
    r"(?i)\b(?:x-)?api[-_]?key\b[\"']?\s*[:=]\s*[\"']?(?P<secret>[^\s\"',;}&]+)",
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
)
DEFAULT_KEYS = ("authorization", "proxy-authorization", "api_key", "api-key", "apikey", "x-api-key")
CONFIG_KEYS = ("filter_secrets", "filter_patterns", "filter_keys", "filter_tool_inputs")


class CassetteConfigError(AgentError):
    """The cassette configuration (marker arguments or ``agent_cassette_config``) is invalid."""


@dataclass(frozen=True)
class Filters:
    secrets: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = field(
        default_factory=lambda: tuple(re.compile(p) for p in DEFAULT_PATTERNS)
    )
    keys: frozenset[str] = frozenset(DEFAULT_KEYS)
    tool_inputs: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Filters:
        """Filters from the plugin's configuration; the defaults are kept and added to."""
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise CassetteConfigError(
                f"unknown cassette option {', '.join(map(repr, unknown))}; the filter options "
                f"are {', '.join(CONFIG_KEYS)}"
            )
        secrets = tuple(s for s in _strings(config, "filter_secrets") if s)  # unset env -> ""
        for s in secrets:
            _check_secret(s)
        patterns = list(cls().patterns)
        for p in _strings(config, "filter_patterns"):
            try:
                compiled = re.compile(p)
            except re.error as exc:
                raise CassetteConfigError(
                    f"filter_patterns: {p!r} is not a regular expression: {exc}"
                ) from exc
            if compiled.fullmatch(""):  # it would put a placeholder between every character
                raise CassetteConfigError(
                    f"filter_patterns: {p!r} matches the empty string; make it match the secret"
                )
            patterns.append(compiled)
        keys = set(DEFAULT_KEYS) | {k.lower() for k in _strings(config, "filter_keys")}
        tools = frozenset(t.lower() for t in _strings(config, "filter_tool_inputs"))
        # each secret also as it appears inside JSON text (a tool's JSON output: 'a\\"b'),
        # longest first, so a secret that contains another is replaced whole
        forms = {f for s in secrets for f in (s, _escaped(s, False), _escaped(s, True))}
        ordered = tuple(sorted(forms, key=len, reverse=True))
        return cls(ordered, tuple(patterns), frozenset(keys), tools)

    def text(self, s: str) -> str:
        for secret in self.secrets:
            s = s.replace(secret, PLACEHOLDER)
        for pattern in self.patterns:
            s = pattern.sub(_replace_match, s)
        return s

    def value(self, obj: Any) -> Any:
        """``obj`` (JSON data) with every string scrubbed and every filtered key's value hidden."""
        if isinstance(obj, str):
            return self.text(self._json_string(obj))
        if isinstance(obj, list):
            return [self.value(x) for x in obj]
        if isinstance(obj, dict):
            return {
                k: PLACEHOLDER if str(k).lower() in self.keys else self.value(v)
                for k, v in obj.items()
            }
        return obj

    def request(self, kind: str, request: Mapping[str, Any]) -> dict[str, Any]:
        req = dict(request)
        if kind == "tool" and str(req.get("tool", "")).lower() in self.tool_inputs:
            req["input"] = PLACEHOLDER
        return self.value(req)

    def _json_string(self, s: str) -> str:
        """A string holding a JSON object with a filtered key, re-written with the key hidden."""
        body = s.strip()
        if not (body.startswith("{") and body.endswith("}")) or not self.keys:
            return s
        lowered = body.lower()
        if not any(k in lowered for k in self.keys):
            return s  # cheap test first: most strings have none of the keys
        try:
            data = json.loads(body)
        except ValueError:
            return s
        scrubbed = self.value(data)
        return s if scrubbed == data else json.dumps(scrubbed, ensure_ascii=False)


def _escaped(s: str, ascii_only: bool) -> str:
    return json.dumps(s, ensure_ascii=ascii_only)[1:-1]


def _replace_match(m: re.Match[str]) -> str:
    if "secret" in m.re.groupindex and m.group("secret") is not None:
        start, end = m.span("secret")
        return m.group(0)[: start - m.start()] + PLACEHOLDER + m.group(0)[end - m.start() :]
    return PLACEHOLDER


def _strings(config: Mapping[str, Any], key: str) -> list[str]:
    value = config.get(key) or ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise CassetteConfigError(f"{key} must be a list of strings, not {type(value).__name__}")
    items = list(value)
    for item in items:
        if item is not None and not isinstance(item, str):
            raise CassetteConfigError(f"{key} must hold strings; got {item!r}")
    return [i for i in items if i is not None]


def _check_secret(s: str) -> None:
    # A short secret would scrub ordinary text; brackets or a piece of the placeholder could
    # make the secret reappear around a placeholder, so such values are refused outright.
    if len(s) < 4:
        raise CassetteConfigError(
            f"filter_secrets: {s!r} is shorter than 4 characters and would filter ordinary "
            "text; give the whole secret"
        )
    if "[" in s or "]" in s or s in PLACEHOLDER:
        raise CassetteConfigError(
            f"filter_secrets: {s!r} contains a bracket or is part of the placeholder "
            f"{PLACEHOLDER}; use filter_patterns for it instead"
        )
