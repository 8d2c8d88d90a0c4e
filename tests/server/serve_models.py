"""Engines for the Ray Serve test, built inside each replica (importable by name there)."""

from __future__ import annotations

import os

from agent.llm.scripted import ScriptedModel


def pid_model() -> ScriptedModel:
    """Says which replica process answered, slowly enough for requests to overlap."""
    return ScriptedModel(lambda prompt: f"replica {os.getpid()} answers", chunk_size=2, delay=0.05)


def broken_model() -> ScriptedModel:
    raise FileNotFoundError("no model file at /models/missing.gguf on this node")
