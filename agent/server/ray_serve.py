"""``agent serve --ray --replicas N``: the OpenAI-compatible app as a Ray Serve deployment.

Each replica is one Ray actor holding one engine and the very app of ``agent.server.app`` (same
endpoints, same errors, its own bounded queue); Ray Serve's HTTP proxy spreads requests over the
replicas. The model is opened inside each replica, so its path must be readable on every node
that runs one.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import AgentError

INSTALL_HINT = "Ray Serve is not installed: pip install -e '.[ray]' (or pip install 'ray[serve]')"
APP_NAME = "agent"


@dataclass(frozen=True)
class ReplicaConfig:
    build_model: Callable[[], Any]  # runs in each replica: the replica's one engine
    model_name: str = "local"
    api_key: str | None = None
    queue_size: int = 16


class AgentReplica:
    """One Serve replica: one engine, the project's ASGI app over it."""

    def __init__(self, config: ReplicaConfig):
        self.config = config
        self.model = config.build_model()

    def __serve_build_asgi_app__(self) -> Any:  # called by Ray Serve after __init__
        from agent.server.app import create_app

        c = self.config
        return create_app(
            self.model, model_name=c.model_name, api_key=c.api_key, queue_size=c.queue_size
        )


def _import_serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise AgentError(INSTALL_HINT) from None
    return serve


def deploy(
    config: ReplicaConfig,
    *,
    replicas: int = 1,
    cpus_per_replica: float = 1.0,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and ``replicas`` replicas; returns the base URL.

    Ray must be initialised (``ray.init``) by the caller.
    """
    serve = _import_serve()
    if replicas < 1:
        raise AgentError(f"--replicas must be at least 1, got {replicas}")
    serve.start(http_options={"host": host, "port": port})
    deployment = serve.deployment(
        name="AgentReplica",
        num_replicas=replicas,
        # room for the app's own queue, so its 503-when-full answer is what clients see
        max_ongoing_requests=config.queue_size + 1,
        ray_actor_options={"num_cpus": cpus_per_replica},
    )(serve.ingress()(AgentReplica))
    try:
        serve.run(deployment.bind(config), name=APP_NAME, route_prefix="/")
    except Exception as exc:  # noqa: BLE001 - Ray's deployment errors carry the replica's
        raise AgentError(
            f"the Serve replicas could not start: {str(exc).strip()[:2000]}. The model path "
            "must be readable at the same path on every node that runs a replica"
        ) from exc
    return f"http://{host}:{port}/v1"


def open_model_from_args(options: dict[str, Any]) -> Any:
    """The replica's engine from ``agent serve``'s model options (picklable with partial)."""
    from agent.llm.cli import open_model

    return open_model(argparse.Namespace(**options), quiet=True)


# add_model_args' options, opened again in each replica
MODEL_OPTIONS: tuple[str, ...] = ("model", "script", "n_ctx", "threads", "n_gqa", "rms_norm_eps")
MODEL_OPTIONS += ("rope_freq_base", "rope_freq_scale")


def serve_command(args: argparse.Namespace) -> int:
    """``agent serve --ray [ADDRESS] --replicas N``: deploy, then wait for Ctrl-C."""
    import sys

    try:
        import ray
    except ImportError:
        raise AgentError(INSTALL_HINT) from None
    options = {k: getattr(args, k) for k in MODEL_OPTIONS}
    name = args.model_name or Path(args.model or args.script).name
    config = ReplicaConfig(
        build_model=functools.partial(open_model_from_args, options),
        model_name=name,
        api_key=args.api_key,
        queue_size=args.queue_size,
    )
    ray.init(address=args.ray or None, include_dashboard=False)
    try:
        url = deploy(
            config,
            replicas=args.replicas,
            cpus_per_replica=args.cpus_per_replica,
            host=args.host,
            port=args.port,
        )
        print(f"serving {name} with {args.replicas} Ray Serve replica(s) on {url}", file=sys.stderr)
        while True:
            time.sleep(3600)
    finally:
        _import_serve().shutdown()
        ray.shutdown()
