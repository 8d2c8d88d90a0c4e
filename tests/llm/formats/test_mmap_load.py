"""Loading maps the file: resident memory does not grow by the file's size until weights are
used."""

from __future__ import annotations

import subprocess
import sys

from agent.llm.formats.fixtures import ModelShape, make_model

PROBE = r"""
import sys
def rss_mib():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
import numpy, agent.llm.kernels, agent.llm.tokenizer  # imports are not what load_model costs
agent.llm.kernels.backend()  # nor is loading the compiled kernels
before = rss_mib()
from agent.llm import load_model
m = load_model(sys.argv[1], n_ctx=512)
print(rss_mib() - before)
"""


def test_load_model_maps_instead_of_reading(tmp_path):
    path = make_model(
        tmp_path / "m.gguf",
        ModelShape(n_vocab=2048, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=2816),
        "q8_0",
    )
    size_mib = path.stat().st_size / 2**20
    assert size_mib > 60
    grown = float(
        subprocess.run(
            [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
        ).stdout
    )
    assert grown < 0.25 * size_mib, (
        f"load_model made {grown:.0f} MiB resident for a {size_mib:.0f} MiB file"
    )
