"""The OpenAI-compatible server: ``create_app(model)`` (FastAPI) and ``agent serve``.

Imported lazily so ``agent --help`` does not load FastAPI.
"""

from typing import Any

__all__ = ["create_app", "ServerThread"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from agent.server.app import create_app

        return create_app
    if name == "ServerThread":
        from agent.server.runner import ServerThread

        return ServerThread
    raise AttributeError(name)
