"""Skips for tests whose feature needs a newer release than this environment has. The reason names
the feature, the installed version and the one it needs (the floors are ``easycache.versions``'),
so a run in HunyuanVideo's own environment (diffusers 0.31) says what it did not test and why."""

from __future__ import annotations

import pytest

from easycache.versions import DIFFUSERS_FLOORS, at_least, installed, shortfall


def needs(package: str, minimum: str, feature: str) -> pytest.MarkDecorator:
    """A mark: skip the test unless ``package >= minimum``, with ``easycache.versions.shortfall``'s line."""
    reason = shortfall(feature, package, minimum)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def needs_diffusers(name: str, feature: str | None = None) -> pytest.MarkDecorator:
    """A mark: skip unless diffusers has ``name`` (a class or method of ``DIFFUSERS_FLOORS``)."""
    return needs("diffusers", DIFFUSERS_FLOORS[name], feature or f"diffusers' {name}")


def skip_unless_diffusers(name: str, feature: str | None = None) -> None:
    """Skip unless diffusers has ``name``: at a test module's top (before importing what needs it: the
    whole module) or inside a fixture or test."""
    reason = shortfall(feature or f"diffusers' {name}", "diffusers", DIFFUSERS_FLOORS[name])
    if reason:
        pytest.skip(reason, allow_module_level=True)


def _wan_prompts_clean() -> bool:
    """Whether diffusers' Wan pipelines take a prompt here: 0.33 to 0.36 clean it with ftfy, which they
    import only when installed (HunyuanVideo-1.5's pins have no ftfy)."""
    if not at_least("diffusers", DIFFUSERS_FLOORS["WanPipeline"]):
        return False
    from diffusers import WanPipeline

    from easycache.backends.diffusers import check_prompt_cleaning
    from easycache.errors import UsageError

    try:
        check_prompt_cleaning(WanPipeline)
    except UsageError:
        return False
    return True


WAN_PROMPTS = pytest.mark.skipif(not _wan_prompts_clean(), reason=(
    f"diffusers {installed('diffusers')}'s WanPipeline cleans prompts with ftfy, which is not installed "
    "(pip install ftfy; the diffusers backend refuses this in one line)"))
