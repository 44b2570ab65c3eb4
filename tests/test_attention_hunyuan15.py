"""``--attention sdpa`` on Tencent's HunyuanVideo-1.5 (``easycache/attention/hunyuan15.py``), on CPU.

Set HYVIDEO15_ROOT to a checkout (git clone https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5); the
tiny transformer is the checkout's own class with seeded tiny weights (``tests/hunyuan15_tiny.py``),
its flash-attn a CPU stand-in. Skipped, with its reason, without the variable.
"""

import os
import sys
import types

import pytest
import torch

from hunyuan15_tiny import (
    LLM_HIDDEN, enable_cpu_shims, hyvideo15_root_or_skip_reason, single_process_env, tiny_flags,
    write_tiny_checkpoints,
)

ROOT, SKIP_REASON = hyvideo15_root_or_skip_reason()
pytestmark = [pytest.mark.skipif(ROOT is None, reason=f"HunyuanVideo-1.5 attention: {SKIP_REASON}"),
              pytest.mark.usefixtures("one_thread")]
PROMPT = "a cat walks on the grass"
BLOCKS = 2  # the tiny transformer: one double-stream and one single-stream block
TEXT = 8  # text tokens of a direct call


@pytest.fixture(scope="module")
def hy15(tmp_path_factory):
    """The checkout importable on CPU and tiny weights: (modules, checkpoint folder, work folder)."""
    folder = tmp_path_factory.mktemp("hunyuan15-attention")
    env = single_process_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with enable_cpu_shims(ROOT) as modules:
            yield modules, write_tiny_checkpoints(folder / "ckpts"), folder
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def transformer(hy15):
    modules, model_path, _ = hy15
    model = modules.transformer.HunyuanVideo_1_5_DiffusionTransformer.from_pretrained(
        model_path / "transformer" / "480p_t2v", torch_dtype=torch.float32)
    return model.eval()


def inputs(model, masks):
    """One T2V call: [latents, condition, mask] channels over 1 x 4 x 6 latent tokens, text padded."""
    generator = torch.Generator().manual_seed(0)
    batch = len(masks)
    channels = model.img_in.proj.weight.shape[1]
    return dict(hidden_states=torch.randn(batch, channels, 1, 4, 6, generator=generator),
                timestep=torch.full((batch,), 600.0),
                text_states=torch.randn(batch, TEXT, LLM_HIDDEN, generator=generator), text_states_2=None,
                encoder_attention_mask=torch.tensor(masks, dtype=torch.int64))


class Spy:
    """Counts the attention calls over [video, text] (longer than the text) on each side: the flash-attn
    stand-in (the model's own path) and ``easycache.attention.kernels``' SDPA (the sdpa path)."""

    def __init__(self, monkeypatch, text=TEXT):
        from easycache.attention import kernels

        self.own, self.sdpa = [], []
        flash = sys.modules["flash_attn"]
        varlen, sdpa = flash.flash_attn_varlen_qkvpacked_func, kernels.F.scaled_dot_product_attention

        def own(qkv, cu_seqlens, *args, **kwargs):
            if int(cu_seqlens.diff().max()) > text:
                self.own.append(cu_seqlens.tolist())
            return varlen(qkv, cu_seqlens, *args, **kwargs)

        def spied(q, k, v, *args, **kwargs):
            if q.shape[-2] > text:
                self.sdpa.append((q.ndim, kwargs.get("attn_mask", args[0] if args else None)))
            return sdpa(q, k, v, *args, **kwargs)

        monkeypatch.setattr(flash, "flash_attn_varlen_qkvpacked_func", own)
        monkeypatch.setattr(kernels, "F", types.SimpleNamespace(scaled_dot_product_attention=spied))


@pytest.mark.parametrize("masks", [[[1] * 5 + [0] * 3], [[1] * 5 + [0] * 3, [1] * 2 + [0] * 6]],
                         ids=["batch1", "batch2-different-lengths"])
def test_sdpa_is_the_model_path_with_the_padding_dropped(transformer, masks, monkeypatch):
    from easycache.attention import apply_attention, remove_attention

    spy = Spy(monkeypatch)
    call = inputs(transformer, masks)
    with torch.no_grad():
        reference = transformer(**call)[0]
        assert len(spy.own) == BLOCKS and not spy.sdpa  # the model's own path: flash-attn's varlen call
        spy.own.clear()
        choice = apply_attention(transformer, "sdpa")
        try:
            out = transformer(**call)[0]
        finally:
            remove_attention(transformer)
    assert choice.path == "sdpa" and choice.code_base == "Tencent's HunyuanVideo-1.5"
    assert not spy.own  # the model's own kernel did not run
    assert spy.sdpa == [(4, None)] * (BLOCKS * len(masks))  # per sample, 4-D, never a mask
    assert torch.isfinite(out).all()
    assert (out - reference).abs().max() / reference.abs().max() < 1e-5


def test_remove_restores_the_function_forward_and_weights(transformer):
    from easycache.attention import apply_attention, installed_attention, remove_attention

    module = sys.modules[type(transformer).__module__]
    original = module.parallel_attention
    state = {k: v.clone() for k, v in transformer.state_dict().items()}
    apply_attention(transformer, "sdpa")
    assert module.parallel_attention is not original and module.parallel_attention.__wrapped__ is original
    assert "forward" in transformer.__dict__
    remove_attention(transformer)
    assert module.parallel_attention is original and "forward" not in transformer.__dict__
    assert installed_attention(transformer) is None
    after = transformer.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())


def test_auto_on_cpu_keeps_the_model_path(transformer):
    from easycache.attention import apply_attention, remove_attention

    module = sys.modules[type(transformer).__module__]
    original = module.parallel_attention
    choice = apply_attention(transformer, "auto")
    try:
        assert choice.path == "model" and choice.code_base == "Tencent's HunyuanVideo-1.5"
        assert choice.model_kernel == "flash-attn 2 (no-pad varlen)"  # the stand-in is importable
        assert "not on CUDA" in choice.reason
        assert module.parallel_attention is original and "forward" not in transformer.__dict__
    finally:
        remove_attention(transformer)


@pytest.mark.parametrize("mode, named", [("flex-block-attn", "--sparse_attn"), ("sageattn", "--use_sageattn")])
def test_sparse_or_quantised_attention_is_not_replaced(transformer, monkeypatch, mode, named):
    from easycache.attention import apply_attention, remove_attention
    from easycache.errors import UsageError

    monkeypatch.setattr(transformer, "attn_mode", mode)
    with pytest.raises(UsageError, match=f"--attention sdpa: .*{named}.*--attention model"):
        apply_attention(transformer, "sdpa")
    choice = apply_attention(transformer, "auto")
    remove_attention(transformer)
    assert choice.path == "model" and named in choice.reason


def test_sequence_parallelism_is_refused(hy15, transformer, monkeypatch):
    from easycache.attention import apply_attention
    from easycache.errors import UsageError

    modules, _, _ = hy15
    monkeypatch.setattr(modules.parallel_states, "__parallel_dims", types.SimpleNamespace(sp_enabled=True))
    with pytest.raises(UsageError, match="sequence parallelism"):
        apply_attention(transformer, "sdpa")


def test_a_cached_generation_takes_the_same_decisions_with_sdpa(hy15, monkeypatch):
    """Tencent's pipeline (generate.py's loading and call; the transformer under its bf16 autocast), CFG
    (the batch doubled: the prompt and the empty negative prompt have different real lengths), 8 steps.
    Not at EasyCache's default threshold: there the tiny model's accumulated error is 20x the threshold
    and every step is computed whatever the attention; at 1.2 with 3 warmup steps it reuses three
    steps and no error lies within 20% of the threshold (bf16 moves them by 0.1%)."""
    import easycache
    from easycache.attention import apply_attention, remove_attention
    from easycache.backends import hunyuan15

    _, model_path, folder = hy15
    backend = hunyuan15.Hunyuan15Backend(hunyuan_root=str(ROOT))
    args, _ = backend.parse([*tiny_flags(model_path), "--prompt", PROMPT, "--num_inference_steps", "8",
                             "--output_path", str(folder / "x.mp4")], need_prompt=True)
    model = backend.load(args)
    spy = Spy(monkeypatch, text=30 * 53 - 1)  # longer than any text: 30 x 53 video tokens (480p, one frame)
    runs = {}
    for mode in ("model", "sdpa"):
        spy.own.clear()
        assert apply_attention(model, mode).path == mode
        cache = easycache.apply_easycache(model, easycache.EasyCacheConfig(thresh=1.2, warmup_steps=3))
        try:
            backend.sample(model, args, PROMPT, 1, 1)
        finally:
            easycache.remove_easycache(model)
            remove_attention(model)
        runs[mode] = cache.records
        computed = sum(r.computed for r in cache.records)
        assert len(spy.own) == (BLOCKS * computed if mode == "model" else 0)
    assert spy.sdpa == [(4, None)] * (BLOCKS * 2 * computed)  # CFG: two samples, each its own length
    computed = [r.computed for r in runs["sdpa"]]
    assert len(computed) == 8 and 0 < computed.count(False) < 5
    assert computed == [r.computed for r in runs["model"]]
    for ours, theirs in zip(runs["sdpa"], runs["model"]):  # the same numbers, to bf16's rounding
        assert ours.accumulated_error == pytest.approx(theirs.accumulated_error, rel=5e-3, abs=1e-6)
        assert (ours.k is None) == (theirs.k is None)
        if theirs.k is not None:
            assert ours.k == pytest.approx(theirs.k, rel=5e-3)
