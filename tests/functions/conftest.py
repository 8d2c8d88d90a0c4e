from __future__ import annotations

import pytest

from agent.functions import FunctionRegistry

# The model card's example function, as a JSON Schema.
FILE_ANALYTICS_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "description": "The operation we want to perform on the "
            'data, such as "count_occurrences", "find_line", etc.',
        },
        "filters": {
            "type": "object",
            "properties": {
                "keyword": {
                    "type": "string",
                    "description": "The word or phrase we want to search for.",
                }
            },
            "required": ["keyword"],
        },
    },
    "required": ["action", "filters"],
}


@pytest.fixture
def card_registry() -> FunctionRegistry:
    reg = FunctionRegistry()
    reg.add(
        "file_analytics",
        "This tool performs various operations on a text file.",
        FILE_ANALYTICS_SCHEMA,
    )
    return reg


@pytest.fixture
def registry(card_registry: FunctionRegistry) -> FunctionRegistry:
    """The card's function plus typed ones exercising every schema feature the parser uses."""
    reg = card_registry
    reg.add(
        "set_country",
        "Sets the user's country.",
        {
            "type": "object",
            "properties": {
                "country": {"type": "string", "description": "ISO country code."},
                "postcode": {"type": "string"},
                "departure": {"type": "string", "description": "Time as HH:MM."},
                "notify": {"type": "boolean"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "note": {"type": ["string", "null"]},
                "extra": {},
            },
            "required": ["country"],
        },
    )
    reg.add(
        "send_email",
        "Sends an email.",
        {
            "type": "object",
            "properties": {
                "to": {
                    "type": "array",
                    "items": {"type": "string", "format": "email"},
                    "minItems": 1,
                },
                "subject": {"type": "string", "maxLength": 50},
                "when": {"type": "string", "format": "date"},
                "priority": {"enum": [1, 2, 3]},
            },
            "required": ["to", "subject"],
            "additionalProperties": False,
        },
    )
    return reg
