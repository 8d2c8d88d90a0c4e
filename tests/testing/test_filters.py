"""Secret filters: what they hide, what they refuse, and that a secret never survives them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.testing.filters import PLACEHOLDER, CassetteConfigError, Filters


def test_default_filters_hide_authorization_headers_and_api_keys():
    f = Filters.from_config({})
    assert f.text("Authorization: Bearer abc.def-123456") == f"Authorization: Bearer {PLACEHOLDER}"
    assert f.text("GET /v1?api_key=XYZ789&q=1") == f"GET /v1?api_key={PLACEHOLDER}&q=1"
    assert f.text('{"x-api-key": "k-1"}') == json.dumps({"x-api-key": PLACEHOLDER})
    assert f.text("no secrets here") == "no secrets here"


def test_keys_are_hidden_in_data_and_in_json_strings():
    f = Filters.from_config({"filter_keys": ["Password"]})
    data = {"user": "ann", "password": "pw-1234", "nested": [{"PASSWORD": "pw-5678"}]}
    assert f.value(data) == {
        "user": "ann",
        "password": PLACEHOLDER,
        "nested": [{"PASSWORD": PLACEHOLDER}],
    }
    call = '{"function": "login", "params": {"user": "ann", "password": "pw-1234"}}'
    assert "pw-1234" not in f.value(call) and json.loads(f.value(call))["params"]["user"] == "ann"
    assert f.value('{"password": broken json') == '{"password": broken json'  # left as text


def test_tool_inputs_are_replaced_whole_for_chosen_tools():
    f = Filters.from_config({"filter_tool_inputs": ["Vault"]})
    assert f.request("tool", {"tool": "vault", "input": "user ann"})["input"] == PLACEHOLDER
    assert f.request("tool", {"tool": "Search", "input": "user ann"})["input"] == "user ann"


def test_unset_secrets_from_the_environment_are_ignored():
    assert Filters.from_config({"filter_secrets": ["", None]}).secrets == ()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"filter_secret": ["x"]}, "unknown cassette option 'filter_secret'"),
        ({"filter_secrets": "sk-123456"}, "must be a list of strings, not str"),
        ({"filter_secrets": [123]}, "must hold strings"),
        ({"filter_secrets": ["abc"]}, "shorter than 4 characters"),
        ({"filter_secrets": ["a[b]cd"]}, "contains a bracket"),
        ({"filter_secrets": ["FILTER"]}, "part of the placeholder"),
        ({"filter_patterns": ["(unclosed"]}, "is not a regular expression"),
        ({"filter_patterns": ["token=\\w*"]}, None),
        ({"filter_patterns": ["\\w*"]}, "matches the empty string"),
    ],
)
def test_bad_configuration_is_a_clear_error(config, message):
    if message is None:  # the good neighbour of a bad case
        Filters.from_config(config)
        return
    with pytest.raises(CassetteConfigError, match=message):
        Filters.from_config(config)


_secret = st.text(alphabet=st.characters(blacklist_characters="[]"), min_size=4, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(_secret, min_size=1, max_size=3), st.lists(st.text(max_size=12), max_size=6))
def test_fuzz_no_secret_survives_filtering(secrets, pieces):
    secrets = [s for s in secrets if s not in PLACEHOLDER]
    if not secrets:
        return
    f = Filters.from_config({"filter_secrets": secrets})
    text = "".join(p + secrets[i % len(secrets)] for i, p in enumerate(pieces)) + "".join(pieces)
    out = f.value({"prompt": text, "params": {"stop": [text]}, "output": json.dumps({"k": text})})
    for s in secrets:
        assert s not in out["prompt"] and s not in out["params"]["stop"][0]
        assert s not in out["output"]
        try:  # a secret such as "0000" may cut through an escape (\\u00c0): then no JSON is left
            decoded = json.loads(out["output"])["k"]
        except ValueError:
            continue
        assert s not in decoded  # not even once the JSON is decoded
