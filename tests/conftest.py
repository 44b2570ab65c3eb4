"""Shared fixtures. Tests never reach the network: the hub is off for this process and every
subprocess it starts."""

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def skip_unless_hunyuan_pipeline() -> None:
    from needs import skip_unless_diffusers

    skip_unless_diffusers("HunyuanVideoPipeline", "the tiny diffusers HunyuanVideo pipeline")


@pytest.fixture(scope="session")
def tiny_pipe():
    """The tiny random diffusers HunyuanVideo pipeline (``easycache.testing.tiny_hunyuan``), shared: a
    test that installs a cache or sparse attention on it removes them again. Skipped, naming the
    version, on a diffusers without HunyuanVideo (before 0.32)."""
    skip_unless_hunyuan_pipeline()
    from easycache.testing.tiny_hunyuan import tiny_pipeline

    return tiny_pipeline()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The same tiny pipeline saved as a folder, for ``--model FOLDER`` and ``--model`` of the bench."""
    skip_unless_hunyuan_pipeline()
    from easycache.testing.tiny_hunyuan import tiny_pipeline

    folder = tmp_path_factory.mktemp("tiny-hunyuanvideo")
    tiny_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models' tensors are a few hundred numbers: one intra-op thread is several times faster
    than two on a shared CPU (the count is restored for the other test modules)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tencent(tmp_path, monkeypatch):
    """A HunyuanVideo checkout (``HYVIDEO_ROOT``) importable on CPU, tiny weights in ./ckpts of a
    fresh working directory: yields (hyvideo modules, the weights' flags, the directory). Skipped,
    with its reason, without a checkout."""
    from easycache.testing.tencent_tiny import enable_cpu_shims, hyvideo_root_or_skip_reason, write_tiny_checkpoints

    root, reason = hyvideo_root_or_skip_reason()
    if root is None:
        pytest.skip(f"Tencent integration: {reason}")
    model_base = tmp_path / "ckpts"
    monkeypatch.chdir(tmp_path)
    with enable_cpu_shims(root, model_base) as modules:
        yield modules, write_tiny_checkpoints(model_base)["cli_flags"], tmp_path
