"""EasyCache: the caching rule, its state and its records. Plain torch, no model knowledge.

The transformer is a black box ``v = F(x)``. At each denoising step the rule predicts how much the
output would change from how much the input changed, scaled by the *transformation rate* ``k``
measured between the last two computed steps. While the accumulated predicted change stays below
``thresh``, the transformer is skipped and the last ``v - x`` is added to the new input instead.

Exactly (``|a|`` is ``a.abs().float().mean()``), at a call with input ``x`` at step ``s`` of ``N``:

1. ``s < warmup_steps`` or ``s == N - 1``: compute, ``E = 0``.
2. else if ``k`` is unset: compute.
3. else ``E += k * |x - x_prev| / |v_full|``; reuse if ``E < thresh``, else compute and ``E = 0``.
4. ``x_prev = x`` on every call.
5. reuse returns ``x + delta``; the transformer is not called.
6. compute: ``v = F(x)``; ``k = |v - v_full| / |x - x_full|`` if a previous computed call exists;
   then ``delta = v - x``, ``x_full = x``, ``v_full = v``.

Beyond the reference code: the state lives on this object (one per model instance); a new
generation resets it; calls with the same timestep are one step (classifier-free guidance as two
calls), decided once on the step's first call, each branch keeping its own ``delta``; an input with
more channels than the output (image-to-video conditioning) is narrowed to the predicted channels;
with a process group, every rank takes the same decision.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Hashable

import torch


def knob(default, help: str, flag: str | None = None, cli: bool = True, choices: tuple | None = None,
         aliases: tuple[str, ...] = ()):
    """A config field with its command-line help beside it. ``easycache/cli.py`` makes the flag
    (its name from the config's naming rule unless ``flag`` gives one; none where ``cli`` is False;
    ``aliases``: former spellings that keep working)."""
    return field(default=default, metadata={"help": help, "flag": flag, "cli": cli, "choices": choices,
                                            "aliases": aliases})


@dataclass(frozen=True)
class EasyCacheConfig:
    """What the cache trades, knob by knob: each field's help says it (and is the flag's help).

    Frozen: derive a variant with ``dataclasses.replace(config, thresh=...)``. Adding a knob here
    adds its flag to every entry script and its value to every run JSON.
    """

    thresh: float = knob(
        0.025,
        "skip a step while the accumulated predicted relative change of the output stays below this; "
        "higher is faster and further from the uncached video, 0 computes every step (bit-identical "
        "to no cache). EasyCache's HunyuanVideo default 0.025 gives about 2.2x on 50 steps",
    )
    warmup_steps: int = knob(
        5, "the first steps are always computed: they shape the video's layout and change fast; "
        "more is safer and slower",
    )
    num_steps: int = knob(
        50, "denoising steps of one generation (the last is always computed); a pipeline's call "
        "supplies its own count", cli=False,
    )
    process_group: Any = knob(
        None, "torch.distributed group whose ranks run one generation together (sequence "
        "parallelism): the decision is all-reduced (compute if any rank would); None decides locally",
        cli=False,
    )
    max_consecutive_reuse: int | None = knob(
        None, "beyond the rule, off by default: compute after this many reused steps in a row, "
        "whatever the accumulated error; bounds the drift of long reuse runs at some speed",
        flag="--easycache-max-reuse",
    )
    extrapolate: bool = knob(
        False, "beyond the rule, off by default: a reused step adds the cached delta extrapolated to "
        "first order from the last two computed steps instead of the last delta as it is; costs one "
        "more latent per branch",
    )
    kalman_rate: bool = knob(
        False, "beyond the rule, off by default: decide with a scalar Kalman estimate of the "
        "transformation rate k over the computed steps (NaviCache's filter: process and measurement "
        "noise 0.05, restarted at each warm-up step) instead of the last measured k; one noisy "
        "measurement then moves the decisions less. Costs nothing",
    )

    def __post_init__(self) -> None:
        if not (isinstance(self.thresh, (int, float)) and math.isfinite(self.thresh) and self.thresh >= 0):
            raise ValueError(f"EasyCacheConfig.thresh must be a finite number >= 0, got {self.thresh!r}")
        if not (isinstance(self.warmup_steps, int) and self.warmup_steps >= 0):
            raise ValueError(f"EasyCacheConfig.warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if not (isinstance(self.num_steps, int) and self.num_steps >= 1):
            raise ValueError(f"EasyCacheConfig.num_steps must be an integer >= 1, got {self.num_steps!r}")
        cap = self.max_consecutive_reuse
        if cap is not None and not (isinstance(cap, int) and cap >= 1):
            raise ValueError(f"EasyCacheConfig.max_consecutive_reuse must be None or an integer >= 1, got {cap!r}")

    def as_record(self) -> dict:
        """Every field but the process group (not data), for a run's JSON."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "process_group"}


KALMAN_NOISE = 0.05  # ``kalman_rate``'s process and measurement noise variances (NaviCache's Q = R)


def not_compiled(fn: Callable) -> Callable:
    """Keep ``fn`` out of any graph ``torch.compile`` captures: the decision reads ``k`` and the
    error on the host, and a decision traced into a graph would be replayed, not taken again.
    A compiled transformer still compiles: only these frames run eagerly."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    return disable(fn) if disable is not None else fn


@dataclass
class CallRecord:
    """One transformer call: where it was, what the rule decided and what it cost.

    ``k`` is the transformation rate after the call; ``accumulated_error`` is the error the step's
    decision was taken on (0 on forced steps); ``seconds`` is the call's wall-clock time.
    """

    step: int
    timestep: float | None
    branch: str
    computed: bool
    k: float | None
    accumulated_error: float
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def mean_abs(a: torch.Tensor) -> torch.Tensor:
    """The rule's size of a tensor: mean absolute value, accumulated in float32."""
    return a.detach().abs().float().mean()


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float | None:
    """``numerator / denominator`` as a float, or None where it is not a usable finite number."""
    den = float(denominator)
    if den == 0.0 or not math.isfinite(den):
        return None
    value = float(numerator) / den
    return value if math.isfinite(value) else None


def predicted_part(x: torch.Tensor, narrow: tuple[int, int] | None) -> torch.Tensor:
    """The part of the input that the output predicts: the first ``size`` entries of dim ``dim``.

    Image-to-video transformers take the noisy latent concatenated with conditioning channels and
    predict only the noisy latent; the rule compares and updates that part alone.
    """
    if narrow is None or x.shape[narrow[0]] == narrow[1]:
        return x
    return x.narrow(narrow[0], 0, narrow[1])


def narrowing(x: torch.Tensor, v: torch.Tensor) -> tuple[int, int] | None:
    """How the input maps onto an output of shape ``v``: None when equal, else (dim, size) for the
    one dimension (the channels) where the input carries more."""
    if x.shape == v.shape:
        return None
    differ = [d for d in range(x.dim()) if x.dim() == v.dim() and x.shape[d] != v.shape[d]]
    if len(differ) != 1 or x.shape[differ[0]] < v.shape[differ[0]]:
        raise ValueError(
            "EasyCache needs the transformer's output to have the shape of its (noisy-latent) input, "
            f"or of its first channels; got input {tuple(x.shape)} and output {tuple(v.shape)}"
        )
    return differ[0], v.shape[differ[0]]


@dataclass
class _Branch:
    """Per-branch (e.g. cond / uncond) memory: the last output minus input of this branch (and,
    for ``extrapolate``, the one before, with the steps they were computed at)."""

    delta: torch.Tensor | None = None
    step: int = -1
    previous_delta: torch.Tensor | None = None
    previous_step: int = -1

    def estimate(self, step: int, extrapolate: bool) -> torch.Tensor:
        """The delta to add at ``step``: the last one, or its first-order extrapolation."""
        if not extrapolate or self.previous_delta is None:
            return self.delta
        slope = (self.delta - self.previous_delta) / (self.step - self.previous_step)
        return self.delta + slope * (step - self.step)


@dataclass
class _RuleState:
    """The rule's state for one generation (see the module docstring for the names)."""

    step: int = -1
    timestep: float | None = None
    num_steps: int = 50
    compute_this_step: bool = True
    decided_by: Hashable | None = None
    calls_in_step: int = 0
    x_prev: torch.Tensor | None = None
    x_full: torch.Tensor | None = None
    v_full: torch.Tensor | None = None
    k: float | None = None
    k_estimate: float = 0.0  # ``kalman_rate``: the filtered rate and its variance
    k_variance: float = 1.0
    error: float = 0.0
    decision_error: float = 0.0
    reused_in_row: int = 0
    narrow: tuple[int, int] | None = None
    owner: Hashable | None = None
    branches: dict = field(default_factory=dict)


class EasyCache:
    """The installed cache of one model instance: call it with each transformer input.

    ``cache(x, timestep, branch, compute)`` returns the model's prediction for ``x``: either
    ``compute(x)`` or the cached estimate ``x + delta``. Adapters (see ``install.py``) translate a
    model's call into this one and back.
    """

    def __init__(self, config: EasyCacheConfig | None = None):
        self.config = config or EasyCacheConfig()
        self.records: list[CallRecord] = []
        self.num_steps_source: Callable[[], int | None] | None = None
        self._state = _RuleState(num_steps=self.config.num_steps)

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Begin a new generation: forget every cached tensor, the rate, the error and the records."""
        self.records = []
        self._state = _RuleState(num_steps=self.config.num_steps)

    @property
    def step(self) -> int:
        """Index of the current denoising step in this generation (-1 before the first call)."""
        return self._state.step

    @property
    def num_steps(self) -> int:
        """Steps of the current generation, as the rule counts them."""
        return self._state.num_steps

    # ------------------------------------------------------------------ the rule
    def __call__(
        self,
        x: torch.Tensor,
        timestep: float | None,
        branch: Hashable | None,
        compute: Callable[[torch.Tensor], torch.Tensor],
        owner: Hashable | None = None,
    ) -> torch.Tensor:
        """One transformer call. ``branch`` names the call within its step (None: its position);
        ``owner`` names the model called, when one cache serves several (Wan 2.2's two experts)."""
        started = _now(x)
        first_call = self._enter_step(x, timestep, owner)
        state = self._state
        branch = state.calls_in_step if branch is None else branch
        state.calls_in_step += 1
        if first_call:
            state.decided_by = branch
        slot = state.branches.setdefault(branch, _Branch())

        if not state.compute_this_step and slot.delta is not None:
            v = predicted_part(x, state.narrow) + slot.estimate(state.step, self.config.extrapolate)
            computed = False
        else:
            v = compute(x)
            self._learn(x, v, slot, is_decider=branch == state.decided_by)
            computed = True

        self.records.append(
            CallRecord(
                step=state.step,
                timestep=timestep,
                branch=str(branch),
                computed=computed,
                k=state.k,
                accumulated_error=state.decision_error,
                seconds=_now(x) - started,
            )
        )
        return v

    @not_compiled
    def _enter_step(self, x: torch.Tensor, timestep: float | None, owner: Hashable | None) -> bool:
        """Start and decide a new step unless ``timestep`` is the current one's. True if it started."""
        state = self._state
        if timestep is not None and state.step >= 0 and timestep == state.timestep:
            return False
        # Timesteps fall within a generation: a step past the last one, or a timestep that rises,
        # can only be the first step of the next generation.
        rises = timestep is not None and state.timestep is not None and timestep > state.timestep
        if state.step + 1 >= state.num_steps or rises:
            self.reset()
            state = self._state
        if state.step < 0 and self.num_steps_source is not None:
            state.num_steps = self.num_steps_source() or self.config.num_steps
        if owner != state.owner:
            self._restart_rate(owner)
        state.step += 1
        state.timestep = timestep
        state.calls_in_step = 0
        state.compute_this_step = self._decide(predicted_part(x, state.narrow))
        state.x_prev = predicted_part(x, state.narrow).detach().clone()
        return True

    def _restart_rate(self, owner: Hashable | None) -> None:
        """Another model takes over (Wan 2.2's low-noise expert): its rate and deltas are unknown,
        so the cached tensors are dropped and the next steps compute until ``k`` is measured again.
        The step counter, and with it warmup and the last step, stays the generation's."""
        state = self._state
        state.owner = owner
        state.x_prev = state.x_full = state.v_full = state.k = state.narrow = None
        state.error, state.k_estimate, state.k_variance = 0.0, 0.0, 1.0
        state.branches = {}

    def _decide(self, x: torch.Tensor) -> bool:
        """Rule steps 1-3 for the first call of a step: True to compute, False to reuse."""
        state, cfg = self._state, self.config
        if state.step < cfg.warmup_steps or state.step == state.num_steps - 1:
            state.error = state.decision_error = 0.0
            state.reused_in_row = 0
            return True
        if state.k is None or state.x_prev is None or state.v_full is None or x.shape != state.x_prev.shape:
            compute = True
        else:
            rate = _ratio(mean_abs(x - state.x_prev), mean_abs(state.v_full))
            state.error = math.inf if rate is None else state.error + state.k * rate
            compute = not state.error < cfg.thresh
            if cfg.max_consecutive_reuse is not None and state.reused_in_row >= cfg.max_consecutive_reuse:
                compute = True
        compute = self._agree(compute, x.device)
        state.decision_error = state.error
        state.reused_in_row = 0 if compute else state.reused_in_row + 1
        if compute:
            state.error = 0.0
        return compute

    @not_compiled
    def _learn(self, x: torch.Tensor, v: torch.Tensor, slot: _Branch, is_decider: bool) -> None:
        """Rule step 6 after a computed call: update the rate (deciding branch) and the delta."""
        state = self._state
        if state.narrow is None:
            state.narrow = narrowing(x, v)
        x = predicted_part(x, state.narrow)
        if x.shape != v.shape:
            raise ValueError(
                f"EasyCache needs the transformer's output to have the shape of its (noisy-latent) input; "
                f"got input {tuple(x.shape)} and output {tuple(v.shape)}"
            )
        if self.config.extrapolate and slot.delta is not None:
            slot.previous_delta, slot.previous_step = slot.delta, slot.step
        slot.delta, slot.step = (v - x).detach(), state.step
        if not is_decider:
            return
        if state.v_full is not None and state.x_full is not None and state.v_full.shape == v.shape:
            state.k = _ratio(mean_abs(v - state.v_full), mean_abs(x - state.x_full))
            if self.config.kalman_rate and state.k is not None:
                state.k = self._filtered_rate(state.k)
        state.x_full = x.detach().clone()
        state.v_full = v.detach()
        if state.x_prev is None or state.x_prev.shape != x.shape:
            state.x_prev = state.x_full

    def _filtered_rate(self, z: float) -> float:
        """``kalman_rate``: the scalar Kalman estimate after measuring the rate ``z``. During the
        warm-up the estimate is the measurement (variance 1); after it, with ``Q = R = KALMAN_NOISE``:
        ``P += Q; K = P / (P + R); k += K (z - k); P *= 1 - K``."""
        state = self._state
        if state.step < self.config.warmup_steps:
            state.k_estimate, state.k_variance = z, 1.0
        else:
            state.k_variance += KALMAN_NOISE
            gain = state.k_variance / (state.k_variance + KALMAN_NOISE)
            state.k_estimate = (1.0 - gain) * state.k_estimate + gain * z
            state.k_variance *= 1.0 - gain
        return state.k_estimate

    def _agree(self, compute: bool, device: torch.device) -> bool:
        """All ranks of ``process_group`` take the same decision: compute if any rank would."""
        group = self.config.process_group
        if group is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return compute
        flag = torch.tensor([1.0 if compute else 0.0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=group)
        return bool(flag.item() > 0)

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        """Counts and seconds of the current generation. ``speedup`` is calls / computed calls."""
        calls = len(self.records)
        computed = sum(r.computed for r in self.records)
        compute_seconds = sum(r.seconds for r in self.records if r.computed)
        reuse_seconds = sum(r.seconds for r in self.records if not r.computed)
        return {
            "calls": calls,
            "computed": computed,
            "reused": calls - computed,
            "speedup": calls / computed if computed else float("nan"),
            "seconds": compute_seconds + reuse_seconds,
            "compute_seconds": compute_seconds,
            "reuse_seconds": reuse_seconds,
            "steps": len({r.step for r in self.records}),
            "thresh": self.config.thresh,
            "warmup_steps": self.config.warmup_steps,
        }


@not_compiled
def _now(x: torch.Tensor) -> float:
    """Wall-clock time after the device's queued work: honest per-call seconds on a GPU."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter()
