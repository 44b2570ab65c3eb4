"""The user docs still work as written: README.md and every docs/*.md present when the tests run.

Commands: in each ``bash``/``sh``/``shell``/``console`` block, a command that runs one of this
repository's scripts (after ``VAR=value``, a ``python`` interpreter or ``torchrun`` and its options)
must name a file that exists, and that script's ``build_parser()`` must take exactly the flags shown
(argparse only: no model loads, nothing is written). An entry (easycache_sample_video.py, ...)
parses its own flags and hands the rest to the backend the command picks, as ``easycache.cli.main``
does: demo and diffusers parse it here; tencent and hunyuan15 need their checkouts (HYVIDEO_ROOT,
HYVIDEO15_ROOT). Without one, only that backend's own flags are skipped: a leftover flag in one of
our namespaces (a typo of ours) still fails. A bare ``...`` means "more flags": the command ends there.

Links: every relative link or image target exists in the repository, and a ``#anchor`` names a
heading of its page (GitHub's slug rule). Nothing inside fenced code blocks is a link.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import os
import re
import shlex
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The scripts the docs may show (each with a module-level build_parser()).
PROJECT_SCRIPTS = (
    "easycache_sample_video.py", "hyvideo_svg_easycache.py", "easycache_generate.py", "easycache_gradio_server.py",
    "tools/video_metrics.py", "bench/run_bench.py", "bench/gpu_check.py", "bench/report.py",
    "bench/calibrate_teacache.py", "bench/kalman_check.py", "scripts/train_demo.py",
    "scripts/write_knob_reference.py", "easycache/testing/tencent_tiny.py",
)
ENTRIES = PROJECT_SCRIPTS[:4]  # easycache.cli.entry_parser + a backend's flags
WEB_ENTRY = "easycache_gradio_server.py"
# Scripts of the HunyuanVideo checkouts the docs may run there (not files of this repository).
CHECKOUT_SCRIPTS = {"sample_video.py", "gradio_server.py", "generate.py", "train.py"}
# Flags of ours: left over for a backend, they are a typo (the backend would refuse them too).
OUR_NAMESPACES = ("--easycache", "--ray", "--attention", "--svg", "--no-easycache", "--hunyuan-root",
                  "--prompt-file", "--seeds", "--backend")
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}


# ---------------------------------------------------------------------------- the pages
def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md, whatever exists now."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")


def fenced_lines(text: str):
    """Each line as (number, text, block): block is None outside fenced code, else (its first
    line, its language); the fence lines themselves are left out."""
    block, opening = None, ""
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if block is None and fence:
            block, opening = (number, fence.group(2).lower()), fence.group(1)
        elif block and fence and fence.group(1).startswith(opening) and not fence.group(2):
            block = None  # the closing fence: the same character, at least as many, no language
        else:
            yield number, line, block


# ---------------------------------------------------------------------------- commands
@dataclasses.dataclass(frozen=True)
class Command:
    page: str  # relative to the repository: README.md, docs/x.md
    line: int
    words: tuple[str, ...] = ()
    error: str | None = None  # a line the shell parser could not read

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def __str__(self) -> str:
        return shlex.join(self.words)


ELIDED = "\0elided\0"  # a bare `...` (not a quoted "...")
BARE_ELLIPSIS = re.compile(r"(?<![^\s;&|])\.\.\.(?![^\s;&|])")
SEPARATORS = {";", ";;", "&", "&&", "|", "||", "|&"}


def shell_lines(lines: list[tuple[int, str]], console: bool):
    """A block's logical lines as (first line number, text): continuations joined, a ``$ `` prompt
    dropped; in a console block with prompts, only the prompted commands (the rest is output)."""
    prompted = console and any(text.lstrip().startswith("$ ") for _, text in lines)
    start, joined = None, ""
    for number, text in lines:
        text = text.strip()
        if start is None:
            if text.startswith("$ "):
                text = text[2:]
            elif prompted:
                continue
            start = number
        trailing = len(text) - len(text.rstrip("\\"))
        if trailing % 2:
            joined += text[:-1]
            continue
        yield start, joined + text
        start, joined = None, ""
    if start is not None:
        yield start, joined


def strip_comment(line: str) -> str:
    """The line without its shell comment (a ``#`` starting a word, outside quotes)."""
    quote, escaped = None, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return line[:i]
    return line


def split_commands(line: str) -> list[list[str]]:
    """The words of each command of a line (split on ``&&``, ``||``, ``;``, ``|``), redirections
    dropped, each cut at a bare ``...``. Raises ValueError for unbalanced quotes."""
    lexer = shlex.shlex(BARE_ELLIPSIS.sub(ELIDED, strip_comment(line)), posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    commands, current, elided, redirect_target = [], [], False, False
    for word in lexer:
        if word in SEPARATORS:
            commands.append(current)
            current, elided = [], False
        elif set(word) <= set("<>&"):  # >, >>, 2>&1, &>: drop the operator, its target, an fd number
            if current and current[-1].isdigit():
                current.pop()
            redirect_target = True
        elif redirect_target:
            redirect_target = False
        elif word == ELIDED:
            elided = True
        elif not elided:
            current.append(word.replace(ELIDED, "..."))
    return [c for c in [*commands, current] if c]


def commands_of(page: Path, root: Path = ROOT) -> list[Command]:
    """Every command of a page's shell blocks."""
    blocks: dict[tuple, list[tuple[int, str]]] = {}
    for number, text, block in fenced_lines(page.read_text(encoding="utf-8")):
        if block and block[1] in SHELL_LANGUAGES:
            blocks.setdefault(block, []).append((number, text))
    name = page.relative_to(root).as_posix()
    found = []
    for (_, language), lines in blocks.items():
        for number, text in shell_lines(lines, console=language == "console"):
            try:
                found += [Command(name, number, tuple(words)) for words in split_commands(text)]
            except ValueError as error:
                found.append(Command(name, number, error=f"{error}: {text}"))
    return found


ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
PYTHON = re.compile(r"python[0-9.]*")


def _after_python_options(args: list[str]) -> list[str]:
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option[:2] in ("-m", "-c") or option == "-":  # a module or code, not a script
            return []
        if option in ("-W", "-X"):
            args = args[1:]
    return args


def _after_torchrun_options(args: list[str]) -> list[str]:
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ("-m", "--module", "--no-python", "--no_python"):
            return []
        if "=" not in option and args and not args[0].startswith("-") and not args[0].endswith(".py"):
            args.pop(0)  # --nproc_per_node 8: the option's value
    return args


def script_call(words: tuple[str, ...]) -> tuple[str, list[str]] | None:
    """(script, its arguments) when the command runs a .py file, else None (pip, git, -m pytest, ...)."""
    args = list(words)
    while args and (ENV_ASSIGNMENT.match(args[0]) or args[0] == "env"):
        args.pop(0)
    if not args:
        return None
    program = Path(args[0]).name  # .venv/bin/python, "$venv/bin/python3": python
    if PYTHON.fullmatch(program):
        args = _after_python_options(args[1:])
    elif program == "torchrun":
        args = _after_torchrun_options(args[1:])
    if not args or not args[0].endswith(".py"):
        return None
    return args[0], args[1:]


def project_script(script: str) -> str | None:
    """The script's path in this repository when it claims to be ours, else None: outside the
    repository, or a HunyuanVideo checkout's own script (run inside the checkout)."""
    path = os.path.normpath(script)
    if os.path.isabs(path) or path.startswith(".."):
        return None
    if Path(path).name in CHECKOUT_SCRIPTS and not (ROOT / path).is_file():
        return None
    return Path(path).as_posix()


def doc_commands(root: Path = ROOT) -> list[Command]:
    """The commands of every page that run one of our scripts (or that the shell parser refused)."""
    return [c for page in doc_pages(root) for c in commands_of(page, root)
            if c.error or ((call := script_call(c.words)) and project_script(call[0]))]


# ---------------------------------------------------------------------------- checking one command
class Stale(Exception):
    """The command would not run as the docs show it."""


class Unchecked(Exception):
    """Part of the command cannot be checked here (the reason says what would check it)."""


_loaded: dict[Path, object] = {}


def load_script(path: Path):
    """The script as a module, imported by its path (its ``__main__`` part does not run)."""
    if path not in _loaded:
        name = "doc_script_" + re.sub(r"\W", "_", path.relative_to(ROOT).as_posix())
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
        _loaded[path] = module
    return _loaded[path]


def parse_exactly(parser, argv: list[str], name: str):
    """``parser.parse_args(argv)``, its complaint (or exit) raised as Stale naming ``name``."""
    def refuse(message):
        raise Stale(f"{name}: {message}")

    parser.error = refuse
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # --help prints, then exits 0
            return parser.parse_args(argv)
    except SystemExit as exit:
        if exit.code:
            raise Stale(f"{name}: exits {exit.code} while parsing its flags") from None
        return None


def check_command(command: Command) -> None:
    """Raise Stale when the command would not run as shown, Unchecked for a part needing a checkout."""
    if command.error:
        raise Stale(f"the shell cannot read this line ({command.error})")
    script, argv = script_call(command.words)
    script = project_script(script)
    path = ROOT / script
    if not path.is_file():
        raise Stale(f"{script}: no such file in the repository (moved or renamed?)")
    module = load_script(path)
    if not hasattr(module, "build_parser"):
        raise Stale(f"{script} has no build_parser(): add one (main() calls it) so its flags can be checked")
    if script in ENTRIES:
        check_entry(module.build_parser(), argv, web=script == WEB_ENTRY)
    else:
        parse_exactly(module.build_parser(), argv, script)


def check_entry(parser, argv: list[str], web: bool) -> None:
    """As ``easycache.cli.main``: the entry's flags, the rest the chosen backend's."""
    from easycache import cli
    from easycache.errors import UsageError

    try:
        ours, rest = parser.parse_known_args(argv)
    except UsageError as error:
        raise Stale(f"{parser.prog}: {error}") from None
    if ours.help:  # the entry prints both helps and stops
        return
    backend = cli.backend_name(ours, rest)
    need_prompt = ours.prompt_file is None and not web  # the page parses at start without a prompt
    BACKEND_CHECKS[backend](rest, need_prompt)


def check_backend_parser(name: str):
    def check(rest: list[str], need_prompt: bool) -> None:
        from easycache.backends import make_backend

        parse_exactly(make_backend(name).parser(), rest, f"the {name} backend")
    return check


def refuse_our_flags(rest: list[str], backend: str, why: str) -> None:
    """Without the backend's checkout: our own flags must not be left over; then skip the rest."""
    ours = [a for a in rest if a.startswith(OUR_NAMESPACES)]
    if ours:
        raise Stale(f"{' '.join(ours)}: not a flag of the entry (a typo?), and the {backend} backend would refuse it")
    raise Unchecked(f"{backend}'s own flags not checked: {why}")


_hyvideo: dict[Path, tuple] = {}


def hyvideo_parse_args(root: Path):
    """``hyvideo.config.parse_args`` of the checkout (the backend imports it); imported once."""
    if root not in _hyvideo:
        before = set(sys.modules)
        sys.path.insert(0, str(root))
        parse_args = importlib.import_module("hyvideo.config").parse_args
        _hyvideo[root] = parse_args, {m for m in set(sys.modules) - before if m.split(".")[0] == "hyvideo"}
    return _hyvideo[root][0]


def check_tencent(rest: list[str], need_prompt: bool) -> None:
    from easycache.testing.tencent_tiny import hyvideo_root_or_skip_reason

    root, reason = hyvideo_root_or_skip_reason()
    if root is None:
        refuse_our_flags(rest, "HunyuanVideo", reason)
    parse_args, saved, stderr = hyvideo_parse_args(root), sys.argv, io.StringIO()
    sys.argv = ["sample_video.py", *rest]  # HunyuanVideo's parser reads sys.argv
    try:
        with contextlib.redirect_stderr(stderr):
            parse_args()
    except SystemExit as exit:
        if exit.code:
            raise Stale(f"HunyuanVideo's parser: {stderr.getvalue().strip().splitlines()[-1]}") from None
    except ValueError as error:  # its own sanity checks
        raise Stale(f"HunyuanVideo's parser: {error}") from None
    finally:
        sys.argv = saved


def check_hunyuan15(rest: list[str], need_prompt: bool) -> None:
    from hunyuan15_tiny import hyvideo15_root_or_skip_reason

    from easycache.backends.hunyuan15 import GenerateScript

    root, reason = hyvideo15_root_or_skip_reason()
    if root is None:
        refuse_our_flags(rest, "HunyuanVideo-1.5", reason)
    script = GenerateScript(root)
    parser = script.parser()
    for action in parser._actions:  # as Hunyuan15Backend.parse: --prompt-file gives the prompts
        if action.dest == "prompt":
            action.required = need_prompt
    script.normalize(parse_exactly(parser, rest, "HunyuanVideo-1.5's generate.py"))


BACKEND_CHECKS = {"demo": check_backend_parser("demo"), "diffusers": check_backend_parser("diffusers"),
                  "tencent": check_tencent, "hunyuan15": check_hunyuan15}


@pytest.fixture(autouse=True, scope="module")
def forget_hyvideo():
    """HunyuanVideo's modules leave with this module (other tests import the checkout their way)."""
    yield
    for root, (_, modules) in _hyvideo.items():
        for name in modules:
            sys.modules.pop(name, None)
        if str(root) in sys.path:
            sys.path.remove(str(root))
    _hyvideo.clear()


def failure(command: Command) -> str | None:
    """Why the command fails, naming its page and line; None when it parses."""
    try:
        check_command(command)
    except Stale as error:
        return f"{command.where}: {command}\n  {error}"
    return None


def _ids(commands: list[Command]) -> list[str]:
    ids = [c.where for c in commands]
    return [f"{i}#{ids[:n].count(i) + 1}" if ids.count(i) > 1 else i for n, i in enumerate(ids)]


COMMANDS = doc_commands()


@pytest.mark.parametrize("command", COMMANDS, ids=_ids(COMMANDS))
def test_doc_command_runs_as_shown(command):
    try:
        message = failure(command)
    except Unchecked as why:
        pytest.skip(f"{command.where}: {why}")
    if message:
        pytest.fail(message, pytrace=False)


def test_the_docs_show_commands():
    """The collector found the docs' commands (not nothing, silently)."""
    assert len(COMMANDS) >= 10, f"only {len(COMMANDS)} commands of our scripts in README.md and docs/*.md"


@pytest.mark.parametrize("script", PROJECT_SCRIPTS)
def test_every_script_the_docs_may_show_has_build_parser(script):
    assert (ROOT / script).is_file(), f"{script} moved: update PROJECT_SCRIPTS here (and the docs)"
    assert callable(getattr(load_script(ROOT / script), "build_parser", None)), f"{script}: no build_parser()"


def test_the_checker_reports_stale_commands(tmp_path):
    page = tmp_path / "README.md"
    page.write_text("# Use\n\n```bash\n"
                    "pip install -e .  # the package\n"
                    ".venv/bin/python easycache_sample_video.py --model demo --easycache-treshold 0.1\n"
                    "OMP_NUM_THREADS=1 python3 easycache_sample_video.py --model demo --video-sizes 16 16\n"
                    "cd x && python tools/no_such.py --flag\n"
                    "torchrun --nproc_per_node=8 --rdzv_endpoint=HOST:29500 easycache_sample_video.py \\\n"
                    "    --model demo --prompt \"a # b\" ... --not-checked\n"
                    "python easycache_sample_video.py --prompt \"unclosed\n"
                    "```\n\n```python\npython tools/no_such.py\n```\n\n```console\n"
                    "$ python bench/run_bench.py --stepz 3\nerror: python easycache_sample_video.py --x\n```\n",
                    encoding="utf-8")
    commands = doc_commands(tmp_path)
    assert [c.where for c in commands] == ["README.md:5", "README.md:6", "README.md:7", "README.md:8",
                                           "README.md:10", "README.md:18"]
    assert commands[3].words[-2:] == ("--prompt", "a # b")
    failures = [failure(c) for c in commands]
    assert "README.md:5" in failures[0] and "unrecognized arguments: --easycache-treshold 0.1" in failures[0]
    assert "README.md:6" in failures[1] and "the demo backend: unrecognized arguments: --video-sizes" in failures[1]
    assert "README.md:7" in failures[2] and "tools/no_such.py: no such file" in failures[2]
    assert failures[3] is None
    assert "README.md:10" in failures[4] and "the shell cannot read this line" in failures[4]
    assert "README.md:18" in failures[5] and "bench/run_bench.py: unrecognized arguments: --stepz 3" in failures[5]


def test_a_leftover_flag_of_ours_fails_without_the_backends_checkout(monkeypatch):
    monkeypatch.delenv("HYVIDEO_ROOT", raising=False)
    typo = Command("README.md", 1, ("python", "easycache_sample_video.py", "--flow-reverse", "--easycache-tresh", "1"))
    assert "--easycache-tresh" in failure(typo)
    with pytest.raises(Unchecked, match="HYVIDEO_ROOT"):
        failure(Command("README.md", 2, ("python", "easycache_sample_video.py", "--flow-reverse")))


def test_shell_words():
    assert split_commands('A=1 python x.py --p "..." ... --q && git log | tee "a|b" 2>&1 # done') == [
        ["A=1", "python", "x.py", "--p", "..."], ["git", "log"], ["tee", "a|b"]]
    assert script_call(("torchrun", "--nnodes", "2", "--node_rank=0", "bench/x.py", "--a")) == ("bench/x.py", ["--a"])
    assert script_call(('"$venv/bin/python"', "-m", "pytest")) is None
    assert project_script("./sample_video.py") is None  # HunyuanVideo's, run in its checkout
    assert project_script("./bench/run_bench.py") == "bench/run_bench.py"


# ---------------------------------------------------------------------------- links
LINK_TARGET = re.compile(r"\]\(\s*(<[^>]*>|[^)\s]+)")  # [text](target), ![alt](target)
REFERENCE = re.compile(r"^\s{0,3}\[(?!\^)[^\]]+\]:\s*(\S+)")  # [name]: target
INLINE_CODE = re.compile(r"(`+).+?\1")
EXTERNAL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|//)")  # http:, https:, mailto:, ...
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, only letters, digits, spaces, - and _, spaces as -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>|`", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings; a repeated one gets -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for _, line, block in fenced_lines(page.read_text(encoding="utf-8")):
        heading = HEADING.match(line) if block is None else None
        if heading:
            base = slug(heading.group(1))
            found.add(f"{base}-{seen[base]}" if base in seen else base)
            seen[base] = seen.get(base, 0) + 1
    return found


@dataclasses.dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def id(self, root: Path) -> str:
        return f"{self.page.relative_to(root).as_posix()}:{self.line}:{self.target}"


def links_of(page: Path) -> list[Link]:
    """The relative links of a page, outside code."""
    found = []
    for number, line, block in fenced_lines(page.read_text(encoding="utf-8")):
        if block is None:
            line = INLINE_CODE.sub("", line)
            targets = [*LINK_TARGET.findall(line), *REFERENCE.findall(line)]
            found += [Link(page, number, t.strip("<>")) for t in targets if not EXTERNAL.match(t)]
    return found


def link_failure(link: Link, root: Path = ROOT) -> str | None:
    """Why the link is broken (naming its page and line), else None."""
    where = f"{link.page.relative_to(root).as_posix()}:{link.line}: {link.target}"
    path, _, anchor = link.target.partition("#")
    path = unquote(path.split("?")[0])
    if not path:
        target = link.page
    else:
        target = (root / path.lstrip("/")) if path.startswith("/") else link.page.parent / path
    if not target.resolve().is_relative_to(root.resolve()):
        return f"{where}: points outside the repository"
    if not target.exists():
        return f"{where}: no such file ({target.resolve().relative_to(root.resolve()).as_posix()})"
    if anchor and target.suffix == ".md" and unquote(anchor) not in anchors(target):
        return f"{where}: {target.name} has no heading with the anchor #{anchor}"
    return None


LINKS = [link for page in doc_pages() for link in links_of(page)]


@pytest.mark.parametrize("link", LINKS, ids=[link.id(ROOT) for link in LINKS])
def test_doc_link_resolves(link):
    message = link_failure(link)
    if message:
        pytest.fail(message, pytrace=False)


def test_the_link_checker_reports_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## The `--ray` flag: Ray!\n\n## Usage\n\n## Usage\n",
                                            encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Top\n[ok](docs/a.md#the---ray-flag-ray) [ok](docs/a.md#usage-1) ![img](docs/a.md) [web](https://x.y/z)\n"
        "[gone](docs/missing.md) and [no anchor](docs/a.md#nowhere) and [here](#top) `[code](nope.md)`\n"
        "```bash\n[not a link](nope.md)\n```\n[self](#missing-here)\n", encoding="utf-8")
    links = [link for page in doc_pages(tmp_path) for link in links_of(page)]
    assert [link.target for link in links] == ["docs/a.md#the---ray-flag-ray", "docs/a.md#usage-1", "docs/a.md",
                                               "docs/missing.md", "docs/a.md#nowhere", "#top", "#missing-here"]
    failures = [message for link in links if (message := link_failure(link, tmp_path))]
    assert len(failures) == 3
    assert failures[0].startswith("README.md:3: docs/missing.md: no such file")
    assert failures[1].startswith("README.md:3: docs/a.md#nowhere: a.md has no heading")
    assert failures[2].startswith("README.md:7: #missing-here: README.md has no heading")
