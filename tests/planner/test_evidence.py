"""Substitution and graph properties, checked on generated plans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.planner import cap_evidence, parse_plan, substitute
from agent.planner.evidence import find_urls, only_reference
from agent.planner.plan import key_of

# Plain text holds no reference and cannot extend the one before it ("#E1" + "0" is "#E10").
_plain = st.text(alphabet="ab E0123456789[]evidnc\n", max_size=12).filter(
    lambda s: not s[:1].isdigit()
)
_ref = st.sampled_from([":evidence1:", ":evidence10:", "#E1", "#E10", ":evidence2:"])
_value = st.text(alphabet="xyz :#E0123456789evidnc", max_size=15)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_plain, _ref), max_size=6),
    _plain,
    st.dictionaries(_ref, _value, min_size=5, max_size=5),
)
def test_substitution_pastes_each_reference_once_and_never_rescans(parts, tail, values):
    # Plain text never ends in a digit and never starts a reference, so the boundaries are exact.
    text = "".join(p + r for p, r in parts) + tail
    values_by_key = {key_of(r): v for r, v in values.items()}
    expected = "".join(p + values[r] for p, r in parts) + tail
    assert substitute(text, values_by_key, None) == expected


def test_substitution_leaves_unknown_references_and_caps_values():
    values = {key_of("#E1"): "long value"}
    assert (
        substitute("#E1 #E2 #E10", values, 4) == "long\n[... truncated 6 characters ...] #E2 #E10"
    )
    assert cap_evidence("x" * 10, None) == "x" * 10


def test_only_reference_and_urls():
    assert only_reference(" :evidence5:. ") == key_of(":evidence5:")
    assert only_reference(":evidence5: and more") is None
    assert find_urls("see https://a.example/x, and (https://b.example/y). https://a.example/x") == [
        "https://a.example/x",
        "https://b.example/y",
    ]


@st.composite
def _dag_plans(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    lines = []
    for i in range(1, n + 1):
        deps = (
            draw(st.lists(st.integers(min_value=1, max_value=max(1, i - 1)), max_size=3))
            if i > 1
            else []
        )
        lines.append(f"#E{i} = T[{' '.join(f'#E{d}' for d in deps)} x]")
    return "\n".join(lines) + f"\nFinal answer: #E{n}"


@settings(max_examples=150, deadline=None)
@given(_dag_plans())
def test_layers_respect_every_dependency_and_are_as_early_as_possible(text):
    plan = parse_plan(text)
    layer_of = {s.id: i for i, layer in enumerate(plan.layers()) for s in layer}
    assert sorted(layer_of) == sorted(plan.ids)
    for step in plan.steps:
        deps = plan.dependencies(step.id)
        assert all(layer_of[d] < layer_of[step.id] for d in deps)
        assert layer_of[step.id] == (1 + max(layer_of[d] for d in deps) if deps else 0)
