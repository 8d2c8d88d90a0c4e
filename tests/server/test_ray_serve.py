"""``agent serve --ray``: two Ray Serve replicas behind Ray's HTTP proxy, on a local cluster."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from agent.errors import AgentError
from agent.server.ray_serve import ReplicaConfig, deploy
from tests.server import serve_models

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
serve = pytest.importorskip(
    "ray.serve", reason="Ray Serve is not installed: pip install -e '.[ray]'"
)
KEY = "sk-serve-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(ray_cluster):
    config = ReplicaConfig(serve_models.pid_model, model_name="scripted", api_key=KEY)
    try:
        yield deploy(config, replicas=2, cpus_per_replica=0.5, port=_free_port())
    finally:
        serve.shutdown()


def test_two_replicas_answer_concurrent_chat_completions(base_url):
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)

    def ask(i: int) -> str:
        r = client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": f"hello {i}"}]
        )
        assert r.choices[0].finish_reason == "stop"
        return r.choices[0].message.content

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, range(12)))
    pids = {re.fullmatch(r"replica (\d+) answers", a).group(1) for a in answers}
    assert len(pids) == 2, answers  # both engines served requests


def test_the_proxy_gives_the_single_process_servers_errors(base_url):
    r = requests.post(
        f"{base_url}/chat/completions",
        data="{not json",
        timeout=30,
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = requests.get(f"{base_url}/models", timeout=30)
    assert r.status_code == 401 and "error" in r.json()
    r = requests.get(f"{base_url}/models", timeout=30, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "scripted"


def test_streaming_goes_through_the_proxy(base_url):
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model="scripted", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert re.fullmatch(r"replica \d+ answers", text)


def test_replicas_that_cannot_open_the_model_are_a_clear_error(base_url):
    config = ReplicaConfig(serve_models.broken_model)
    with pytest.raises(AgentError, match="readable at the same path on every node"):
        deploy(config, replicas=1, cpus_per_replica=0.1, port=int(base_url.split(":")[2][:-3]))
