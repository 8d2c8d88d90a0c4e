"""`agent run/ask --parallel`: a plan's concurrent model calls decode together on one engine."""

from __future__ import annotations

from agent.cli import main


def test_run_with_parallel_batches_the_knowledge_model_steps(tmp_path, capsys, monkeypatch):
    from agent.llm.model import LlamaModel
    from tests.golden import model_path

    made = []
    real = LlamaModel.enable_batching

    def spy(self, slots=4, n_ctx=None, chunk=None):
        real(self, slots, n_ctx, chunk)
        made.append(self.batcher)

    monkeypatch.setattr(LlamaModel, "enable_batching", spy)
    plan = tmp_path / "plan.txt"
    plan.write_text(
        "#E1 = KnowledgeModel[What color are blueberries? Given: blue]\n"
        "#E2 = KnowledgeModel[What color is grass? Given: green]\nFinal answer: #E1 #E2\n"
    )
    args = ["run", str(plan), "-m", str(model_path("tiny-q4_0.gguf")), "-c", "1024", "-q"]
    assert main([*args, "--parallel", "2"]) == 0, capsys.readouterr().err
    assert made and made[0].max_seqs >= 2  # both steps' model calls shared forward passes
    assert main([*args, "--parallel", "0"]) == 1
    assert "--parallel must be at least 1" in capsys.readouterr().err
