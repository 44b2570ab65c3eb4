#!/usr/bin/env python3
"""HunyuanVideo + EasyCache in the browser: a drop-in for HunyuanVideo's ``gradio_server.py``.

    python3 easycache_gradio_server.py --flow-reverse --use-cpu-offload      # in a HunyuanVideo checkout
    python3 easycache_gradio_server.py --model demo                          # the embedded demo, any CPU

Run it inside a HunyuanVideo checkout (or anywhere with --hunyuan-root PATH) with HunyuanVideo's
own flags, as Tencent's page runs; ``--backend diffusers --model ID_OR_FOLDER`` serves a diffusers
pipeline. The model loads once; the page generates one video at a time (Gradio's queue, concurrency
1: one cache per model instance) and writes each as the command line does (video and run JSON) into
--save-path (default ./gradio_outputs, Tencent's page's folder). It binds to 127.0.0.1 unless
--server-name (or $SERVER_NAME, as Tencent's page reads it) says otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from easycache import cli
from easycache.errors import UsageError


def build_parser():
    parser = cli.entry_parser("easycache_gradio_server.py", __doc__.split("\n\n")[0])
    server = parser.add_argument_group("the web server")
    server.add_argument("--server-name", default=None,
                        help="address to bind (default: $SERVER_NAME, else 127.0.0.1; 0.0.0.0 serves every network)")
    server.add_argument("--server-port", default=None, help="port (default: $SERVER_PORT, else 8081)")
    return parser


def server_address(ours) -> tuple[str, int]:
    """Where to serve: the flags, else Tencent's page's environment variables, else 127.0.0.1:8081."""
    name = ours.server_name or os.environ.get("SERVER_NAME") or "127.0.0.1"
    port_text = ours.server_port or os.environ.get("SERVER_PORT") or "8081"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise UsageError(f"--server-port {port_text}: give a port from 1 to 65535")
    return name, port


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
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
        name, port = server_address(ours)
        options = RunOptions(cache=cli.cache_fields(ours), enabled=not ours.no_easycache,
                             attention=cli.attention_mode(ours, backend.name))
        save_given = any(a == "--save-path" or a.startswith("--save-path=") for a in rest)
        session = web.PageSession(backend, rest, options, None if save_given else Path(web.GRADIO_OUTPUTS))
        page = web.build_page(session)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    web.serve(page, name, port, session.save_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
