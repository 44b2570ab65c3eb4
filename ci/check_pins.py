"""Exit 1, naming each, if an installed package no longer matches its pin in a requirements file.

.ci/run installs the project into HunyuanVideo's and HunyuanVideo-1.5's environments with their
requirement files as constraints; this proves afterwards that no pin moved (``pip install -e .``
must not upgrade a user's torch, diffusers or transformers).

    python ci/check_pins.py ci/requirements-hunyuanvideo.txt
"""

from __future__ import annotations

import sys
from importlib import metadata

from packaging.requirements import Requirement


def moved_pins(path: str) -> list[str]:
    moved = []
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            moved.append(f"{requirement.name}: not installed (wanted {requirement.specifier})")
            continue
        if not requirement.specifier.contains(version.split("+")[0], prereleases=True):
            moved.append(f"{requirement.name}: {version} installed, {requirement.specifier} pinned")
    return moved


if __name__ == "__main__":
    problems = moved_pins(sys.argv[1])
    for problem in problems:
        print(f"check_pins: {sys.argv[1]}: {problem}", file=sys.stderr)
    print(f"check_pins: {sys.argv[1]}: {'pins moved' if problems else 'every pin holds'}")
    sys.exit(1 if problems else 0)
