"""torch.compile with the cache installed: the transformer compiles, the decision stays eager, and
steps are still skipped (ComfyUI's EasyCache node skips nothing under torch.compile, their #14795)."""

import torch

import easycache
from needs import skip_unless_diffusers

skip_unless_diffusers("HunyuanVideoPipeline", "the tiny diffusers HunyuanVideo pipeline")

from easycache.testing.tiny_hunyuan import generate, tiny_pipeline  # noqa: E402


def test_compiled_transformer_still_skips_and_matches_the_uncompiled_cached_run():
    pipe = tiny_pipeline()
    cache = easycache.apply_easycache(pipe, easycache.EasyCacheConfig(thresh=0.4, warmup_steps=3))
    eager = generate(pipe)
    eager_decisions = [r.computed for r in cache.records]
    assert not all(eager_decisions), "the threshold must skip steps for this test to mean anything"

    graphs = []

    def counting_backend(graph_module, example_inputs):  # a cheap backend: run the captured graph as is
        graphs.append(len(graph_module.graph.nodes))
        return graph_module.forward

    pipe.transformer.compile(backend=counting_backend)
    compiled = generate(pipe)
    assert [r.computed for r in cache.records] == eager_decisions
    assert torch.equal(compiled, eager)
    assert max(graphs) > 100, f"the transformer itself was captured into a graph: {graphs}"
    captured = len(graphs)

    # Same decisions again, on the graphs already captured: the decision is taken, not replayed.
    again = generate(pipe)
    assert [r.computed for r in cache.records] == eager_decisions and torch.equal(again, eager)
    assert len(graphs) == captured, "no recompilation from one generation to the next"
