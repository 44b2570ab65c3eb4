"""Tencent's HunyuanVideo-1.5 (filled in next)."""

CODE_BASES = ()
