"""The same demo and the same decisions in every environment CI runs (.ci/run): the README's,
HunyuanVideo's pins (diffusers 0.31, which has no HunyuanVideo transformer: the demo runs on
``easycache/demo/hunyuan_torch.py``) and HunyuanVideo-1.5's pins (diffusers 0.35).

``data/demo_decisions.json`` holds which calls EasyCache computed on the demo at its preset, for 4
prompts x 2 seeds at 50 steps, and the video's PSNR against the uncached one, as made in the README's
environment (its versions are in the file). Every environment must take the same decisions. Remake
it with ``EASYCACHE_RECORD_DECISIONS=1 python -m pytest tests/test_environments.py`` (then the test
writes instead of comparing, and fails to say so).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

import easycache
import easycache_sample_video
from easycache.demo import load_demo_pipeline
from easycache.demo.hunyuan_torch import DemoHunyuanTransformer
from easycache.demo.model import with_coordinates
from easycache.metrics import psnr_from_mse
from easycache.versions import installed
from needs import needs_diffusers

RECORD = Path(__file__).parent / "data" / "demo_decisions.json"
PROMPTS = ["a red circle moving left", "a blue square moving up", "a yellow triangle moving up",
           "a green circle moving right on a white background"]
SEEDS = (0, 1)
STEPS = 50

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo():
    return load_demo_pipeline("cpu")


def decisions(pipe) -> list[dict]:
    """EasyCache at the demo's preset on each prompt and seed: the computed calls and the PSNR."""
    made = []
    for prompt in PROMPTS:
        for seed in SEEDS:
            def sample():
                return pipe(prompt, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(seed),
                            output_type="pt").frames[0]

            baseline = sample()
            cache = easycache.apply_easycache(pipe)
            try:
                cached = sample()
                computed = [r.step for r in cache.records if r.computed]
            finally:
                easycache.remove_easycache(pipe)
            made.append({"prompt": prompt, "seed": seed, "computed_steps": computed,
                         "psnr": round(psnr_from_mse(float((cached.double() - baseline.double()).pow(2).mean())), 2)})
    return made


def test_demo_takes_the_recorded_decisions(demo):
    made = decisions(demo)
    if os.environ.get("EASYCACHE_RECORD_DECISIONS"):
        RECORD.parent.mkdir(exist_ok=True)
        versions = {name: str(installed(name)) for name in ("torch", "diffusers", "transformers")}
        runs = ",\n  ".join(json.dumps(run) for run in made)  # one run a line
        RECORD.write_text(f'{{"made_with": {json.dumps(versions)}, "steps": {STEPS},\n "runs": [\n  {runs}\n ]}}\n')
        pytest.fail(f"recorded {RECORD} (unset EASYCACHE_RECORD_DECISIONS to compare)")
    recorded = json.loads(RECORD.read_text())
    transformer = type(demo.transformer).__name__
    for ours, theirs in zip(made, recorded["runs"], strict=True):
        assert (ours["prompt"], ours["seed"]) == (theirs["prompt"], theirs["seed"])
        assert ours["computed_steps"] == theirs["computed_steps"], (transformer, ours["prompt"], ours["seed"])
        assert ours["psnr"] == pytest.approx(theirs["psnr"], abs=0.05), (transformer, ours["prompt"], ours["seed"])


@needs_diffusers("HunyuanVideoTransformer3DModel", "comparing with diffusers' HunyuanVideo transformer")
def test_the_plain_torch_transformer_is_diffusers_on_the_shipped_weights(demo):
    """What HunyuanVideo's own environment runs equals what the others run: the same weights, the same
    outputs, on a batch of two prompts of different lengths (padding masked), early and late steps."""
    config = demo.config
    ours = DemoHunyuanTransformer(in_channels=config.input_channels, out_channels=config.channels,
                                  text_embed_dim=config.text_width, pooled_projection_dim=config.text_width,
                                  **{**config.transformer, "rope_axes_dim": tuple(config.transformer["rope_axes_dim"])})
    ours.load_state_dict(demo.transformer.state_dict(), strict=True)
    tokens, mask, pooled = demo.encode_prompt(["a red circle moving left on a gray background", "a blue square"])
    assert mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1]
    latents = with_coordinates(torch.randn(2, config.channels, config.frames, 4, 4, generator=torch.Generator().manual_seed(0)))
    for t in (999.0, 480.0, 20.0):
        kwargs = dict(hidden_states=latents, timestep=torch.tensor([t, t]), encoder_hidden_states=tokens,
                      encoder_attention_mask=mask, pooled_projections=pooled, return_dict=False)
        with torch.no_grad():
            theirs_out, ours_out = demo.transformer(**kwargs)[0], ours(**kwargs)[0]
        torch.testing.assert_close(ours_out, theirs_out, rtol=0, atol=1e-5)


@needs_diffusers("HunyuanVideoTransformer3DModel", "comparing with diffusers' HunyuanVideo transformer")
def test_the_plain_torch_transformer_patches_as_diffusers_does():
    """Random weights at a patch of 2x2 (the demo's is 1): the same unpatchifying as diffusers'."""
    from diffusers import HunyuanVideoTransformer3DModel

    shape = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=16, num_layers=1,
                 num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
                 text_embed_dim=8, pooled_projection_dim=8, rope_axes_dim=(4, 6, 6), guidance_embeds=False)
    torch.manual_seed(0)
    theirs = HunyuanVideoTransformer3DModel(**shape).eval()
    ours = DemoHunyuanTransformer(**shape).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    generator = torch.Generator().manual_seed(1)
    kwargs = dict(hidden_states=torch.randn(1, 4, 3, 8, 6, generator=generator), timestep=torch.tensor([500.0]),
                  encoder_hidden_states=torch.randn(1, 5, 8, generator=generator),
                  encoder_attention_mask=torch.tensor([[1, 1, 1, 0, 0]]),
                  pooled_projections=torch.randn(1, 8, generator=generator), return_dict=False)
    with torch.no_grad():
        torch.testing.assert_close(ours(**kwargs)[0], theirs(**kwargs)[0], rtol=0, atol=1e-5)


def test_an_old_diffusers_refuses_the_wan_demo_in_one_line_before_loading(monkeypatch, capsys, tmp_path):
    from easycache import versions

    real = versions.installed
    monkeypatch.setattr(versions, "installed",
                        lambda name: versions.Version("0.31.0") if name == "diffusers" else real(name))
    code = easycache_sample_video.main(["--model", "demo-wan", "--prompt", "a red circle moving left",
                                        "--save-path", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "--model demo-wan" in lines[0] and "diffusers >= 0.33" in lines[0] and "diffusers 0.31.0" in lines[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_require_names_feature_installed_and_needed_versions(monkeypatch):
    from easycache import versions
    from easycache.errors import UsageError

    monkeypatch.setattr(versions, "installed", lambda name: versions.Version("0.35.0"))
    versions.require("branch names", "diffusers", "0.35")  # the floor itself is enough
    with pytest.raises(UsageError, match=r"^HunyuanVideo-1\.5 needs diffusers >= 0\.36; this environment has "
                                         r"diffusers 0\.35\.0 \(pip install 'diffusers>=0\.36'\)$"):
        versions.require("HunyuanVideo-1.5", "diffusers", "0.36")
    monkeypatch.setattr(versions, "installed", lambda name: None)
    with pytest.raises(UsageError, match="this environment has no ray"):
        versions.require("--ray", "ray", "2.0")


def test_a_wan_pipeline_that_cannot_clean_its_prompt_is_refused_in_one_line(monkeypatch):
    """diffusers 0.33 to 0.36 call ftfy in every Wan prompt but import it only when installed: the
    diffusers backend probes that once the pipeline is loaded, before sampling."""
    import types

    from easycache.backends.diffusers import check_prompt_cleaning
    from easycache.errors import UsageError

    module = types.ModuleType("fake_pipeline_wan")
    module.basic_clean = lambda text: ftfy.fix_text(text)  # noqa: F821 (ftfy undefined, as there)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    FakeWanPipeline = type("FakeWanPipeline", (), {"__module__": module.__name__})
    with pytest.raises(UsageError, match=r"^FakeWanPipeline of diffusers .* cleans every prompt with ftfy, which "
                                         r"is not installed .*: pip install ftfy$"):
        check_prompt_cleaning(FakeWanPipeline)
    module.basic_clean = lambda text: text.strip()
    check_prompt_cleaning(FakeWanPipeline)  # a prompt it can clean passes


def test_context_parallelism_on_an_old_diffusers_is_refused_before_loading(monkeypatch, capsys, tmp_path):
    from easycache import versions

    real = versions.installed
    monkeypatch.setattr(versions, "installed",
                        lambda name: versions.Version("0.35.0") if name == "diffusers" else real(name))
    code = easycache_sample_video.main(["--backend", "diffusers", "--model", str(tmp_path), "--prompt", "a cat",
                                        "--ulysses-degree", "2", "--save-path", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines  # the folder is no pipeline: nothing was loaded
    assert "--ulysses-degree" in lines[0] and "needs diffusers >= 0.36" in lines[0] and "diffusers 0.35.0" in lines[0]


@pytest.mark.parametrize("class_name, expected", [
    ("FancyFuturePipeline", "this diffusers ({version}) has no FancyFuturePipeline; pip install -U diffusers"),
    pytest.param("HunyuanVideoPipeline", "needs diffusers >= 0.32; this environment has diffusers {version}",
                 marks=pytest.mark.skipif(hasattr(__import__("diffusers"), "HunyuanVideoPipeline"),
                                          reason="this diffusers has HunyuanVideoPipeline")),
])
def test_a_pipeline_this_diffusers_lacks_is_one_line_before_its_weights_load(tmp_path, capsys, class_name, expected):
    import diffusers

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name, "_diffusers_version": "9.0.0"}))
    code = easycache_sample_video.main(["--backend", "diffusers", "--model", str(folder), "--prompt", "a cat",
                                        "--video-size", "16", "16", "--video-length", "9", "--infer-steps", "2",
                                        "--save-path", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert f"--model {folder} ({class_name})" in lines[0]
    assert expected.format(version=diffusers.__version__) in lines[0]
