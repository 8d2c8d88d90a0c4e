"""Schemas that used to cost time or memory out of proportion to their size (issue 16)."""

from __future__ import annotations


def fanout(depth: int) -> dict:
    """Each level refers twice to the next: expanding references inline doubles per level."""
    defs = {
        f"d{i}": {
            "type": "object",
            "properties": {"l": {"$ref": f"#/$defs/d{i + 1}"}, "r": {"$ref": f"#/$defs/d{i + 1}"}},
        }
        for i in range(depth)
    }
    defs[f"d{depth}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def nested(depth: int) -> dict:
    """Objects inside objects, ``depth`` levels deep."""
    schema: dict = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema
