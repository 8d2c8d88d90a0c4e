"""The prompt reproduces the model card's function-calling example byte for byte."""

from __future__ import annotations

import pytest

from agent.functions import FunctionDefinitionError, FunctionRegistry
from agent.functions.prompt import correction_prompt, param_description
from agent.llm.prompts import SYSTEM_PROMPT, chat_prompt

# The card's example prompt with its indentation (flattened by the page scrape) restored.
CARD_BODY = (
    "As an AI assistant, please select the most suitable function and parameters from the list of "
    "available functions below, based on the user's input. Provide your response in JSON format.\n"
    "\n"
    "Input: I want to know how many times 'Python' is mentioned in my text file.\n"
    "\n"
    "Available functions:\n"
    "file_analytics:\n"
    "  description: This tool performs various operations on a text file.\n"
    "  params:\n"
    '    action: The operation we want to perform on the data, such as "count_occurrences", '
    '"find_line", etc.\n'
    "    filters:\n"
    "      keyword: The word or phrase we want to search for."
)
CARD_INPUT = "I want to know how many times 'Python' is mentioned in my text file."


def test_json_prompt_is_the_card_example_in_the_chat_template(card_registry):
    assert card_registry.prompt_body(CARD_INPUT) == CARD_BODY
    assert card_registry.prompt(CARD_INPUT) == (f"{SYSTEM_PROMPT} USER: {CARD_BODY} ASSISTANT:")
    assert card_registry.prompt(CARD_INPUT) == chat_prompt(CARD_BODY)


def test_yaml_prompt_only_changes_the_format_word(card_registry):
    body = card_registry.prompt_body(CARD_INPUT, format="yaml")
    assert body == CARD_BODY.replace("in JSON format.", "in YAML format.")
    assert card_registry.prompt_body(CARD_INPUT, format="YML") == body


def test_unknown_format_is_refused(card_registry):
    with pytest.raises(ValueError, match="json' or 'yaml"):
        card_registry.prompt(CARD_INPUT, format="xml")


def test_card_shorthand_definitions_give_the_same_prompt(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(
        "- name: file_analytics\n"
        "  description: This tool performs various operations on a text file.\n"
        "  params:\n"
        '    action: The operation we want to perform on the data, such as "count_occurrences", '
        '"find_line", etc.\n'
        "    filters:\n"
        "      keyword: The word or phrase we want to search for.\n"
    )
    assert FunctionRegistry.from_file(path).prompt_body(CARD_INPUT) == CARD_BODY


def test_functions_are_listed_in_registration_order_with_nesting_and_fallbacks():
    reg = FunctionRegistry()
    reg.add(
        "b_first",
        "Multi-line\n   description.",
        {
            "type": "object",
            "properties": {
                "plain": {"type": "integer"},
                "choice": {"enum": ["x", "y"]},
                "described_choice": {
                    "type": "string",
                    "enum": ["up", "down"],
                    "description": "Direction.",
                },
                "named_choice": {
                    "type": "string",
                    "enum": ["up", "down"],
                    "description": "Go up or down.",
                },
                "deep": {
                    "type": "object",
                    "properties": {
                        "inner": {
                            "type": "object",
                            "properties": {"leaf": {"type": "boolean", "description": "A leaf."}},
                        }
                    },
                },
                "optional_obj": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "$defs": {"P": {"type": "object", "properties": {"q": {"description": "Q."}}}},
        },
    )
    reg.add("a_second", "No params.")
    assert reg.describe() == (
        "b_first:\n"
        "  description: Multi-line description.\n"
        "  params:\n"
        "    plain: An integer.\n"
        '    choice: One of: "x", "y".\n'
        '    described_choice: Direction. (one of: "up", "down")\n'
        "    named_choice: Go up or down.\n"
        "    deep:\n"
        "      inner:\n"
        "        leaf: A leaf.\n"
        "    optional_obj:\n"
        "      q: Q.\n"
        "    tags: A list of string values.\n"
        "a_second:\n"
        "  description: No params."
    )


def test_param_description_without_anything_says_any_value():
    assert param_description({}) == "Any value."
    assert param_description({"const": 3}) == "One of: 3."


def test_empty_registry_cannot_prompt():
    with pytest.raises(FunctionDefinitionError, match="no functions registered"):
        FunctionRegistry().prompt("hi")


def test_multiline_input_is_kept_and_outer_whitespace_trimmed(card_registry):
    body = card_registry.prompt_body("  line one\nline two \n")
    assert "\nInput: line one\nline two\n\nAvailable functions:\n" in body


def test_correction_prompt_is_a_second_chat_turn_naming_the_problem(card_registry):
    body = card_registry.prompt_body(CARD_INPUT)
    p = correction_prompt(body, " {bad ", "invalid_syntax: broken", "yaml")
    assert p.startswith(f"{SYSTEM_PROMPT} USER: {body} ASSISTANT: {{bad USER: Your response")
    assert "invalid_syntax: broken" in p
    assert "in YAML format" in p and "function: <name>" in p
    assert p.endswith(" ASSISTANT:")
    assert "(empty response)" in correction_prompt(body, "  ", "no_call", "json")
