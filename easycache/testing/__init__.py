"""Tiny random models built offline (no hub), for the tests and for ``bench/gpu_check.py --tiny``,
which both import them from here: a tool a user runs on a GPU machine must not depend on ``tests/``.

``tiny_hunyuan``: diffusers' HunyuanVideo pipeline at diffusers' own fast-test sizes (needs diffusers
>= 0.32, which has the class).
``tencent_tiny``: Tencent's HunyuanVideo checkout (``HYVIDEO_ROOT``) made importable on a CPU, and tiny
random checkpoints in its layout (the shims it applies are listed in its docstring).
"""
