"""``--attention {auto,model,sdpa}`` (``easycache/attention/``): the ``sdpa`` path is the model's own
attention with another kernel, on every code base it knows.

- One transformer call, float32, a prompt shorter than its padding: ``sdpa`` gives the model's own
  output within 1e-5 (max abs difference / max abs output), on diffusers' HunyuanVideo (t2v, i2v, the
  demo), HunyuanVideo-1.5 (t2v, i2v) and Wan 2.1, and on Tencent's HunyuanVideo (``HYVIDEO_ROOT``).
  A spy on torch's ``scaled_dot_product_attention`` proves the path ran: every attention call of the
  blocks comes from ``easycache/attention/kernels.py`` with no mask, over the video and the *real*
  text tokens (the padding is gone), where the model's own path attends over the padding, masked.
- Samples of different real lengths in one batch (classifier-free guidance with a negative prompt).
- A whole cached generation takes the same decisions with ``sdpa`` as with ``model``.
- ``remove_attention`` puts back exactly what was there; the order against EasyCache and SVG.
- ``auto`` on a CPU is ``model``; the entries, their one-line refusals, and the run JSON.

diffusers' transformers reach ``sdpa`` through their attention dispatcher (diffusers >= 0.36): on an
older diffusers those tests skip, naming the version, and the refusal is tested instead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import easycache
import easycache_sample_video
import hyvideo_svg_easycache
from easycache import EasyCacheConfig, cli
from easycache.attention import kernels
from easycache.attention.install import choose, refuse_before_loading
from easycache.calls import prediction_of
from easycache.errors import UsageError
from easycache.testing.tencent_tiny import (enable_cpu_shims, hyvideo_root_or_skip_reason, run_script,
                                            write_tiny_checkpoints)
from easycache.versions import DIFFUSERS_FLOORS, at_least, installed
from needs import needs, needs_diffusers
from tiny_models import BUILDERS, DIFFUSERS_NEEDED

pytestmark = pytest.mark.usefixtures("one_thread", "unpatched")

DISPATCHER = DIFFUSERS_FLOORS["dispatch_attention_fn"]
SDPA_ON_DIFFUSERS = needs_diffusers("dispatch_attention_fn", "--attention sdpa on diffusers' transformers "
                                    "(their attention dispatcher)")
HUNYUAN = needs_diffusers("HunyuanVideoTransformer3DModel", "the tiny diffusers HunyuanVideo transformer")
TOLERANCE = 1e-5  # max |sdpa - model| / max |model|, float32
HYVIDEO_ROOT, HYVIDEO_SKIP = hyvideo_root_or_skip_reason()
TENCENT = pytest.mark.skipif(HYVIDEO_ROOT is None, reason=f"Tencent's HunyuanVideo: {HYVIDEO_SKIP}")


def relative_difference(out, ref) -> float:
    out, ref = prediction_of(out), prediction_of(ref)
    assert out.shape == ref.shape and torch.isfinite(ref).all() and ref.abs().max() > 0
    return float((out - ref).abs().max() / ref.abs().max())


@pytest.fixture()
def unpatched(monkeypatch):
    """Every module function as imported and no patch counted (``easycache.patching``), for each test
    here: an earlier test of this process may have left one (the SVG entry, run in-process, keeps sparse
    attention on its model). Put back afterwards."""
    from easycache import patching

    original_of = {id(patched): original for _, original, patched, _ in patching._PATCHES.values()}
    for (_, name, _), (module, *_) in list(patching._PATCHES.items()):
        function = getattr(module, name)
        while id(function) in original_of:  # down a chain of patches to the function as imported
            function = original_of[id(function)]
        monkeypatch.setattr(module, name, function)
    monkeypatch.setattr(patching, "_PATCHES", {})


# ------------------------------------------------------------------------------------ the spy
KERNELS = Path(kernels.__file__).resolve()
# Text-only self-attention of the token refiners (diffusers' AttnProcessor2_0, hyvideo's "torch" mode
# in token_refiner.py): left as the model runs it (it never sees a video token), masked or not.
REFINERS = {"attention_processor", "attenion"}


@functools.lru_cache(maxsize=None)
def _origin(filename: str) -> str:
    path = Path(filename).resolve()
    return "sdpa path" if path == KERNELS else path.stem


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of torch's scaled_dot_product_attention ([batch, heads, tokens, dim] tensors)."""

    origin: str  # "sdpa path" (easycache/attention/kernels.py), or the calling file's stem
    batch: int
    queries: int
    keys: int
    masked: bool

    @property
    def ours(self) -> bool:
        return self.origin == "sdpa path"


@pytest.fixture()
def sdpa_calls(monkeypatch):
    """Every call of ``torch.nn.functional.scaled_dot_product_attention`` (which ``kernels.F`` is), with
    where it came from; the test clears the list between runs."""
    assert kernels.F is F
    calls: list[Call] = []
    original = F.scaled_dot_product_attention

    def recording(query, key, value, attn_mask=None, *args, **kwargs):
        calls.append(Call(_origin(sys._getframe(1).f_code.co_filename), query.shape[0], query.shape[-2],
                          key.shape[-2], attn_mask is not None))
        return original(query, key, value, attn_mask, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    return calls


def blocks(calls: list[Call]) -> list[Call]:
    """The calls of the transformer's blocks: all but the token refiners'."""
    return [c for c in calls if c.origin not in REFINERS]


def run_both(model, args, kwargs, calls):
    """The model's own output and calls, then ``sdpa``'s (installed for this call, removed after)."""
    with torch.no_grad():
        calls.clear()
        ref = model(*args, **kwargs)
        model_calls = list(calls)
        calls.clear()
        choice = easycache.apply_attention(model, "sdpa")
        try:
            out = model(*args, **kwargs)
        finally:
            easycache.remove_attention(model)
        sdpa_calls = list(calls)
    assert choice.path == "sdpa" and choice.requested == "sdpa"
    return ref, out, model_calls, sdpa_calls


def assert_sdpa_path(sdpa_calls: list[Call], model_calls: list[Call], tokens: set[int]):
    """Every block call went through the sdpa path, unmasked, over ``tokens``; none did on the model's."""
    assert blocks(sdpa_calls) and all(c.ours for c in blocks(sdpa_calls)), sdpa_calls
    assert not any(c.masked for c in blocks(sdpa_calls)), "a mask reached the sdpa path"
    assert {c.queries for c in blocks(sdpa_calls) if c.queries == c.keys} == tokens  # self-attention
    assert blocks(model_calls) and not any(c.ours for c in model_calls), model_calls


# ------------------------------------------------------------------------------------ diffusers' code bases
class _Captured(Exception):
    def __init__(self, args, kwargs):
        super().__init__()
        self.call = (args, kwargs)


@functools.lru_cache(maxsize=None)
def case_for(name):
    return BUILDERS[name]()


@functools.lru_cache(maxsize=None)
def first_call(name):
    """The positional and keyword arguments of the pipeline's first transformer call (the run stops there)."""
    case = case_for(name)

    def capture(module, args, kwargs):
        raise _Captured(args, dict(kwargs))

    handle = case.pipe.transformer.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        case()
    except _Captured as captured:
        return captured.call
    finally:
        handle.remove()
    raise AssertionError(f"{name} never called its transformer")


# The direct call of each case: which masks get trailing padding (a count of tokens) where the case's
# pipeline takes precomputed embeddings with all-ones masks; the others pad their prompt themselves.
PADDING = {
    "HunyuanVideoPipeline": {},  # "a cat walks on the grass": 6 tokens of max_sequence_length 16
    "HunyuanVideoImageToVideoPipeline": {"encoder_attention_mask": 2},
    "HunyuanVideo15Pipeline": {"encoder_attention_mask": 2, "encoder_attention_mask_2": 1},
    "HunyuanVideo15ImageToVideoPipeline": {"encoder_attention_mask": 2, "encoder_attention_mask_2": 1},
    "WanPipeline-2.1": {},  # no mask: Wan's cross-attention reads the whole (zero-padded) text
    "DemoPipeline": {},  # "a red circle moving left": 6 words of the demo's 12
}


def case_param(name):
    return pytest.param(name, id=name, marks=[needs("diffusers", DIFFUSERS_NEEDED[name], f"the tiny {name}"),
                                              SDPA_ON_DIFFUSERS])


def padded_call(name):
    args, kwargs = first_call(name)
    kwargs = {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}
    for mask, n in PADDING[name].items():
        kwargs[mask][:, -n:] = 0
    return args, kwargs


def video_tokens(model, kwargs) -> int:
    cfg = model.config
    patch = cfg.patch_size
    pt, ph, pw = tuple(patch) if isinstance(patch, (tuple, list)) else (cfg.patch_size_t, patch, patch)
    _, _, frames, height, width = kwargs["hidden_states"].shape
    return frames // pt * (height // ph) * (width // pw)


def text_tokens(kwargs) -> tuple[int, int]:
    """(every text token the blocks see, the real ones) of a diffusers call."""
    if "encoder_attention_mask" not in kwargs:  # Wan: the text is cross-attention's keys, never queries
        return 0, 0
    full, real = kwargs["encoder_hidden_states"].shape[1], int(kwargs["encoder_attention_mask"].sum())
    if "encoder_attention_mask_2" in kwargs:  # HunyuanVideo-1.5: Qwen's tokens, ByT5's and the image's
        image = kwargs["image_embeds"]
        full += kwargs["encoder_hidden_states_2"].shape[1] + image.shape[1]
        real += int(kwargs["encoder_attention_mask_2"].sum()) + (0 if torch.all(image == 0) else image.shape[1])
    return full, real


@pytest.mark.parametrize("name", [case_param(n) for n in PADDING])
def test_sdpa_equals_the_model_on_every_diffusers_code_base(name, sdpa_calls):
    model = case_for(name).pipe.transformer
    args, kwargs = padded_call(name)
    video = video_tokens(model, kwargs)
    full, real = text_tokens(kwargs)
    assert real < full or name.startswith("Wan"), "the call must carry padding"

    ref, out, model_calls, ours = run_both(model, args, kwargs, sdpa_calls)
    difference = relative_difference(out, ref)
    print(f"\n{name}: sdpa vs model {difference:.1e} (video {video} + text {real} of {full} tokens)")
    assert difference <= TOLERANCE
    assert_sdpa_path(ours, model_calls, {video + real})
    if full:  # the model's own path attends over the padding, masked
        assert {c.queries for c in blocks(model_calls)} == {video + full}
        assert all(c.masked for c in blocks(model_calls))
    assert len(blocks(ours)) == len(blocks(model_calls))  # one kernel call in place of each


# ------------------------------------------------------------------------------------ one batch, two lengths
def hunyuan_batch(lengths, text=16, seed=0):
    """A direct call of ``tiny_transformer``: batch len(lengths), sample b's first lengths[b] text tokens real."""
    g = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    mask = torch.zeros(batch, text)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
    return dict(hidden_states=torch.randn(batch, 4, 3, 4, 4, generator=g),
                timestep=torch.tensor([700.0, 300.0][:batch]),
                encoder_hidden_states=torch.randn(batch, text, 16, generator=g), encoder_attention_mask=mask,
                pooled_projections=torch.randn(batch, 8, generator=g), guidance=torch.full((batch,), 6000.0))


def fresh_hunyuan(seed: int = 0):
    """A new ``tiny_transformer`` for a test that installs things on it (a failure leaves nothing behind)."""
    from easycache.testing.tiny_hunyuan import tiny_transformer

    return tiny_transformer(seed)


@functools.lru_cache(maxsize=None)
def hunyuan_transformer():
    """The shared one, for calls only."""
    return fresh_hunyuan()


@HUNYUAN
@SDPA_ON_DIFFUSERS
@pytest.mark.parametrize("lengths", [(5, 11), (7, 7)], ids=["5-and-11", "7-and-7"])
def test_a_batch_of_two_real_lengths_on_diffusers_hunyuanvideo(lengths, sdpa_calls):
    """Samples of different real lengths run one at a time, each cut to its own; the same length, one
    call. The output keeps the model's structure (``Transformer2DModelOutput``, ``return_dict``)."""
    model = hunyuan_transformer()
    kwargs = hunyuan_batch(lengths)
    video = 3 * 4 * 4
    ref, out, model_calls, ours = run_both(model, (), kwargs, sdpa_calls)
    assert type(out) is type(ref) and out.sample.shape == ref.sample.shape == (2, 4, 3, 4, 4)
    assert relative_difference(out, ref) <= TOLERANCE
    for b in range(2):  # each sample against its own call alone: no sample leaks into the other
        with torch.no_grad():
            alone = model(**{k: v[b:b + 1] for k, v in kwargs.items()})
        assert relative_difference(out.sample[b:b + 1], alone) <= TOLERANCE
    assert_sdpa_path(ours, model_calls, {video + n for n in lengths})
    per_call = 1 if len(set(lengths)) > 1 else 2
    assert {c.batch for c in blocks(ours)} == {per_call}
    assert len(blocks(ours)) == 2 * len(blocks(model_calls)) // per_call  # 1 double + 1 single block


@SDPA_ON_DIFFUSERS
@needs("diffusers", DIFFUSERS_NEEDED["HunyuanVideo15Pipeline"], "the tiny HunyuanVideo15Pipeline")
def test_a_batch_of_two_real_lengths_on_diffusers_hunyuanvideo15(sdpa_calls):
    """HunyuanVideo-1.5's padding stays in the call (its dense mask): the kernel attends each sample's
    real prefix alone."""
    name = "HunyuanVideo15Pipeline"
    model = case_for(name).pipe.transformer
    args, kwargs = padded_call(name)
    kwargs = {k: torch.cat([v, v]) if torch.is_tensor(v) and v.ndim and v.shape[0] == 1 else v
              for k, v in kwargs.items()}
    kwargs["encoder_attention_mask"][1, -4:] = 0  # sample 1: two more padded Qwen tokens than sample 0
    video = video_tokens(model, kwargs)
    reals = {video + int(kwargs["encoder_attention_mask"][b].sum() + kwargs["encoder_attention_mask_2"][b].sum())
             for b in range(2)}
    assert len(reals) == 2
    ref, out, model_calls, ours = run_both(model, args, kwargs, sdpa_calls)
    assert relative_difference(out, ref) <= TOLERANCE
    assert_sdpa_path(ours, model_calls, reals)
    assert {c.batch for c in blocks(ours)} == {1}


@HUNYUAN
@SDPA_ON_DIFFUSERS
def test_padding_that_is_not_a_suffix_runs_the_model_path(sdpa_calls):
    """A mask whose real tokens are not a prefix cannot be cut: the model's own path runs, unchanged."""
    model = hunyuan_transformer()
    kwargs = hunyuan_batch((6,))
    kwargs["encoder_attention_mask"][0, 2] = 0
    kwargs["encoder_attention_mask"][0, 9] = 1
    with torch.no_grad():
        ref = model(**kwargs)
        easycache.apply_attention(model, "sdpa")
        try:
            sdpa_calls.clear()
            out = model(**kwargs)
        finally:
            easycache.remove_attention(model)
    assert torch.equal(out.sample, ref.sample)
    assert sdpa_calls and not any(c.ours for c in sdpa_calls)


# ------------------------------------------------------------------------------------ a whole cached generation
# Thresholds that skip steps on each tiny model (tests/test_models.py's SKIP_THRESH), 2 warmup steps.
GENERATIONS = {"HunyuanVideoPipeline": 0.3, "HunyuanVideo15Pipeline": 0.3, "WanPipeline-2.1": 0.5, "DemoPipeline": 0.1}


@pytest.mark.parametrize("name", [case_param(n) for n in GENERATIONS])
def test_a_cached_generation_takes_the_same_decisions(name):
    case = case_for(name)
    config = EasyCacheConfig(thresh=GENERATIONS[name], warmup_steps=2)
    runs = {}
    for mode in ("model", "sdpa"):
        assert easycache.apply_attention(case.pipe, mode).path == mode
        try:
            cache = easycache.apply_easycache(case.pipe, config)
            try:
                video = case()
                runs[mode] = video, [r.computed for r in cache.records]
            finally:
                easycache.remove_easycache(case.pipe)
        finally:
            easycache.remove_attention(case.pipe)
    (model_video, model_decisions), (sdpa_video, sdpa_decisions) = runs["model"], runs["sdpa"]
    difference = relative_difference(sdpa_video, model_video)
    print(f"\n{name}: {sum(model_decisions)}/{len(model_decisions)} computed, video {difference:.1e}")
    assert sdpa_decisions == model_decisions
    assert any(model_decisions) and not all(model_decisions), "the threshold must skip some calls"
    assert difference <= 1e-4


# ------------------------------------------------------------------------------------ exact removal, order
def dispatch_module(model):
    return sys.modules[type(model).__module__]




@HUNYUAN
@SDPA_ON_DIFFUSERS
def test_remove_attention_restores_exactly():
    model = fresh_hunyuan()
    module = dispatch_module(model)
    original = module.dispatch_attention_fn
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    kwargs = hunyuan_batch((5,))

    easycache.apply_attention(model, "sdpa")
    assert module.dispatch_attention_fn is not original and "forward" in model.__dict__
    assert easycache.installed_attention(model).path == "sdpa"
    with pytest.raises(RuntimeError, match="already installed"):
        easycache.apply_attention(model, "model")
    with torch.no_grad():
        model(**kwargs)
    easycache.remove_attention(model)

    assert module.dispatch_attention_fn is original
    assert "forward" not in model.__dict__ and easycache.installed_attention(model) is None
    state = model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights)
    with pytest.raises(RuntimeError, match="not installed"):
        easycache.remove_attention(model)


@HUNYUAN
@SDPA_ON_DIFFUSERS
def test_two_models_share_one_patch_until_the_last_is_removed():
    first, second = fresh_hunyuan(), fresh_hunyuan(seed=1)
    module = dispatch_module(first)
    original = module.dispatch_attention_fn
    easycache.apply_attention(first, "sdpa")
    easycache.apply_attention(second, "sdpa")
    patched = module.dispatch_attention_fn
    easycache.remove_attention(first)
    assert module.dispatch_attention_fn is patched, "the second model still runs the sdpa path"
    easycache.remove_attention(second)
    assert module.dispatch_attention_fn is original


@HUNYUAN
@SDPA_ON_DIFFUSERS
def test_removal_order_against_easycache_and_sparse_attention():
    """Installed attention, then what wraps it (EasyCache, SVG): removed in reverse, else refused with
    nothing undone."""
    from easycache.sparse import apply_svg, remove_svg

    model = fresh_hunyuan()
    module = dispatch_module(model)
    original = module.dispatch_attention_fn

    easycache.apply_attention(model, "sdpa")
    easycache.apply_easycache(model, EasyCacheConfig(num_steps=4))
    with pytest.raises(RuntimeError, match="wrapped again after --attention"):
        easycache.remove_attention(model)
    assert easycache.installed_attention(model).path == "sdpa"
    easycache.remove_easycache(model)
    easycache.remove_attention(model)
    assert module.dispatch_attention_fn is original and "forward" not in model.__dict__

    easycache.apply_attention(model, "sdpa")
    apply_svg(model)
    with pytest.raises(RuntimeError, match="replaced again after --attention sdpa"):
        easycache.remove_attention(model)
    assert easycache.installed_attention(model).path == "sdpa"
    with torch.no_grad():  # still whole after the refusal
        assert torch.isfinite(model(**hunyuan_batch((5,))).sample).all()
    remove_svg(model)
    easycache.remove_attention(model)
    assert module.dispatch_attention_fn is original and "forward" not in model.__dict__


@HUNYUAN
@SDPA_ON_DIFFUSERS
def test_sparse_attention_patched_first_for_another_model_still_runs_beneath_sdpa(sdpa_calls):
    """One process, two models: SVG on one patches diffusers' module first; then sdpa and SVG on the
    other (the right order). sdpa's dispatcher lies over SVG's and hands it the call (the all-True mask
    dropped): SVG still runs on its model, the same output as SVG alone; a model with sdpa alone still
    gets attention with no mask. Removal gives the module back as imported."""
    from easycache.sparse import SVGConfig, apply_svg, remove_svg

    module = dispatch_module(hunyuan_transformer())
    original = module.dispatch_attention_fn
    config = SVGConfig(first_times_fp=0.0, first_layers_fp=0.0)
    other, model = fresh_hunyuan(seed=1), fresh_hunyuan()
    kwargs = hunyuan_batch((5,))
    apply_svg(other, config)
    try:
        alone = apply_svg(model, config)
        with torch.no_grad():
            ref = model(**kwargs)
        remove_svg(model)
        assert alone.sparse_calls == 2

        easycache.apply_attention(model, "sdpa")
        beneath = apply_svg(model, config)
        with torch.no_grad():
            out = model(**kwargs)
        assert beneath.sparse_calls == 2, "SVG was skipped"
        assert relative_difference(out, ref) <= TOLERANCE
        remove_svg(model)

        sdpa_calls.clear()
        with torch.no_grad():
            model(**kwargs)
        assert {(c.queries, c.masked) for c in blocks(sdpa_calls)} == {(3 * 4 * 4 + 5, False)}
        easycache.remove_attention(model)
    finally:
        remove_svg(other)
    assert module.dispatch_attention_fn is original


@HUNYUAN
@SDPA_ON_DIFFUSERS
def test_sdpa_over_sparse_attention_is_refused():
    """sdpa installed after SVG would answer the model's calls before SVG's dispatcher (no sparse step
    at all): refused, nothing installed; ``auto`` (the model's path on a CPU) wraps nothing and is allowed."""
    from easycache.attention import install
    from easycache.sparse import SVGConfig, apply_svg, remove_svg
    from easycache.sparse import install as sparse_install

    assert install._SPARSE == sparse_install._ATTRIBUTE
    model = fresh_hunyuan()
    module = dispatch_module(model)
    state = apply_svg(model, SVGConfig(first_times_fp=0.0, first_layers_fp=0.0))
    patched = module.dispatch_attention_fn
    try:
        with pytest.raises(RuntimeError, match="install --attention first"):
            easycache.apply_attention(model, "sdpa")
        assert easycache.installed_attention(model) is None and module.dispatch_attention_fn is patched
        assert "forward" not in model.__dict__
        easycache.apply_attention(model, "auto")
        with torch.no_grad():
            model(**hunyuan_batch((5,)))
        assert state.attention_calls == 2 == state.sparse_calls  # SVG ran in both blocks
        easycache.remove_attention(model)
    finally:
        remove_svg(model)


# ------------------------------------------------------------------------------------ auto, model, unknown models
@HUNYUAN
def test_auto_on_a_cpu_is_the_model_path_and_wraps_nothing():
    model = fresh_hunyuan()
    module = dispatch_module(model)
    original = getattr(module, "dispatch_attention_fn", None)
    for mode in ("auto", "model"):
        choice = easycache.apply_attention(model, mode)
        assert (choice.requested, choice.path, choice.code_base) == (mode, "model", "diffusers HunyuanVideo")
        assert "forward" not in model.__dict__ and getattr(module, "dispatch_attention_fn", None) is original
        assert easycache.installed_attention(model) == choice
        easycache.remove_attention(model)
        assert easycache.installed_attention(model) is None
    expected = "not on CUDA" if at_least("diffusers", DISPATCHER) else "an older release"
    assert expected in choose(model, "auto")[0].reason


def test_a_model_no_code_base_knows():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UsageError, match="--attention"):
        choose(model, "sdpa")
    with pytest.raises(UsageError, match="--attention sdpa: .*Linear.*--attention model"):
        easycache.apply_attention(model, "sdpa")
    assert "_easycache_attention" not in model.__dict__
    choice, code_base = choose(model, "auto")
    assert (choice.path, choice.code_base, code_base) == ("model", None, None)
    with pytest.raises(UsageError, match="--attention bogus: choose one of auto, model, sdpa"):
        choose(model, "bogus")


@HUNYUAN
@pytest.mark.skipif(at_least("diffusers", DISPATCHER), reason=f"diffusers {installed('diffusers')} has the "
                    "attention dispatcher: the refusal of an older one is for diffusers < " + DISPATCHER)
def test_an_older_diffusers_refuses_sdpa_in_one_line():
    model = hunyuan_transformer()
    with pytest.raises(UsageError, match=f"diffusers >= {DISPATCHER}"):
        choose(model, "sdpa")
    assert choose(model, "auto")[0].path == "model"


# ------------------------------------------------------------------------------------ the entries
def demo_job(save: Path, *extra: str) -> list[str]:
    return ["--model", "demo", "--prompt", "a red circle moving left", "--seed", "0", "--infer-steps", "4",
            "--save-path", str(save), *extra]


def entry_exit(argv: list[str]) -> int:
    try:
        return easycache_sample_video.main(argv)
    except SystemExit as stop:  # argparse's own exit
        return stop.code


@SDPA_ON_DIFFUSERS
def test_the_demo_with_sdpa_records_it_in_the_run_json(tmp_path, sdpa_calls):
    assert easycache_sample_video.main(demo_job(tmp_path, "--attention", "sdpa")) == 0
    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*_easycache.json"))]
    runs += [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*_baseline.json"))]
    assert runs
    for run in runs:
        assert run["attention"]["requested"] == "sdpa" and run["attention"]["path"] == "sdpa"
        assert run["attention"]["code_base"] == "diffusers HunyuanVideo"
        assert run["attention"]["model_kernel"] == "SDPA with a key-padding mask"
    calls = blocks(sdpa_calls)
    first = next(i for i, c in enumerate(calls) if c.ours)  # the demo's warm-up runs before --attention
    assert calls[first:] and all(c.ours and not c.masked for c in calls[first:])


def test_the_demo_with_auto_on_a_cpu_records_the_model_path(tmp_path, sdpa_calls):
    assert easycache_sample_video.main(demo_job(tmp_path, "--attention", "auto", "--no-easycache")) == 0
    (run_json,) = tmp_path.glob("*.json")
    attention = json.loads(run_json.read_text())["attention"]
    assert (attention["requested"], attention["path"]) == ("auto", "model")
    expected = "not on CUDA" if at_least("diffusers", DISPATCHER) else "an older release"
    assert expected in attention["reason"] or attention["code_base"] is None
    assert sdpa_calls and not any(c.ours for c in sdpa_calls)


def test_a_bad_attention_value_is_one_line(tmp_path, capsys):
    code = entry_exit(demo_job(tmp_path, "--attention", "bogus"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--attention" in err[0] and "Traceback" not in err[0], err
    assert not list(tmp_path.iterdir())


def test_sdpa_on_a_diffusers_without_the_dispatcher_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    """diffusers before 0.36 (HunyuanVideo's and HunyuanVideo-1.5's own pins) has no dispatcher for
    HunyuanVideo: ``--attention sdpa`` is one line before any model loads; ``auto`` and ``model`` run."""
    import easycache.versions as versions
    from packaging.version import Version

    real = versions.installed
    monkeypatch.setattr(versions, "installed", lambda package: Version("0.35.2") if package == "diffusers"
                        else real(package))
    with pytest.raises(UsageError, match=f"diffusers >= {DISPATCHER}"):
        refuse_before_loading("demo", "sdpa")
    refuse_before_loading("demo", "auto")
    refuse_before_loading("tencent", "sdpa")  # Tencent's code base needs no diffusers
    assert easycache_sample_video.main(demo_job(tmp_path, "--attention", "sdpa")) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --attention sdpa") and f"diffusers >= {DISPATCHER}" in line
    assert not list(tmp_path.iterdir())


def test_svg_entry_old_attention_backend_flag_is_attention_sparse():
    from easycache.sparse import SVGConfig

    parser = hyvideo_svg_easycache.build_parser()
    old, _ = parser.parse_known_args(["--attention-backend", "sdpa", "--prompt", "a"])
    new, _ = parser.parse_known_args(["--attention-sparse", "sdpa", "--prompt", "a"])
    assert cli.given_fields(old, SVGConfig) == cli.given_fields(new, SVGConfig) == {"backend": "sdpa"}
    assert old.attention == new.attention == "auto"  # the dense path's own flag is another one
    both, _ = parser.parse_known_args(["--attention", "sdpa", "--attention-sparse", "flex", "--prompt", "a"])
    assert both.attention == "sdpa" and cli.given_fields(both, SVGConfig) == {"backend": "flex"}


# ------------------------------------------------------------------------------------ Tencent's HunyuanVideo
TENCENT_JOB = ["--video-size", "32", "32", "--video-length", "5", "--infer-steps", "6",
               "--prompt", "a cat walks on the grass", "--flow-reverse", "--seed", "42"]


def only(folder: Path, pattern: str) -> Path:
    (found,) = sorted(folder.glob(pattern))
    return found


@TENCENT
def test_tencent_drop_in_with_attention_model_is_byte_identical(tencent):
    """``easycache_sample_video.py --no-easycache --attention model`` writes the very video of
    Tencent's own ``sample_video.py`` (the same command line otherwise)."""
    _, flags, tmp = tencent
    run_script(HYVIDEO_ROOT / "sample_video.py", [*TENCENT_JOB, "--save-path", str(tmp / "tencent")],
               HYVIDEO_ROOT, tmp / "ckpts", write_checkpoints=False)
    assert easycache_sample_video.main(["--hunyuan-root", str(HYVIDEO_ROOT), *flags, *TENCENT_JOB, "--save-path",
                                        str(tmp / "ours"), "--no-easycache", "--attention", "model"]) == 0
    theirs, ours = only(tmp / "tencent", "*.mp4"), only(tmp / "ours", "*.mp4")
    assert theirs.name.split("_", 1)[1] == ours.name.split("_", 1)[1]  # after the time stamp
    assert ours.read_bytes() == theirs.read_bytes()
    assert json.loads(ours.with_suffix(".json").read_text())["attention"]["path"] == "model"


@TENCENT
def test_tencent_cached_generation_takes_the_same_decisions(tencent, sdpa_calls):
    import imageio.v3 as iio
    import numpy as np

    _, flags, tmp = tencent
    runs = {}
    for mode in ("model", "sdpa"):
        sdpa_calls.clear()
        assert easycache_sample_video.main(["--hunyuan-root", str(HYVIDEO_ROOT), *flags, *TENCENT_JOB, "--save-path",
                                            str(tmp / mode), "--attention", mode, "--easycache-thresh", "1.5",
                                            "--easycache-warmup-steps", "2"]) == 0
        video = only(tmp / mode, "*.mp4")
        run = json.loads(video.with_suffix(".json").read_text())
        assert run["attention"]["path"] == mode and run["attention"]["code_base"] == "Tencent's HunyuanVideo"
        assert any(c.ours for c in sdpa_calls) == (mode == "sdpa")
        runs[mode] = [r["computed"] for r in run["records"]], iio.imread(video)
    (model_decisions, model_frames), (sdpa_decisions, sdpa_frames) = runs["model"], runs["sdpa"]
    assert sdpa_decisions == model_decisions
    assert any(model_decisions) and not all(model_decisions), "the threshold must skip some steps"
    assert np.abs(model_frames.astype(int) - sdpa_frames.astype(int)).max() <= 2


@pytest.fixture(scope="module")
def hy(tmp_path_factory):
    """Tencent's checkout on CPU, the tiny sampler, and its first transformer call at guidance 1 (one
    sample) and 6 (negative and positive prompt batched: 31 and 3 real tokens of 256)."""
    if HYVIDEO_ROOT is None:
        pytest.skip(f"Tencent's HunyuanVideo: {HYVIDEO_SKIP}")
    model_base = tmp_path_factory.mktemp("ckpts")
    with enable_cpu_shims(HYVIDEO_ROOT, model_base) as modules:
        flags = write_tiny_checkpoints(model_base)["cli_flags"]
        argv_before, sys.argv = sys.argv, ["sample_video.py", *flags, *TENCENT_JOB, "--save-path",
                                           str(model_base.parent / "unused")]
        try:
            args = modules.config.parse_args()
        finally:
            sys.argv = argv_before
        sampler = modules.inference.HunyuanVideoSampler.from_pretrained(Path(args.model_base), args=args)
        transformer = sampler.pipeline.transformer
        calls = {}

        def capture(module, a, kw):
            raise _Captured(a, dict(kw))

        for guidance in (1.0, 6.0):
            handle = transformer.register_forward_pre_hook(capture, with_kwargs=True)
            try:
                sampler.predict(prompt="a cat", height=32, width=32, video_length=5, seed=42, negative_prompt=None,
                                infer_steps=4, guidance_scale=guidance, num_videos_per_prompt=1, flow_shift=7.0,
                                batch_size=1, embedded_guidance_scale=6.0)
            except _Captured as captured:
                calls[guidance] = captured.call
            finally:
                handle.remove()
        yield modules, transformer, calls


@TENCENT
@pytest.mark.parametrize("guidance", [1.0, 6.0], ids=["batch1", "batch2-two-lengths"])
def test_tencent_sdpa_equals_the_model_path(hy, guidance, sdpa_calls):
    modules, model, calls = hy
    args, kwargs = calls[guidance]
    mask = kwargs["text_mask"]
    lengths = [int(n) for n in mask.sum(dim=1)]
    text = mask.shape[1]
    assert len(set(lengths)) == mask.shape[0] and max(lengths) < text  # padded; batch 2: two lengths
    _, _, frames, height, width = args[0].shape
    pt, ph, pw = model.patch_size
    video = frames // pt * (height // ph) * (width // pw)
    original = modules.models.attention

    ref, out, model_calls, ours = run_both(model, args, kwargs, sdpa_calls)
    assert modules.models.attention is original and "forward" not in model.__dict__
    assert relative_difference(out, ref) <= TOLERANCE
    assert_sdpa_path(ours, model_calls, {video + n for n in lengths})
    assert {c.batch for c in blocks(ours)} == {1}
    # the model's own path (the flash-attn stand-in): per sample, [video + real text] and [padding]
    assert {c.origin for c in blocks(model_calls)} == {"tencent_tiny"}
    assert {c.queries for c in blocks(model_calls)} == {video + n for n in lengths} | {text - n for n in lengths}


@TENCENT
def test_tencent_remove_restores_the_attention_name(hy):
    modules, model, calls = hy
    original = modules.models.attention
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    choice = easycache.apply_attention(model, "sdpa")
    assert choice.code_base == "Tencent's HunyuanVideo" and modules.models.attention is not original
    args, kwargs = calls[1.0]
    with torch.no_grad():
        model(*args, **kwargs)
    easycache.remove_attention(model)
    assert modules.models.attention is original and "forward" not in model.__dict__
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    auto = easycache.apply_attention(model, "auto")  # on a CPU: the model's own path, nothing replaced
    assert auto.path == "model" and modules.models.attention is original
    easycache.remove_attention(model)
