"""Many videos over a Ray cluster (``--ray [ADDRESS]``): Ray's actors are the workers, the driver
holds the queue.

Workers: one Ray actor per GPU (``num_gpus=1``; on a CPU-only cluster, ``--ray-cpus-per-worker``
CPUs each, its torch threads set to match). Each parses the same command line, loads the model once
and installs EasyCache on its own instance. The driver hands the next job to whichever worker is
idle, so a fast worker takes more; a worker that dies (a crashed machine, ``ray kill``) has its job
given to another worker and is replaced by a new actor, which Ray places wherever resources are
free (a machine that joins mid-run is used from then on).

Who writes: the driver. A worker makes a job's files in a private folder and returns their bytes (a
video of minutes of GPU time is a few MB); the driver writes them under the names batch mode gives
them, each atomically, the job's last file last, and only once per job. So the machines need no
shared filesystem, a killed worker leaves no half-written file, and a job retried after its first
worker was given up for dead cannot be written twice. Resume goes by job identity and
``summary.json`` as in batch mode (``easycache.batch``): a rerun of a finished set starts no worker
and loads no model.

Failures: a job whose worker fails or dies is tried again on another worker where one is free, up
to ``--ray-max-retries`` more times; a job that fails every try is recorded, with its error, in
``summary.json``, the others go on, and the run exits 1.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from tqdm import tqdm

from .batch import Job, JobLock, pending_jobs, write_summary
from .errors import RunFailed, UsageError
from .outputs import prepare_save_dir, written_whole
from .runner import Backend, Plan, RunOptions, plan_run, seconds_text, start_generation
from .versions import require

RAY_FLOOR = "2.40.0"  # the oldest Ray the suite ran on (CI runs the newest)
LOCAL = ""  # ``--ray`` without an address: a local Ray instance (or the cluster RAY_ADDRESS names)


@dataclass(frozen=True)
class RayOptions:
    """``--ray`` and its flags."""

    address: str = LOCAL  # LOCAL, "auto" (the cluster this machine is part of), HOST:PORT or ray://HOST:PORT
    max_retries: int = 2  # tries of a job after its first, on another worker where one is free
    workers: int | None = None  # None: one per GPU of the cluster (CPU-only: its CPUs / cpus_per_worker)
    cpus_per_worker: int = 1  # CPUs each worker reserves (its torch threads, on a CPU-only cluster)


# ---------------------------------------------------------------------------- the worker (a Ray actor)
def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class Worker:
    """One Ray actor: the command line parsed again, the model loaded once, one job at a time.

    Creating the actor is cheap (so the driver sees, from ``placed()``, that Ray found it a
    machine); ``ready()`` loads the model. A load error is kept, not raised, so that ``ready()`` can
    tell the driver in one line (a ``UsageError``, such as missing weights, stops the run as it
    would without Ray)."""

    def __init__(self, backend_class: type, hunyuan_root: str | None, argv: list[str], options: RunOptions,
                 extensions: tuple, cwd: str, save_dir: str, threads: int | None):
        logger.remove()
        logger.add(sys.stderr, level="WARNING")  # the driver's bar and summary say the rest
        if os.path.isdir(cwd):  # relative paths in the flags mean what they mean to the driver
            os.chdir(cwd)
        self.save_dir, self.error, self.usage = save_dir, None, False
        self.load_args = (backend_class, hunyuan_root, argv, options, extensions, threads)

    def placed(self) -> str:
        """The machine Ray placed this worker on (it answers as soon as the actor exists)."""
        return socket.gethostname()

    def ready(self) -> dict:
        """The model loaded: where this worker runs, or why it could not load the model."""
        backend_class, hunyuan_root, argv, options, extensions, threads = self.load_args
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            self.plan: Plan = plan_run(backend_class(hunyuan_root=hunyuan_root), argv, options, extensions)
            self.generation = start_generation(self.plan)
        except Exception as error:  # noqa: BLE001 - said in one line, below
            self.error, self.usage = (str(error) if isinstance(error, UsageError) else one_line(error),
                                      isinstance(error, UsageError))
        if self.error is not None:
            return {"error": self.error, "usage": self.usage}
        import torch

        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        return {"host": socket.gethostname(), "device": device, "load_seconds": self.generation.load_seconds}

    def make(self, job: Job) -> dict:
        """One job's files ``{name: bytes}``, the paths in its JSON files those of the driver's
        folder; or ``{"error": line}``."""
        with tempfile.TemporaryDirectory(prefix="easycache-ray-") as stage:
            try:
                self.generation.job(job, Path(stage) / job.video_name(), self.plan.expected(job))
            except Exception as error:  # noqa: BLE001 - the driver retries it elsewhere or records it
                return {"error": one_line(error)}
            return {"files": {path.name: relocated(path, stage, self.save_dir)
                              for path in sorted(Path(stage).iterdir())}}


def relocated(path: Path, stage: str, save_dir: str) -> bytes:
    """A file's bytes; in a JSON file, every path under ``stage`` moved under ``save_dir``."""
    data = path.read_bytes()
    if path.suffix != ".json" or stage.encode() not in data:
        return data

    def move(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str) and value.startswith(stage):
            return str(Path(save_dir) / os.path.relpath(value, stage))
        return value

    return json.dumps(move(json.loads(data)), indent=2).encode()


# ---------------------------------------------------------------------------- the driver
def check_ray_flags(options: RunOptions, ray_options: RayOptions) -> None:
    """What ``--ray`` refuses before anything loads (one line each); Ray itself is looked for last."""
    if not options.batch:
        raise UsageError("--ray shares many videos out over workers: pass --prompt-file FILE and/or --seeds N [N ...]")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--ray: start the run as one process, not under torchrun; Ray starts the workers")
    if ray_options.max_retries < 0:
        raise UsageError(f"--ray-max-retries {ray_options.max_retries}: pass 0 or more")
    for flag, value in (("--ray-workers", ray_options.workers), ("--ray-cpus-per-worker", ray_options.cpus_per_worker)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: pass 1 or more")
    require("--ray", "ray", RAY_FLOOR)


def run_on_ray(backend: Backend, argv: list[str], options: RunOptions, extensions: tuple,
               ray_options: RayOptions) -> list[Path]:
    """The batch the command line asks for, made by Ray workers; returns the videos written."""
    check_ray_flags(options, ray_options)
    plan = plan_run(backend, argv, options, extensions)
    if plan.settings.splits_video:
        raise UsageError("--ray: each worker makes whole videos; one video over several GPUs (sequence "
                         "parallelism) runs under torchrun, so drop its flag or run without --ray")
    save_dir = prepare_save_dir(plan.settings.save_dir)
    todo = pending_jobs(plan.jobs, save_dir, plan.names.final, plan.expected)  # a mismatched job: refused here
    if len(todo) < len(plan.jobs):
        logger.info(f"{len(plan.jobs) - len(todo)} of {len(plan.jobs)} videos already finished, skipped")
    if not todo:
        logger.info(f"every video of this run is already in {save_dir}: nothing to do, no model loaded")
        write_summary(save_dir, plan.jobs, plan.names.final)
        return []
    started_ray = connect(ray_options.address)
    try:
        check_room(ray_options)
        queue = JobQueue(plan, backend, argv, options, extensions, ray_options, save_dir)
        try:
            written = queue.run(todo)
        finally:
            queue.stop()
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    summary = json.loads(write_summary(save_dir, plan.jobs, plan.names.final, queue.failed).read_text())
    log_summary(summary, queue)
    if queue.failed:
        raise RunFailed(f"{len(queue.failed)} of {len(plan.jobs)} videos failed after {ray_options.max_retries + 1} "
                        f"tries each; their errors are in {save_dir / 'summary.json'}, and a rerun tries them again")
    return written


def connect(address: str) -> bool:
    """Join the cluster ``--ray`` means (``address``; for LOCAL and ``auto``, RAY_ADDRESS or the
    cluster ``ray start`` recorded, as Ray itself decides), refusing in one line, before any worker
    starts, an address where no Ray cluster answers: nothing listening (a 5-second TCP probe), a
    port that does not speak gRPC (a web page, the dashboard), or one where a trial connection in a
    child process does not succeed within ``JOIN_SECONDS`` (Ray's own ``ray.init`` retries such an
    address for many minutes). True when this call connected (and so should disconnect; a local
    instance it started then stops)."""
    import ray

    if ray.is_initialized():  # a driver that set Ray up itself (a notebook, the tests)
        return False
    target = ray_target(address)
    if target is not None:
        check_cluster(target)
    try:
        ray.init(address=address or None)
    except ConnectionError as error:
        hint = ("no Ray cluster runs on this machine; start one with `ray start --head`, or pass --ray HOST:PORT"
                if address == "auto" else str(error).strip().splitlines()[0])
        raise UsageError(f"--ray {address}: {hint}") from None
    return True


PROBE_SECONDS = 5.0  # the TCP connection, then the server's HTTP/2 greeting
JOIN_SECONDS = 45.0  # the trial connection (Ray's import and handshake take a few seconds)
GCS_HINT = "is that the dashboard/client port? give the GCS address, default port 6379"
CLIENT_HINT = "is that the GCS or dashboard port? Ray Client listens on port 10001 by default"


@dataclass(frozen=True)
class Target:
    """The cluster Ray would join, and how a message names where that address came from."""

    address: str  # HOST:PORT or ray://HOST:PORT
    named: str  # "--ray 10.0.0.1:6379", "--ray: RAY_ADDRESS=10.0.0.1:6379", ...
    gone: str  # what to do when nothing answers there

    @property
    def client(self) -> bool:
        return self.address.startswith("ray://")

    def refuse(self, why: str) -> UsageError:
        return UsageError(f"{self.named}: {why}")


def ray_target(address: str) -> Target | None:
    """The address ``ray.init`` will use for ``--ray address``, or None where it starts a local
    instance. RAY_ADDRESS wins over ``--ray`` alone and ``--ray auto``, as in Ray; without it, Ray
    joins the cluster ``ray start`` last recorded on this machine (a file a crashed cluster leaves
    behind), and ``auto`` also a cluster running here."""
    given = address not in (LOCAL, "auto")
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if given:
        target = Target(address, f"--ray {address}",
                        "start the head with `ray start --head` and pass the address it prints")
    elif env:
        target = Target(env, f"--ray{' ' + address if address else ''}: RAY_ADDRESS={env} (from the environment)",
                        "start that cluster, or unset RAY_ADDRESS (then --ray starts a local Ray instance)")
    else:
        found, recorded = _ray_would_join(address)
        if found is None:
            return None
        where = f"the cluster `ray start` recorded in {recorded}" if recorded else "the Ray cluster found on this machine"
        target = Target(found, f"--ray{' ' + address if address else ''}: {found}, {where}",
                        "it is gone: `ray stop` forgets it; or pass --ray HOST:PORT")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", target.address) and not target.client:
        raise target.refuse("that is a web address (the dashboard's, for `ray job submit`); --ray needs the "
                            "cluster's GCS address HOST:PORT (default port 6379), or ray://HOST:PORT for Ray Client")
    host, port = split_address(target.address)
    if host is None:
        raise target.refuse("pass HOST:PORT (the address `ray start --head` prints), ray://HOST:PORT, auto, "
                            "or nothing for a local Ray instance")
    return target


def _ray_would_join(address: str) -> tuple[str | None, str | None]:
    """(the address Ray finds for LOCAL or ``auto`` without RAY_ADDRESS, the file it read it from);
    (None, None) where it starts a local instance (or, for ``auto``, finds none: ``ray.init`` says so)."""
    try:
        from ray._private.services import find_bootstrap_address, get_ray_address_from_environment
        from ray._private.utils import get_ray_address_file
    except ImportError:  # Ray's private helpers moved: Ray decides as it will
        return None, None
    try:
        found = get_ray_address_from_environment(address or None, None)
    except Exception:  # noqa: BLE001 - "no cluster" for auto: ray.init says it in connect
        return None, None
    if not found or found in ("auto", "local"):
        return None, None
    try:
        recorded = get_ray_address_file(None) if found == find_bootstrap_address(None) else None
    except Exception:  # noqa: BLE001 - only the wording depends on it
        recorded = None
    return found, recorded


def split_address(address: str) -> tuple[str | None, int | None]:
    """(host, port) of HOST:PORT, ray://HOST:PORT or [V6]:PORT; (None, None) for anything else."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or "/" in host:
        return None, None
    return host, int(port)


def check_cluster(target: Target) -> None:
    """Refuse, in one line, a ``target`` where no Ray cluster answers (see ``connect``)."""
    host, port = split_address(target.address)
    try:
        sock = socket.create_connection((host, port), timeout=PROBE_SECONDS)
    except OSError as error:
        raise target.refuse(f"nothing answers at {host}:{port} ({error.strerror or error}); {target.gone}") from None
    hint = CLIENT_HINT if target.client else GCS_HINT
    with sock:
        tls = os.environ.get("RAY_USE_TLS", "").strip().lower() in ("1", "true")
        if not tls and not speaks_http2(sock):
            raise target.refuse(f"no Ray cluster answers there ({hint})")
    why = trial_join(target.address)
    if why is not None:
        raise target.refuse(f"no Ray cluster answers there ({hint}): {why}")


def speaks_http2(sock: socket.socket) -> bool:
    """Whether the server on ``sock`` greets in HTTP/2, as every gRPC server (Ray's GCS and Ray Client
    among them) does: its first frame is SETTINGS. A web server answers HTTP/1 or closes."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # and an empty SETTINGS
    sock.settimeout(PROBE_SECONDS)
    try:
        sock.sendall(preface)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                break
            head += chunk
    except OSError:
        return False
    return len(head) == 9 and head[3] == 4  # frame header: 3 bytes length, 1 byte type (4: SETTINGS)


TRIAL = "import sys, ray\nray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\nray.shutdown()\n"


def trial_join(address: str) -> str | None:
    """Join ``address`` once in a child process, ``JOIN_SECONDS`` at most: None when it worked, else
    why not in a few words. (A gRPC server that is not Ray's, such as Ray Client's port given as the
    GCS address, makes ``ray.init`` retry for many minutes; the child is stopped instead.)"""
    import subprocess

    try:
        run = subprocess.run([sys.executable, "-c", TRIAL, address], capture_output=True, text=True,
                             timeout=JOIN_SECONDS, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"a trial connection did not succeed within {JOIN_SECONDS:g} s"
    if run.returncode == 0:
        return None
    lines = [line.strip() for line in run.stderr.splitlines() if line.strip() and not line.startswith((" ", "\t"))]
    return lines[-1] if lines else f"a trial connection failed (exit {run.returncode})"


def check_room(ray_options: RayOptions) -> None:
    """Refuse, in one line, a worker that no machine of the cluster can ever hold (Ray would keep it
    pending, silently, for as long as the run waits): ``--ray-cpus-per-worker`` CPUs, and a GPU on
    a cluster that has GPUs, on one machine."""
    import ray

    cpus = ray_options.cpus_per_worker
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    machines = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    hosts = [r for r in machines if not gpus or r.get("GPU", 0) >= 1]
    largest = max((r.get("CPU", 0) for r in hosts), default=0)
    if largest >= cpus:
        return
    kind = "machine with a GPU" if gpus else "machine"
    if largest < 1:
        raise UsageError(f"--ray: no {kind} of the cluster ({len(machines)} machines) offers a CPU for a worker "
                         "(a head started with --num-cpus=0?); add a machine with CPUs to the cluster")
    raise UsageError(f"--ray-cpus-per-worker {cpus}: no {kind} of the cluster has {cpus} CPUs (the largest has "
                     f"{largest:g}); pass {int(largest)} or less, or add a {kind} with {cpus} CPUs")


@dataclass
class _Member:
    """One worker as the driver sees it."""

    handle: Any
    name: str
    info: dict = field(default_factory=dict)  # ready()'s answer, once it came
    made: int = 0
    since: float = 0.0  # when it became ready
    placed: Any = None  # placed()'s ref until it answered (Ray found the worker a machine)
    asked: float = 0.0  # when the worker was started
    warned: bool = False  # said once that it waits for a machine

    def rate(self, now: float) -> float:
        """Videos per minute since it loaded its model."""
        return self.made / max(now - self.since, 1e-9) * 60


class JobQueue:
    """The driver's side: start the workers, hand out the jobs, write what comes back, retry."""

    TICK_SECONDS = 5.0  # how often the driver looks at workers Ray has not placed yet
    PENDING_WARN_SECONDS = 60.0  # a worker unplaced this long is said, once

    def __init__(self, plan: Plan, backend: Backend, argv: list[str], options: RunOptions, extensions: tuple,
                 ray_options: RayOptions, save_dir: Path):
        import ray

        self.plan, self.ray_options, self.save_dir = plan, ray_options, save_dir
        self.worker_args = (type(backend), backend.hunyuan_root, argv, options, extensions, os.getcwd(),
                            str(plan.settings.save_dir))
        self.run_id = uuid.uuid4().hex[:8]
        self.tries = ray_options.max_retries + 1
        self.failed: dict[int, dict] = {}  # job index -> its error, tries and workers
        self.members: dict[str, _Member] = {}  # the live workers, by name
        self.started = 0  # workers started, for their names
        self.load_failures = 0  # in a row
        self.target = 1  # how many workers to keep
        self.looked = 0.0  # when warn_unplaced last looked
        self.waiting: deque[tuple[Job, list[str]]] = deque()  # each job with the workers that tried it
        self.loading: dict[Any, str] = {}  # ready() ref -> worker
        self.busy: dict[Any, tuple[str, Job, list[str]]] = {}  # make() ref -> worker, job, who tried it
        self.idle: list[str] = []
        self.locks: dict[int, JobLock] = {}  # the jobs handed out, each under its lock
        self.actor_class = ray.remote(Worker)  # once per run; each worker is one .options(...).remote()

    # ------------------------------------------------------------------ workers
    def start_worker(self) -> None:
        """One more actor; it loads the model, then ``on_ready`` gives it work."""
        import ray

        gpus = ray.cluster_resources().get("GPU", 0) > 0
        cpus = self.ray_options.cpus_per_worker
        self.started += 1
        name = f"easycache-{self.run_id}-worker-{self.started}"
        actor = self.actor_class.options(
            name=name, num_cpus=cpus, num_gpus=1 if gpus else 0, max_restarts=0, max_concurrency=1,
            runtime_env={"env_vars": {"TQDM_DISABLE": "1"}},  # no step bars from the workers
        ).remote(*self.worker_args, None if gpus else cpus)
        self.members[name] = _Member(actor, name, placed=actor.placed.remote(), asked=time.time())
        self.loading[actor.ready.remote()] = name

    def wanted_workers(self, jobs: int) -> int:
        """``--ray-workers``, else one per GPU of the cluster (CPU-only: CPUs / ``--ray-cpus-per-worker``);
        never more than there are jobs."""
        import ray

        resources = ray.cluster_resources()
        if self.ray_options.workers:
            n = self.ray_options.workers
        elif resources.get("GPU", 0) > 0:
            n = int(resources["GPU"])
        else:
            n = int(resources.get("CPU", 1)) // self.ray_options.cpus_per_worker
        return max(1, min(n, jobs))

    def stop(self) -> None:
        """Every worker stopped, every lock this driver holds released (what was written stays)."""
        import ray

        for member in self.members.values():
            ray.kill(member.handle)
        self.members.clear()
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()

    # ------------------------------------------------------------------ the queue
    def run(self, todo: list[Job]) -> list[Path]:
        """Every job of ``todo`` made (or failed every try); the videos written."""
        import ray

        self.waiting.extend((job, []) for job in todo)
        self.target = self.wanted_workers(len(todo))
        for _ in range(self.target):
            self.start_worker()
        logger.info(f"Ray: {len(todo)} videos over {self.target} workers ({self.resources_text()})")
        written: list[Path] = []
        with tqdm(total=len(todo), unit="video", desc="videos", dynamic_ncols=True) as bar:
            while self.waiting or self.busy:
                self.dispatch()
                if not self.busy and not self.loading:
                    if not self.waiting:
                        break  # the rest are being made by other processes
                    self.start_worker()  # every worker is gone: the waiting jobs need one
                done, _ = ray.wait([*self.loading, *self.busy], num_returns=1, timeout=self.TICK_SECONDS)
                self.warn_unplaced()
                if not done:
                    continue
                if done[0] in self.loading:
                    self.on_ready(done[0])
                    continue
                name, job, tried = self.busy.pop(done[0])
                result = self.result(done[0], name)
                if "error" in result:
                    self.on_failure(job, [*tried, name], result["error"])
                    if name not in self.members and self.waiting and len(self.members) < self.target:
                        self.start_worker()  # in place of the one that died; Ray places it
                    continue
                written.append(self.write(job, result["files"]))
                self.members[name].made += 1
                bar.update(1)
                bar.set_postfix_str(self.rates_text(), refresh=True)
        return written

    def warn_unplaced(self) -> None:
        """One warning line for each worker that Ray has found no machine for in
        ``PENDING_WARN_SECONDS`` (the cluster's CPUs or GPUs taken by others, say): the run goes on
        with the workers it has and takes that one when it starts."""
        import ray

        now = time.time()
        if now - self.looked < self.TICK_SECONDS:
            return
        self.looked = now
        unplaced = [m for m in self.members.values() if m.placed is not None]
        for member in unplaced:
            if ray.wait([member.placed], timeout=0)[0]:
                member.placed = None
        started = sum(1 for m in self.members.values() if m.placed is None)
        for member in unplaced:
            if member.placed is None or member.warned or now - member.asked < self.PENDING_WARN_SECONDS:
                continue
            member.warned = True
            free = ray.available_resources()
            needs = f"{self.ray_options.cpus_per_worker} free CPUs" + (
                " and a free GPU" if ray.cluster_resources().get("GPU", 0) > 0 else "")
            logger.warning(
                f"{member.name} has waited {now - member.asked:.0f} s for a machine with {needs} (free now: "
                f"{free.get('CPU', 0):g} CPUs, {free.get('GPU', 0):g} GPUs); {started} of {len(self.members)} "
                "workers started meanwhile; it starts when the cluster has room (`ray status` shows what holds it)")

    def result(self, ref: Any, name: str) -> dict:
        """What ``make`` returned (a worker that died is dropped; an error names it)."""
        import ray

        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as error:
            self.members.pop(name, None)
            return {"error": f"worker {name} died ({type(error).__name__})"}
        except ray.exceptions.RayError as error:
            result = {"error": one_line(error)}
        self.idle.append(name)
        return result

    def on_failure(self, job: Job, tried: list[str], error: str) -> None:
        """Try the job again, or record it as failed after its last try."""
        if len(tried) < self.tries:
            logger.warning(f"{job.video_name()}: {error}; trying again ({len(tried)} of {self.tries} tries so far)")
            self.waiting.appendleft((job, tried))
            return
        logger.error(f"{job.video_name()}: failed {self.tries} times, recorded in summary.json; last error: {error}")
        self.failed[job.index] = {"error": error, "tries": len(tried), "workers": tried}
        self.locks.pop(job.index).release()

    def on_ready(self, ref: Any) -> None:
        """A worker loaded its model (it takes jobs from now), or could not."""
        import ray

        name = self.loading.pop(ref)
        try:
            info = ray.get(ref)
        except ray.exceptions.RayError as error:
            info = {"error": one_line(error), "usage": False}
        if "error" not in info:
            self.load_failures = 0
            member = self.members[name]
            member.info, member.since = info, time.time()
            self.idle.append(name)
            logger.info(f"{name}: model loaded on {info['host']} ({info['device']}) in "
                        f"{seconds_text(info['load_seconds'])}")
            return
        self.members.pop(name, None)
        if info["usage"]:  # the same for every worker: the run stops as it would without Ray
            raise UsageError(info["error"])
        self.load_failures += 1
        logger.warning(f"{name}: could not load the model: {info['error']}")
        if self.load_failures > self.ray_options.max_retries:
            raise RunFailed(f"Ray workers could not load the model ({self.load_failures} in a row): {info['error']}")
        self.start_worker()

    def dispatch(self) -> None:
        """Give each idle worker a waiting job (``take``), under the job's lock; a job another
        process is making (its lock is live) is left to it."""
        for name in list(self.idle):
            while (picked := self.take(name)) is not None:
                job, tried = picked
                if job.index not in self.locks:
                    lock = JobLock(self.plan.names.final(self.save_dir / job.video_name()))
                    if not lock.acquire():
                        pid, host = lock.owner() or ("?", "?")
                        logger.info(f"{job.video_name()}: being made by process {pid} on {host}, left to it")
                        continue
                    self.locks[job.index] = lock
                self.idle.remove(name)
                self.busy[self.members[name].handle.make.remote(job)] = (name, job, tried)
                break

    def take(self, name: str) -> tuple[Job, list[str]] | None:
        """The first waiting job worker ``name`` has not tried; a job every loaded worker has tried
        goes to any of them. None: nothing for it now."""
        loaded = [m for m, member in self.members.items() if member.info]
        for i, (job, tried) in enumerate(self.waiting):
            if name not in tried or all(m in tried for m in loaded):
                del self.waiting[i]
                return job, tried
        return None

    def write(self, job: Job, files: dict[str, bytes]) -> Path:
        """A job's files into the save folder, each atomically, the one that marks it finished last."""
        final = self.plan.names.final(self.save_dir / job.video_name())
        for name in sorted(files, key=lambda n: n == final.name):
            with written_whole(self.save_dir / name) as tmp:
                tmp.write_bytes(files[name])
        self.locks.pop(job.index).release()
        return self.save_dir / job.video_name()

    # ------------------------------------------------------------------ what it says
    def rates_text(self) -> str:
        now = time.time()
        return ", ".join(f"w{m.name.rsplit('-', 1)[1]} {m.rate(now):.1f}/min"
                         for m in self.members.values() if m.info)

    def resources_text(self) -> str:
        import ray

        resources = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        return f"cluster: {nodes} machines, {resources.get('GPU', 0):g} GPUs, {resources.get('CPU', 0):g} CPUs"


def log_summary(summary: dict, queue: JobQueue) -> None:
    """The whole set's numbers, from ``summary.json``."""
    speedup = f"{summary['speedup']:.2f}x fewer" if summary["speedup"] else "none computed"
    saved = summary.get("estimated_seconds_saved")
    logger.info(
        f"Ray: {summary['finished']} of {summary['videos']} videos finished, {summary['failed']} failed "
        f"({queue.started} workers started); EasyCache computed {summary['computed']}/{summary['transformer_calls']} "
        f"transformer calls ({speedup})"
        + (f", saving an estimated {seconds_text(saved)} of transformer time" if saved is not None else "")
    )
