"""Skips for tests whose feature needs a newer release than this environment has. The reason names
the feature, the installed version and the one it needs (the floors are ``easycache.versions``'),
so a run in HunyuanVideo's own environment (diffusers 0.31) says what it did not test and why."""

from __future__ import annotations

import pytest

from easycache.versions import DIFFUSERS_FLOORS, at_least, installed


def reason(feature: str, package: str, minimum: str) -> str:
    return f"{feature} needs {package} >= {minimum}; this environment has {package} {installed(package)}"


def needs(package: str, minimum: str, feature: str) -> pytest.MarkDecorator:
    """A mark: skip the test unless ``package >= minimum``."""
    return pytest.mark.skipif(not at_least(package, minimum), reason=reason(feature, package, minimum))


def needs_diffusers(name: str, feature: str | None = None) -> pytest.MarkDecorator:
    """A mark: skip unless diffusers has ``name`` (a class or method of ``DIFFUSERS_FLOORS``)."""
    return needs("diffusers", DIFFUSERS_FLOORS[name], feature or f"diffusers' {name}")


def skip_module_unless_diffusers(name: str, feature: str | None = None) -> None:
    """At a test module's top, before importing what needs it: skip the whole module."""
    minimum = DIFFUSERS_FLOORS[name]
    if not at_least("diffusers", minimum):
        pytest.skip(reason(feature or f"diffusers' {name}", "diffusers", minimum), allow_module_level=True)


# The tiny random HunyuanVideo pipeline of easycache.testing.tiny_hunyuan (diffusers' own classes).
HUNYUAN_PIPELINE = "HunyuanVideoPipeline"


def _wan_prompts_clean() -> bool:
    """Whether diffusers' Wan pipelines take a prompt here: 0.33 to 0.36 clean it with ftfy, which they
    import only when installed (HunyuanVideo-1.5's pins have no ftfy)."""
    if not at_least("diffusers", DIFFUSERS_FLOORS["WanPipeline"]):
        return False
    from diffusers.pipelines.wan import pipeline_wan

    try:
        pipeline_wan.basic_clean("a prompt")
    except NameError:
        return False
    return True


WAN_PROMPTS = pytest.mark.skipif(not _wan_prompts_clean(), reason=(
    f"diffusers {installed('diffusers')}'s WanPipeline cleans prompts with ftfy, which is not installed "
    "(pip install ftfy; the diffusers backend refuses this in one line)"))
