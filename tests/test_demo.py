"""The embedded demo model: shipped, loadable, trained well enough to be worth caching, and what
EasyCache does to it at the default threshold, measured through the entry script.

Floors (set from measurement on the shipped weights; see the numbers in the README):
- held-out prompts: at least 16 of 20 show the named colour and move in the named direction;
- EasyCache at thresh 0.025, warmup 5, 50 steps: PSNR against the baseline >= PSNR_FLOOR and at
  most COMPUTED_CEILING of the transformer calls computed.
"""

from __future__ import annotations

import json

import pytest
import torch

import easycache
from easycache.demo import DEMO_DIR, load_demo_pipeline
from easycache.demo.check import HELD_OUT_PROMPTS, matches, read_clip, score_prompts
from easycache.demo.clips import HELD_OUT, TRAIN_COMBOS, prompt_for, sample_clip
from easycache.demo.model import DemoConfig, decode, encode, with_coordinates

# Measured on the shipped weights (seed 0, 50 steps, thresh 0.025): PSNR 31.48 / 30.41 / 30.03 dB,
# 13/50 calls computed for each prompt (0.26). The three are held-out prompts.
PSNR_FLOOR = 28.0
COMPUTED_CEILING = 0.35
CACHE_PROMPTS = ["a red circle moving left", "a blue square moving up", "a yellow triangle moving up"]


@pytest.fixture(scope="module")
def pipe():
    return load_demo_pipeline("cpu")


def test_weights_are_small_safetensors():
    weights = DEMO_DIR / "demo.safetensors"
    assert weights.exists() and (DEMO_DIR / "config.json").exists()
    assert weights.stat().st_size <= 20 * 2**20


def test_held_out_prompts_are_new_combinations():
    assert len(HELD_OUT_PROMPTS) == 20
    trained = {prompt_for(*c) for c in TRAIN_COMBOS}
    assert not trained & set(HELD_OUT_PROMPTS)
    for colour, shape, direction in HELD_OUT:  # every word, and every pair of words, is trained
        assert any(c == colour and d == direction for c, _, d in TRAIN_COMBOS)
        assert any(c == colour and s == shape for c, s, _ in TRAIN_COMBOS)
        assert any(s == shape and d == direction for _, s, d in TRAIN_COMBOS)


def test_reader_reads_drawn_clips_right():
    """The check itself: on clips drawn as training draws them (held-out combinations included), it
    reads the named colour and direction every time, and a still clip has no direction."""
    generator = torch.Generator().manual_seed(0)
    for combos in (TRAIN_COMBOS, HELD_OUT):
        for _ in range(100):
            clip, prompt = sample_clip(generator, 9, 16, combos=combos)
            assert matches(prompt, read_clip(clip.permute(0, 2, 3, 1))), prompt
    still = clip[:1].expand(9, -1, -1, -1)
    assert read_clip(still.permute(0, 2, 3, 1)).direction is None


def test_latents_round_trip_and_carry_coordinates():
    config = DemoConfig()
    clip, _ = sample_clip(torch.Generator().manual_seed(1), config.frames, config.size)
    latents = encode(clip.unsqueeze(0), config.fold)
    assert latents.shape == (1, config.channels, config.frames, 4, 4)
    assert torch.allclose(decode(latents, config.fold)[0], clip, atol=1e-6)
    inputs = with_coordinates(latents)
    assert inputs.shape[1] == config.input_channels == config.channels + 3
    assert torch.equal(inputs[:, : config.channels], latents)
    frame, row, column = inputs[0, config.channels:]
    assert frame[0].eq(-1).all() and frame[-1].eq(1).all()
    assert row[:, 0].eq(-1).all() and column[:, :, -1].eq(1).all()


def test_held_out_prompts_show_named_colour_and_direction(pipe):
    results = score_prompts(pipe, HELD_OUT_PROMPTS, steps=30, seed=0)
    right = sum(ok for *_, ok in results)
    for prompt, reading, ok in results:
        print(f"{'ok ' if ok else 'BAD'} {prompt!r}: {reading}")
    print(f"held-out prompts right: {right}/20")
    assert right >= 16


def test_threshold_zero_is_the_uncached_video(pipe):
    def sample():
        return pipe("a green circle moving down", num_inference_steps=20, output_type="pt",
                    generator=torch.Generator().manual_seed(3)).frames

    plain = sample()
    cache = easycache.apply_easycache(pipe, easycache.EasyCacheConfig(thresh=0.0))
    try:
        cached = sample()
    finally:
        easycache.remove_easycache(pipe)
    assert cache.summary()["computed"] == 20
    assert torch.equal(plain, cached)


@pytest.mark.parametrize("prompt", CACHE_PROMPTS)
def test_entry_script_measures_easycache_on_the_demo(tmp_path, prompt):
    import easycache_sample_video

    code = easycache_sample_video.main(["--model", "demo", "--prompt", prompt, "--seed", "0",
                                        "--save-path", str(tmp_path)])
    assert code == 0
    (metrics_path,) = tmp_path.glob("*_metrics.json")
    metrics = json.loads(metrics_path.read_text())
    print(f"{prompt!r}: PSNR {metrics['psnr']:.2f} dB, computed {metrics['computed_fraction']:.2f}, "
          f"transformer {metrics['transformer_speedup']:.2f}x")
    assert len(list(tmp_path.glob("*_baseline.mp4"))) == len(list(tmp_path.glob("*_easycache.mp4"))) == 1
    assert len(list(tmp_path.glob("*.json"))) == 3 and list(tmp_path.glob("*_side_by_side.gif"))
    assert metrics["thresh"] == 0.025
    assert metrics["psnr"] >= PSNR_FLOOR
    assert metrics["computed_fraction"] <= COMPUTED_CEILING


def test_training_is_seeded(tmp_path):
    import train_demo  # scripts/ is on pytest's pythonpath (pytest.ini)

    for name in ("a", "b"):
        assert train_demo.main(["--steps", "3", "--batch-size", "2", "--pure-noise-steps", "1",
                                "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "a" / "demo.safetensors").read_bytes() == (tmp_path / "b" / "demo.safetensors").read_bytes()
    load_demo_pipeline(folder=tmp_path / "a")("a red circle moving left", num_inference_steps=2)
