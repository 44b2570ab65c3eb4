#!/usr/bin/env python3
"""HunyuanVideo + EasyCache in the browser: a drop-in for HunyuanVideo's ``gradio_server.py``.

    python3 easycache_gradio_server.py --flow-reverse --use-cpu-offload      # in a HunyuanVideo checkout
    python3 easycache_gradio_server.py --model demo                          # the embedded demo, any CPU

Run it inside a HunyuanVideo checkout (or anywhere with --hunyuan-root PATH) with HunyuanVideo's
own flags, as Tencent's page runs; ``--backend diffusers --model ID_OR_FOLDER`` serves a diffusers
pipeline. The model loads once; the page generates one video at a time (Gradio's queue, concurrency
1: one cache per model instance) and writes each as the command line does (video and run JSON) into
--save-path (default ./gradio_outputs, Tencent's page's folder). It binds to 127.0.0.1 unless
--server-name (or $SERVER_NAME, as Tencent's page reads it) says otherwise. Every flag, the seed and
the address (a port in use, a name not this machine's) are checked before the model loads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from loguru import logger

from easycache import cli
from easycache.errors import UsageError


def build_parser():
    parser = cli.entry_parser("easycache_gradio_server.py", __doc__.split("\n\n")[0])
    server = parser.add_argument_group("the web server")
    server.add_argument("--server-name", default=None,
                        help="address to bind (default: $SERVER_NAME, else 127.0.0.1; 0.0.0.0 serves every network)")
    server.add_argument("--server-port", default=None, help="port (default: $SERVER_PORT, else 8081)")
    return parser


def _given(flag_value: str | None, flag: str, variable: str, default: str) -> tuple[str, str]:
    """A server setting and how to name it in a message: the flag, else Tencent's page's environment
    variable, else the default (named by the flag that changes it)."""
    if flag_value:
        return flag_value, f"{flag} {flag_value}"
    if os.environ.get(variable):
        return os.environ[variable], f"${variable} {os.environ[variable]}"
    return default, f"{flag} {default} (the default)"


def server_flags(ours) -> tuple[str, str]:
    """How the address's name and port are named in a message (where each came from)."""
    return (_given(ours.server_name, "--server-name", "SERVER_NAME", "127.0.0.1")[1],
            _given(ours.server_port, "--server-port", "SERVER_PORT", "8081")[1])


def server_address(ours) -> tuple[str, int]:
    """Where to serve: the flags, else Tencent's page's environment variables, else 127.0.0.1:8081."""
    name = _given(ours.server_name, "--server-name", "SERVER_NAME", "127.0.0.1")[0]
    port_text, port_flag = _given(ours.server_port, "--server-port", "SERVER_PORT", "8081")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise UsageError(f"{port_flag}: give a port from 1 to 65535")
    return name, port


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    try:
        ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
        from easycache.backends import make_backend

        backend = make_backend(cli.backend_name(ours, rest), hunyuan_root=ours.hunyuan_root)
        if ours.help:
            parser.print_help()
            backend.print_help()
            return 0
        from easycache import web
        from easycache.runner import RunOptions

        problem = web.web_problem()
        if problem:
            raise UsageError(problem)
        if ours.prompt_file or ours.seeds:
            raise UsageError("--prompt-file / --seeds: the page makes one video at a time; run "
                             "easycache_sample_video.py for many videos")
        ray_flags = [f for f in ("ray", "ray_max_retries", "ray_workers", "ray_cpus_per_worker")
                     if getattr(ours, f, None) is not None]
        if ray_flags:
            raise UsageError(f"{' / '.join('--' + f.replace('_', '-') for f in ray_flags)}: the page makes one video "
                             "at a time on its own model; run easycache_sample_video.py --ray for many videos")
        name, port = server_address(ours)
        name_flag, port_flag = server_flags(ours)
        web.check_address(name, port, name_flag, port_flag)  # before minutes of loading, not after
        options = RunOptions(cache=cli.cache_fields(ours), enabled=not ours.no_easycache,
                             attention=cli.attention_mode(ours, backend.name))
        save_given = any(a == "--save-path" or a.startswith("--save-path=") for a in rest)
        session = web.PageSession(backend, rest, options, None if save_given else Path(web.GRADIO_OUTPUTS))
        page = web.build_page(session)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        web.serve(page, name, port, session.save_dir)
    except OSError as error:  # taken between the check and now (a race no check closes): one line
        logger.debug(f"launch failed: {error!r}")
        print(f"error: {port_flag}: could not serve on {name}:{port} (free when checked before loading, taken "
              f"since); pass a free --server-port", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
