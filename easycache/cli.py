"""The command line, once for every entry: the cache's (and SVG's) flags made from their config
dataclasses, the entries' own flags, and the flow from a command line to a run.

Flags default to *unset*: a flag the user does not give leaves the field to the model's preset
(``easycache.presets``) or, without one, to the dataclass default, which ``--help`` shows. Help
texts are the fields' own (``knob(..., help=...)`` in ``cache.py`` and ``sparse/config.py``), so a
new knob is a new flag, and a value in every run JSON, with no change here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, Callable

from loguru import logger

from .cache import EasyCacheConfig
from .errors import RunFailed, UsageError

ATTENTION_MODES = ("auto", "model", "sdpa")  # easycache.attention.MODES, without importing torch for --help
EASYCACHE_FLAG = "--easycache-{}"  # EasyCache's knobs: --easycache-thresh, --easycache-warmup-steps, ...
SVG_FLAG = "--{}"  # Sparse-VideoGen's flags, snake_case as it spells them: --num_sampled_rows, ...


# ---------------------------------------------------------------------------- config dataclass -> flags
def flag_of(field: dataclasses.Field, naming: str) -> str:
    """The flag of a config field: the one its metadata names, else the naming rule's."""
    name = field.name.replace("_", "-") if naming == EASYCACHE_FLAG else field.name
    return field.metadata.get("flag") or naming.format(name)


def cli_fields(config_cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_cls) if f.metadata.get("cli", True)]


def add_config_flags(group: Any, config_cls: type, naming: str) -> None:
    """One flag per field of ``config_cls`` (each unset unless given), its help the field's own."""
    hints = typing.get_type_hints(config_cls)
    for field in cli_fields(config_cls):
        help_text = field.metadata.get("help", "").replace("%", "%%") + f" (default: {field.default})"
        kind = _scalar_type(hints[field.name])
        options: dict[str, Any] = {"dest": _dest(config_cls, field), "default": None, "help": help_text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options.update(type=kind, metavar=kind.__name__.upper())
            if field.metadata.get("choices"):
                options.update(choices=field.metadata["choices"], metavar=None)
        group.add_argument(flag_of(field, naming), *field.metadata.get("aliases", ()), **options)


def given_fields(namespace: argparse.Namespace, config_cls: type) -> dict:
    """The fields whose flags the user gave."""
    values = {f.name: getattr(namespace, _dest(config_cls, f), None) for f in cli_fields(config_cls)}
    return {name: value for name, value in values.items() if value is not None}


def checked_config(config_cls: type, fields: dict, naming: str) -> Any:
    """``config_cls(**fields)``, a bad value refused as one line naming its flag."""
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    for name, value in fields.items():
        try:
            config_cls(**{name: value})
        except ValueError as error:
            raise UsageError(f"{flag_of(by_name[name], naming)} {value}: {error}") from error
    try:
        return config_cls(**fields)
    except ValueError as error:
        raise UsageError(str(error)) from error


def _dest(config_cls: type, field: dataclasses.Field) -> str:
    return f"{config_cls.__name__}.{field.name}"


def _scalar_type(hint: Any) -> type:
    """``float`` of ``float``; ``int`` of ``int | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


# ---------------------------------------------------------------------------- the entries' flags
def entry_parser(prog: str, description: str, sparse: bool = False, backend: str | None = None,
                 checkout: str = "HunyuanVideo") -> argparse.ArgumentParser:
    """The flags an entry adds to the backend's own: the cache's, the backend (unless the entry
    fixes it), many videos; SVG's."""
    from .backends import BACKENDS

    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # never read a backend's flag as an abbreviation of ours
        prog=prog, description=description, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.error = _refuse  # a bad value of one of our flags: one line, as every other mistake
    group = parser.add_argument_group("EasyCache (unset flags: the model's preset, else the default shown)")
    group.add_argument("-h", "--help", action="store_true", help="show this help (and the backend's flags) and exit")
    add_config_flags(group, EasyCacheConfig, EASYCACHE_FLAG)
    group.add_argument("--no-easycache", action="store_true",
                       help="the baseline: every step computed, through the same code path (threshold 0)")
    group.add_argument("--attention", choices=ATTENTION_MODES, default="auto",
                       help="the dense attention of every computed step: model: the model's own (as its code "
                       "ships); sdpa: torch's scaled_dot_product_attention with no mask (padded text tokens "
                       "dropped: the same video, another kernel's rounding); auto: sdpa where it was measured "
                       "faster than the model's own (masked SDPA, flash-attn 2 on Hopper), else model "
                       "(default: auto)" + ("; SVG's sparse steps take --attention-sparse" if sparse else ""))
    if backend is None:
        group.add_argument("--backend", choices=BACKENDS, default=None,
                           help="tencent: HunyuanVideo's own code (a checkout); hunyuan15: HunyuanVideo-1.5's; "
                           "diffusers: a diffusers pipeline named by --model; demo: the embedded demo model "
                           "(default: tencent; demo with --model demo or demo-wan)")
    else:
        parser.set_defaults(backend=backend)
    group.add_argument("--hunyuan-root", default=None, help=f"{checkout} checkout (default: the current directory)")
    many = parser.add_argument_group("many videos (resumable; torchrun ranks or Ray workers share the work)")
    many.add_argument("--prompt-file", default=None, help="one prompt per line; every prompt x seed is one video. Blank lines and lines starting "
                      "with # (comments) are skipped, their count logged")
    many.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds for every prompt (default: --seed)")
    many.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                      help="make the videos on a Ray cluster, one worker per GPU: ADDRESS is HOST:PORT, "
                      "ray://HOST:PORT or auto (the cluster this machine joined); without it, a local Ray "
                      "instance (pip install -e '.[ray]')")
    many.add_argument("--ray-max-retries", type=int, default=None, metavar="N",
                      help="tries of a failed video after its first, on another worker (default: 2)")
    many.add_argument("--ray-workers", type=int, default=None, metavar="N",
                      help="Ray workers (default: one per GPU of the cluster; on CPUs only, its CPUs / "
                      "--ray-cpus-per-worker); workers beyond what the cluster has start as machines join")
    many.add_argument("--ray-cpus-per-worker", type=int, default=None, metavar="N",
                      help="CPUs each Ray worker reserves; on a CPU-only cluster also its torch threads (default: 1)")
    if sparse:
        from .sparse import SVGConfig

        add_config_flags(parser.add_argument_group("sparse video attention (SVG)"), SVGConfig, SVG_FLAG)
    return parser


def _refuse(message: str):
    """argparse's complaint (``argument --attention: invalid choice: ...``) as our one line, not its usage block."""
    raise UsageError(message)


def backend_name(ours: argparse.Namespace, rest: list[str]) -> str:
    """``--backend``, else ``demo`` for ``--model demo`` (or ``demo-wan``), else ``tencent``."""
    from .demo import DEMO_FOLDERS  # imports neither torch nor diffusers

    model_demo = any(f"--model={name}" in rest for name in DEMO_FOLDERS) or any(
        a == "--model" and b in DEMO_FOLDERS for a, b in zip(rest, rest[1:]))
    if model_demo and ours.backend in (None, "diffusers"):
        return "demo"
    return ours.backend or "tencent"


RAY_FLAGS = ("ray_max_retries", "ray_workers", "ray_cpus_per_worker")


def ray_options(ours: argparse.Namespace):
    """``--ray`` and its flags as ``RayOptions``; None without ``--ray`` (its flags alone are refused)."""
    given = {name: getattr(ours, name) for name in RAY_FLAGS if getattr(ours, name) is not None}
    if ours.ray is None:
        if given:
            flag = "--" + next(iter(given)).replace("_", "-")
            raise UsageError(f"{flag} is for Ray workers: add --ray [ADDRESS], or leave {flag} out")
        return None
    from .ray_jobs import RayOptions

    return RayOptions(address=ours.ray, **{name.removeprefix("ray_"): value for name, value in given.items()})


def attention_mode(ours: argparse.Namespace, backend: str) -> str:
    """``--attention``, refused before loading where this environment cannot run it."""
    from .attention.install import refuse_before_loading

    refuse_before_loading(backend, ours.attention)
    return ours.attention


def cache_fields(ours: argparse.Namespace) -> dict:
    """The EasyCache fields the user gave, checked (one line naming the flag) before anything loads."""
    fields = given_fields(ours, EasyCacheConfig)
    checked_config(EasyCacheConfig, fields, EASYCACHE_FLAG)
    return fields


# ---------------------------------------------------------------------------- the flow
def main(argv: list[str] | None, parser: argparse.ArgumentParser,
         extensions: Callable[[argparse.Namespace], tuple] = lambda ours: ()) -> int:
    """Parse our flags (the rest is the backend's), run, and turn a user's mistake into one line.

    ``extensions(ours)`` gives the steps beside the cache that the entry adds (SVG)."""
    try:
        ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
        name = backend_name(ours, rest)
        from .backends import make_backend

        backend = make_backend(name, hunyuan_root=ours.hunyuan_root)
        if ours.help:
            parser.print_help()
            backend.print_help()
            return 0
        from .batch import read_prompts
        from .runner import RunOptions, run

        on_ray = ray_options(ours)
        options = RunOptions(cache=cache_fields(ours), enabled=not ours.no_easycache,
                             prompts=read_prompts(ours.prompt_file) if ours.prompt_file else None,
                             seeds=ours.seeds, attention=attention_mode(ours, name))
        if on_ray is None:
            run(backend, rest, options, extensions(ours))
        else:
            from .ray_jobs import run_on_ray

            run_on_ray(backend, rest, options, extensions(ours), on_ray)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RunFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        logger.warning("interrupted: videos and records already written are kept")
        return 130
    return 0
