"""Tencent's HunyuanVideo-1.5 (a checkout with ``generate.py`` and ``hyvideo/``): its flags, its pipeline.

Nothing of HunyuanVideo-1.5 is copied here. ``generate.py`` sets up parallel state and a CUDA device
when imported, and builds its parser inside ``main()`` right before parsing, so it is never imported:
its source is read with ``ast`` and three of its parts are run as its own code:

- the parser: ``main()``'s statements before ``parser.parse_args()`` (and the helpers they name,
  ``str_to_bool``), with the standard-library imports they need; so ``--help`` and every flag error
  need no GPU, no torch and no ``hyvideo`` import, and a flag Tencent adds is a flag here;
- the loading: ``generate_video()``'s statements before its pipeline call (its checks, the infer
  state, ``create_pipeline``, ``apply_infer_optimization``: FP8 GEMM, block-wise ``torch.compile``,
  SageAttention, offloading; the checkpoint and LoRA; the SR stage's optimizations), with the
  import-time setup (``initialize_parallel_state``, the CUDA device) run first, at load;
- the sampling: that pipeline call's own arguments, evaluated per video (prompt and seed of the job).

EasyCache goes on the base stage's transformer *instance* after all of that, so it is the outermost
layer: a reused step runs none of FP8 GEMM, the compiled blocks, group offloading's hooks or the
sequence-parallel forward (the transformer splits its tokens over ``torchrun`` ranks inside
``forward``); under ``torchrun`` each video is split over every rank (``generate.py`` sets
``sp = WORLD_SIZE``), so the decision is all-reduced and rank 0 writes.

How the rule meets the 1.5 model: its forward takes ``hidden_states`` and ``timestep`` (the names
``easycache.calls`` looks for) and returns ``(prediction, features)``; classifier-free guidance is one
call per step with the batch doubled (``cfg_distilled`` checkpoints: one call, batch one), so one
call per step and one decision per step either way; I2V and the SR stage feed ``[latents, cond, mask]``
(2C + 1 channels in, C out), which the rule narrows to the predicted C channels.

The SR stage (``--sr``, default on) is not cached. Its transformer is a second instance inside
``pipe.sr_pipeline``, run 6 (720p) or 8 (1080p) distilled steps from an upsampled, re-noised
latent; with 5 warmup steps and the last step always computed, the rule could reuse no step of 6
and at most 2 of 8, on a schedule where every step moves far. Tencent's ``generate.py`` keeps its own
caches off there too (``sr_infer_state.enable_cache = False``).

Step-distilled checkpoints (``--enable_step_distill``, 8 to 12 steps, meanflow ``timestep_r``) are
refused with EasyCache on (one line; ``--no-easycache`` runs them through the same code path):
with 5 warmup steps and the last step computed, at most 2 of 8, 4 of 10 and 6 of 12 calls are
candidates (1.33x to 2x at best), and on the tiny model the rule at the default threshold reuses
none of them (8/8, 10/10, 12/12 computed; the accumulated error at those steps is 25 to 45 times the
threshold); the few-step schedule's large jumps are what the rule's linear estimate of the output
change serves worst, and Tencent's generate.py refuses its own caches with step distillation too.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import io
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import UsageError
from ..outputs import is_run_record, written_whole
from ..runner import Backend, Settings, Video, prompt_required

CHECKOUT_HINT = (
    "run this inside a HunyuanVideo-1.5 checkout, or pass --hunyuan-root PATH "
    "(git clone https://github.com/Tencent-Hunyuan/HunyuanVideo-1.5)"
)
WEIGHTS_HINT = "download them as checkpoints-download.md in the checkout says, and pass --model_path PATH"
PIPELINE_MODULE = Path("hyvideo") / "pipelines" / "hunyuan_video_pipeline.py"


def find_checkout(explicit: str | None) -> Path:
    """The HunyuanVideo-1.5 checkout: ``--hunyuan-root``, else the current directory."""
    root = Path(explicit).expanduser() if explicit else Path.cwd()
    if not (root / "generate.py").is_file() or not (root / PIPELINE_MODULE).is_file():
        where = f"--hunyuan-root {root}" if explicit else f"the current directory ({root})"
        raise UsageError(f"HunyuanVideo-1.5's generate.py and hyvideo/ were not found in {where}; {CHECKOUT_HINT}")
    return root.resolve()


# ---------------------------------------------------------------------------- generate.py, read not imported
class GenerateScript:
    """``generate.py`` of a checkout, read with ``ast``; its parts run as its own code."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / "generate.py"
        self.tree = ast.parse(self.path.read_text(encoding="utf-8"), filename=str(self.path))
        self.functions = {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}
        for name in ("main", "generate_video"):
            if name not in self.functions:
                self._unknown(f"it has no {name}()")
        self._module: dict | None = None

    def _unknown(self, why: str):
        raise UsageError(f"{self.path} is not a generate.py this entry can read ({why}); "
                         "update HunyuanVideo-1.5, or easycache")

    # ------------------------------------------------------------------ the flags
    def parse_statements(self) -> tuple[list[ast.stmt], str, list[ast.stmt]]:
        """``main()``: the statements building the parser, its name, those normalizing ``args``."""
        body = self.functions["main"].body
        for i, statement in enumerate(body):
            call = getattr(statement, "value", None)
            if (isinstance(statement, ast.Assign) and isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute) and call.func.attr == "parse_args"
                    and isinstance(call.func.value, ast.Name)):
                after = []
                for later in body[i + 1:]:
                    if any(isinstance(n, ast.Name) and n.id == "generate_video" for n in ast.walk(later)):
                        break
                    after.append(later)
                return body[:i], call.func.value.id, after
        self._unknown("main() never calls parser.parse_args()")

    def parser(self) -> argparse.ArgumentParser:
        """generate.py's own parser, built by its own statements, with only the standard library."""
        build, name, normalize = self.parse_statements()
        code = [*self._stdlib_imports(), *self._helpers(build + normalize),
                _function("build_parser", [], build + [ast.Return(ast.Name(name, ast.Load()))]),
                _function("normalize", ["args"], normalize or [ast.Pass()])]
        namespace = self._exec(code)
        parser = namespace["build_parser"]()
        parser.prog = "easycache_generate.py"
        self.normalize = namespace["normalize"]
        return parser

    def _stdlib_imports(self) -> list[ast.stmt]:
        def stdlib(node):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            return all(n.split(".")[0] in sys.stdlib_module_names for n in names)

        return [n for n in self.tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and stdlib(n)]

    def _helpers(self, statements: list[ast.stmt]) -> list[ast.stmt]:
        """The module's functions the statements name (and those they name, in turn)."""
        wanted, queue = set(), list(statements)
        while queue:
            for node in ast.walk(queue.pop()):
                if isinstance(node, ast.Name) and node.id in self.functions and node.id not in wanted:
                    wanted.add(node.id)
                    queue.append(self.functions[node.id])
        return [self.functions[n] for n in self.functions if n in wanted]

    def _exec(self, body: list[ast.stmt], namespace: dict | None = None) -> dict:
        module = ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))
        namespace = {"__name__": "generate", "__file__": str(self.path)} if namespace is None else namespace
        exec(compile(module, str(self.path), "exec"), namespace)
        return namespace

    # ------------------------------------------------------------------ the run
    def module(self) -> dict:
        """generate.py's globals without its import-time setup (parallel state, CUDA device); the
        setup statements are kept in ``deferred`` for ``load``."""
        if self._module is None:
            kept, self.deferred = [], []
            for node in self.tree.body:
                if isinstance(node, (ast.Expr, ast.Assign)) and isinstance(node.value, ast.Call):
                    self.deferred.append(node)
                elif not (isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)):
                    kept.append(node)
            if str(self.root) not in sys.path:
                sys.path.insert(0, str(self.root))
            try:
                self._module = self._exec(kept)
            except ImportError as error:
                raise UsageError(f"HunyuanVideo-1.5's code in {self.root} does not import ({error}); install its "
                                 "requirements (pip install -r requirements.txt in the checkout)") from error
        return self._module

    def run_import_time_setup(self) -> None:
        """``initialize_parallel_state(sp=WORLD_SIZE)`` and ``torch.cuda.set_device(LOCAL_RANK)``, as
        importing generate.py does (the CUDA device only where there is one)."""
        import torch

        globals_ = self.module()
        for node in self.deferred:
            if "cuda" in ast.unparse(node) and not torch.cuda.is_available():
                continue
            self._exec([node], globals_)

    def pipeline_call(self) -> tuple[list[ast.stmt], ast.Call]:
        """``generate_video()``: the statements before its pipeline call, and that call."""
        for i, statement in enumerate(self.functions["generate_video"].body):
            value = getattr(statement, "value", None)
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "pipe":
                return self.functions["generate_video"].body[:i], value
        self._unknown("generate_video() never calls pipe(...)")

    def setup(self, args: argparse.Namespace) -> dict:
        """Run generate_video()'s statements before its pipeline call; returns its local variables."""
        before, _ = self.pipeline_call()
        body = before + [ast.Return(ast.Call(ast.Name("locals", ast.Load()), [], []))]
        globals_ = self.module()
        self._exec([_function("easycache_setup", ["args"], body)], globals_)
        return globals_.pop("easycache_setup")(args)

    def call(self, local_variables: dict) -> Any:
        """generate_video()'s pipeline call, its arguments evaluated among ``local_variables``."""
        _, call = self.pipeline_call()
        expression = ast.fix_missing_locations(ast.Expression(call))
        return eval(compile(expression, str(self.path), "eval"), self.module(), dict(local_variables))

    def default_output_path(self, transformer_version: str) -> str:
        """generate.py's name for a video without ``--output_path`` (its own statements)."""
        for node in ast.walk(self.functions["generate_video"]):
            if isinstance(node, ast.If) and ast.unparse(node.test) == "output_path is None":
                local_variables = {"output_path": None, "transformer_version": transformer_version}
                exec(compile(ast.fix_missing_locations(ast.Module(node.body, [])), str(self.path), "exec"),
                     dict(self.module()), local_variables)
                return local_variables["output_path"]
        return f"./outputs/output_{transformer_version}.mp4"


def _function(name: str, params: list[str], body: list[ast.stmt]) -> ast.FunctionDef:
    arguments = ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in params], kwonlyargs=[], kw_defaults=[],
                              defaults=[])
    return ast.FunctionDef(name=name, args=arguments, body=body, decorator_list=[], returns=None, type_params=[])


# ---------------------------------------------------------------------------- what EasyCache installs on
class HunyuanVideo15Pipeline:
    """generate.py's ``pipe`` as EasyCache installs on it: ``transformer`` is the base stage's
    transformer instance (the SR stage's, inside ``pipe.sr_pipeline``, is left alone), a call is
    the pipeline's call (one generation), and the pipeline's own step count is the rule's.

    Named as diffusers names this model's pipeline: ``easycache.presets`` keys presets by pipeline
    class name, and HunyuanVideo-1.5's preset is "not tuned" (HunyuanVideo's 0.025 / 5) until
    measured on its weights.
    """

    def __init__(self, pipe: Any):
        self.pipe = pipe

    @property
    def transformer(self):
        return self.pipe.transformer

    @property
    def _num_timesteps(self):
        return getattr(self.pipe, "_num_timesteps", None)

    @_num_timesteps.setter
    def _num_timesteps(self, value):
        self.pipe._num_timesteps = value

    def __call__(self, **kwargs):
        return self.pipe(**kwargs)


# ---------------------------------------------------------------------------- the backend
class Hunyuan15Backend(Backend):
    """HunyuanVideo-1.5's generate.py command line, loading and pipeline call, from a checkout."""

    name = "hunyuan15"
    fps = 24  # generate.py's save_video

    script: GenerateScript | None = None

    def generate_script(self) -> GenerateScript:
        if self.script is None:
            self.script = GenerateScript(find_checkout(self.hunyuan_root))
        return self.script

    def print_help(self) -> None:
        try:
            parser = self.generate_script().parser()
        except UsageError as error:
            print(f"\nHunyuanVideo-1.5's own flags (generate.py) are listed here when its checkout is found: {error}")
            return
        print("\nHunyuanVideo-1.5's own flags (generate.py):")
        parser.print_help()

    def parse(self, argv: list[str], need_prompt: bool) -> tuple[argparse.Namespace, Settings]:
        script = self.generate_script()
        parser = script.parser()
        for action in parser._actions:  # --prompt-file supplies the prompts
            if action.dest == "prompt":
                action.required = need_prompt
        parser.error = _usage_error
        args = parser.parse_args(argv)
        script.normalize(args)
        prompt_required(args.prompt, need_prompt)
        if args.enable_cache:
            raise UsageError("--enable_cache is HunyuanVideo-1.5's fixed-schedule cache and EasyCache replaces it: "
                             "drop --enable_cache (or run generate.py itself for its own caches)")
        if args.enable_step_distill and self.easycache_enabled:
            raise UsageError("--enable_step_distill runs 8-12 steps, where EasyCache (5 warmup steps and the last "
                             "always computed) can reuse at most a few and, on the tiny model, reuses none: run "
                             "the step-distilled model with --no-easycache, or the 50-step model with EasyCache")
        if not Path(args.model_path).is_dir():
            raise UsageError(f"HunyuanVideo-1.5's weights were not found at --model_path {args.model_path}; "
                             f"{WEIGHTS_HINT}")
        self.args = args
        output = Path(args.output_path) if args.output_path else None
        if output is not None:
            self.check_output_path(args.output_path)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        settings = Settings(save_dir=output.parent if output else Path("outputs"), prompt=args.prompt,
                            seed=args.seed, steps=args.num_inference_steps or 50, num_videos=1,
                            splits_video=world > 1, save_flag="--output_path",
                            save_given=args.output_path if output else None)
        return args, settings

    def check_output_path(self, text: str) -> None:
        """Refuse, before loading, an ``--output_path`` the run could not write or would write over a
        file that is not its to replace: a folder (generate.py loads, samples for minutes, then fails
        on it, leaving its _config.json without a video); a path under a file; in a single run, a
        file at the run JSON's path (``cat.json`` beside ``cat.mp4``) that is not a run JSON of
        ours (see the file-name choice below)."""
        path = Path(text)
        if path.is_dir():
            raise UsageError(f"--output_path {text} is a folder: name the video's file in it "
                             f"(--output_path {path / 'video.mp4'})")
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                raise UsageError(f"--output_path {text}: {parent} is a file, not a folder; "
                                 "name a path in a folder")
        record = path.with_suffix(".json")
        if not self.batch and os.path.lexists(record) and not is_run_record(record):
            raise UsageError(f"--output_path {text}: {record} is there and is not a run JSON of easycache, which "
                             "this entry writes at that path beside the video; move it, or name another --output_path")

    def load(self, args: argparse.Namespace) -> HunyuanVideo15Pipeline:
        """generate.py's own loading: its import-time setup, then generate_video() up to its pipeline call."""
        script = self.generate_script()
        script.run_import_time_setup()
        try:
            self.setup = script.setup(args)
        except ValueError as error:  # generate.py's own checks (sparse + sage attention, dtype, ...)
            raise UsageError(str(error)) from error
        except FileNotFoundError as error:
            raise UsageError(f"{error}; {WEIGHTS_HINT}") from error
        return HunyuanVideo15Pipeline(self.setup["pipe"])

    def sample(self, model: HunyuanVideo15Pipeline, args: argparse.Namespace, prompt: str, seed: int,
               num_videos: int) -> list[Video]:
        run_args = copy.copy(args)
        run_args.prompt, run_args.seed = prompt, seed
        out = self.generate_script().call({**self.setup, "args": run_args, "pipe": model})
        sr = self.setup.get("enable_sr") and getattr(out, "sr_videos", None) is not None
        video = out.sr_videos if sr else out.videos
        self.last = SimpleNamespace(args=run_args, out=out, sr=sr)
        return [Video(video[0] if video.ndim == 5 else video, seed)]

    # ------------------------------------------------------------------ generate.py's file names
    # The choice (a drop-in keeps what the program it replaces writes): with --output_path named, the
    # video is written at exactly that path, replacing a file there, as generate.py's save_video
    # does: the user named it, and scripts around generate.py read it there. So are generate.py's
    # other files of that name ({name}_config.json, {name}_before_sr.mp4), as it replaces them. Its
    # _config.json records output_path as generate.py records it (the string given,
    # "./outputs/cat.mp4" kept as spelled; arguments.output_path null where the flag was not given)
    # and the console says generate.py's own "Saved video to: ..." lines. Only where no path was
    # named (generate.py's default ./outputs/output_{version}_{time}.mp4, one name a second) does a
    # name taken already (any file of it there: Names.taken, with beside_paths) get a number (_2, _3:
    # Names.free) instead of replacing the earlier files, which no one named.
    #
    # The run JSON ({name}.json) is ours, not generate.py's: generate.py writes nothing there, so the
    # user naming cat.mp4 did not name cat.json, and a cat.json of theirs (notes, a label file, a
    # config of another tool) must not be lost to the drop-in. It replaces only a run JSON this
    # project wrote (is_run_record: its keys, its versions naming easycache: an earlier run at the
    # same path, which the rerun supersedes as it supersedes the video). Anything else there is
    # refused before loading, in one line naming --output_path and the file (check_output_path):
    # refused rather than numbered, since the video must go where the user named it. (A file put
    # there while the video samples is not checked again: the check is where it costs nothing.)
    def video_path(self, save_dir: Path, seed: int, prompt: str) -> Path:
        """``--output_path``, else generate.py's ``./outputs/output_{transformer_version}_{time}.mp4``."""
        if self.args.output_path:
            return Path(self.args.output_path)
        self.default_output = self.generate_script().default_output_path(self.setup["transformer_version"])
        return Path(self.default_output)

    def replaces_named_path(self) -> bool:
        """True with ``--output_path``: written there, replacing what is there, as generate.py does."""
        return bool(self.args.output_path)

    def beside_paths(self, path: Path) -> list[Path]:
        """What ``beside`` may write for ``path``: the pre-SR video (with --save_pre_sr_video) and
        the _config.json (with --save_generation_config, its default), named as generate.py names them."""
        args = getattr(self, "args", None)
        base, ext = os.path.splitext(str(path))
        paths = []
        if getattr(args, "save_pre_sr_video", False):
            paths.append(Path(f"{base}_before_sr{ext}"))
        if getattr(args, "save_generation_config", False):
            paths.append(Path(f"{base}_config.json"))
        return paths

    def output_text(self, path: Path) -> str:
        """``path`` spelled as generate.py spells it in its _config.json and its console lines:
        ``--output_path`` exactly as given, its default name as it makes it (a numbered one in the
        same folder, spelled alike); a batch's job names as paths."""
        default = getattr(self, "default_output", None)
        for text in (self.args.output_path, default):
            if text and Path(text) == path:
                return text
        if default and Path(default).parent == path.parent:
            return os.path.join(os.path.dirname(default), path.name)
        return str(path)

    def beside(self, path: Path) -> None:
        """What generate.py writes beside the video: the pre-SR video and ``{name}_config.json``, with
        ``args`` as generate.py has them (``output_path`` as given, None where unset). Written before
        the video (the mark of a finished job in a batch); their console lines wait for ``announce``,
        so the console reads as generate.py's."""
        module, last = self.generate_script().module(), getattr(self, "last", None)
        self.pending_lines = []
        if last is None:
            return
        text = self.output_text(path)
        if last.sr and last.args.save_pre_sr_video:
            base, ext = os.path.splitext(text)
            original = f"{base}_before_sr{ext}"
            with written_whole(Path(original)) as tmp:
                module["save_video"](last.out.videos, str(tmp))
            self.pending_lines.append(f"Saved original video (before SR) to: {original}")
        if last.args.save_generation_config:
            said = io.StringIO()
            try:
                with contextlib.redirect_stdout(said):
                    module["save_config"](last.args, text, self.setup["task"], self.setup["transformer_version"])
            except Exception as error:  # noqa: BLE001 - generate.py carries on without its config too (silently)
                from loguru import logger

                logger.warning(f"{text}: generate.py's save_config failed ({type(error).__name__}: {error}); "
                               "the video is written without its _config.json")
            self.pending_lines += said.getvalue().splitlines()

    def announce(self, path: Path) -> None:
        """generate.py's own console lines for a written video (``print``, as it prints them, on
        stdout): "Saved video to: PATH" ("Saved SR video to:" with the SR stage), then those of the
        files beside it."""
        last = getattr(self, "last", None)
        kind = "SR video" if last is not None and last.sr else "video"
        for line in [f"Saved {kind} to: {self.output_text(path)}", *getattr(self, "pending_lines", [])]:
            print(line, flush=True)
        self.pending_lines = []

    def extra_record(self) -> dict:
        setup = getattr(self, "setup", {})
        return {"hunyuan15": {"transformer_version": setup.get("transformer_version"), "task": setup.get("task"),
                              "sr": bool(setup.get("enable_sr")), "sr_cached": False}}


def _usage_error(message: str):
    raise UsageError(f"{message} (generate.py's flags: see --help)")


BACKEND = Hunyuan15Backend
