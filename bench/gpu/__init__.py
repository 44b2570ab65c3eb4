"""The GPU check's pieces (``bench/gpu_check.py`` is the command): the run's context and budget,
honest timers, the transformers it builds, the results files, and one file per part (a: the rule's
cost, b: sparse attention, c: the CUDA code paths, d: Tencent's transformer)."""
