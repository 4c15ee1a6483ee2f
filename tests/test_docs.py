"""README.md and the documentation site (docs/, mkdocs.yml) are checked like code.

- The site builds with ``mkdocs build --strict``: a broken link, a missing page, a page left out
  of the nav or an API name that does not resolve fails (and a planted broken link does fail).
- README.md stays a front page (at most 300 lines) and every relative link in it and in docs/
  points to a file that exists.
- Every ```python block of README.md and of each page runs as written: a page's blocks in order,
  in one namespace, in a fresh process whose working directory is a temporary one. A block that
  cannot run here must say so in the page, with ``<!-- no-run: reason -->`` on the line above
  it; those are counted and listed (test_no_run_blocks_are_few_and_listed).
- Every ``fedlearn ...`` command in a ```bash block parses with the CLI's own parser (and a
  ``train`` command builds its validated config), so a flag that does not exist fails; every
  ``python benchmarks/...`` or ``python tools/...`` command names a script that exists and
  flags that script defines. Nothing is trained. A walkthrough's blocks (``<!-- walkthrough:
  STEP -->``, Bob and Alice on separate machines) are run for real by
  tests/backends/test_walkthrough.py.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mkdocs_hooks import strip_roles  # tools/

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
MAX_LINES = 300
MAX_NO_RUN = 2  # python blocks allowed to opt out of running; keep it that few

# pages whose Python reads real MNIST (they take the mnist_dir fixture: the slow tier, and in CI
# a missing data set fails) or that start something slow (a Ray runtime)
MNIST_PAGES = {"README.md", "docs/guide/in-process.md"}
SLOW_PAGES = {"docs/guide/ray.md"}


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    no_run: str | None  # the reason given in a preceding <!-- no-run: ... --> comment
    walkthrough: str | None = None  # <!-- walkthrough: STEP -->: tests/backends/test_walkthrough.py


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def code_blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page (fences may be indented, as in a list item)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        reason = re.fullmatch(r"<!--\s*no-run:\s*(.+?)\s*-->", prev)
        step = re.fullmatch(r"<!--\s*walkthrough:\s*(\S+)\s*-->", prev)
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        assert j < len(lines), f"{rel(page)}:{i + 1}: unclosed code block"
        blocks.append(Block(page, i + 1, lang.lower(), "\n".join(body) + "\n",
                            reason.group(1) if reason else None,
                            step.group(1) if step else None))
        i = j + 1
    return blocks


ALL_BLOCKS = [b for page in PAGES for b in code_blocks(page)]
PYTHON_PAGES = sorted({b.page for b in ALL_BLOCKS if b.lang in ("python", "py")})


# ---------------------------------------------------------------- the site builds, strictly

def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    # no -q: mkdocs counts the warnings that --strict turns into failures only when it logs them
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(config), "-d", str(site)],
                          cwd=config.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"})


def test_site_builds_in_strict_mode(tmp_path):
    done = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ("index.html", "api/workers/index.html", "benchmarks/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # the API reference really came from the docstrings
    api = (tmp_path / "site" / "api" / "workers" / "index.html").read_text(encoding="utf-8")
    assert "make_virtual_workers" in api and "Split (x, y) between" in api
    # Sphinx cross-reference roles are shown as the code they name, not as ":func:name"
    for page in (tmp_path / "site" / "api").rglob("*.html"):
        roles = ROLE_LEFT.findall(page.read_text(encoding="utf-8"))
        assert not roles, f"{page.name}: {roles[:3]}"


ROLE_LEFT = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj):<code>")


def test_role_prefixes_are_stripped_from_rendered_docstrings():
    html = "see :func:<code>fedavg</code> and :class:<code>~fedlearn.config.DPConfig</code>."
    assert strip_roles(html) == "see <code>fedavg</code> and <code>DPConfig</code>."
    assert strip_roles("a :func:`x` in prose") == "a :func:`x` in prose"  # only rendered code


@pytest.mark.parametrize("breakage", ["broken link", "missing page"])
def test_a_broken_site_fails_the_strict_build(tmp_path, breakage):
    """The strict build is not a formality: plant one mistake in a copy and it fails."""
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "fedlearn").symlink_to(REPO / "fedlearn")
    (tmp_path / "tools").symlink_to(REPO / "tools")
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    if breakage == "broken link":
        page = tmp_path / "docs" / "guide" / "concepts.md"
        page.write_text(page.read_text(encoding="utf-8")
                        + "\nSee [nowhere](no-such-page.md).\n", encoding="utf-8")
    else:
        config = config.replace("  - References: references.md",
                                "  - References: references.md\n  - Gone: gone.md")
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert ("no-such-page.md" if breakage == "broken link" else "gone.md") in done.stderr


# ---------------------------------------------------------------- README and links

def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"
    text = "\n".join(lines)
    # .ci/run takes the test command from the block after this marker
    assert re.search(r"<!-- test-command.*-->\n```bash\n"
                     r"python -m pytest -q -n 2 --dist loadfile --durations=10\n", text)
    assert "mkdocs serve" in text


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(page: Path) -> list[tuple[int, str]]:
    found, fence = [], False
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip().startswith("```"):
            fence = not fence
        if fence:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # http(s)://, mailto:, an anchor on the same page
            found.append((n, target))
    return found


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_to_existing_files(page):
    missing = [f"{rel(page)}:{n}: {target}" for n, target in relative_links(page)
               if not (page.parent / target.split("#")[0]).exists()]
    assert not missing, "links to nothing:\n" + "\n".join(missing)


def test_every_image_is_used():
    """An image under docs/images is shown somewhere (the README or a page)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    unused = [p.name for p in (DOCS / "images").glob("*.png") if p.name not in text]
    assert not unused, f"images used nowhere: {unused}"


# ---------------------------------------------------------------- Python blocks run

RUNNER = r"""
import sys, time, traceback
page, blocks = sys.argv[1], __import__("json").loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for line, code in blocks:
    start = time.perf_counter()
    try:
        exec(compile(code, f"{page}, block at line {line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the block at {page}:{line}", file=sys.stderr)
        sys.exit(1)
    print(f"ran the block at {page}:{line} in {time.perf_counter() - start:.1f} s")
"""


def page_params():
    for page in PYTHON_PAGES:
        marks = [pytest.mark.slow] if rel(page) in SLOW_PAGES else []
        if rel(page) in MNIST_PAGES:
            marks.append(pytest.mark.mnist)  # conftest puts mnist tests in the slow tier
        yield pytest.param(page, id=rel(page), marks=marks)


@pytest.mark.parametrize("page", page_params())
def test_python_blocks_run_as_written(page, tmp_path, request):
    import json

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]), "MPLBACKEND": "Agg"}
    if rel(page) in MNIST_PAGES:
        env["FEDLEARN_DATA"] = request.getfixturevalue("mnist_dir")
    blocks = [(b.line, b.code) for b in code_blocks(page)
              if b.lang in ("python", "py") and b.no_run is None]
    done = subprocess.run([sys.executable, "-c", RUNNER, rel(page)], input=json.dumps(blocks),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert done.stdout.count("ran the block") == len(blocks)


def test_the_pages_named_here_exist():
    assert all((REPO / p).is_file() for p in MNIST_PAGES | SLOW_PAGES)


def test_no_run_blocks_are_few_and_listed():
    skipped = [b for b in ALL_BLOCKS if b.lang in ("python", "py") and b.no_run is not None]
    for b in skipped:
        print(f"not run: {rel(b.page)}:{b.line}: {b.no_run}")
    assert len(skipped) <= MAX_NO_RUN, [f"{rel(b.page)}:{b.line}" for b in skipped]


# ---------------------------------------------------------------- shell commands parse

def shell_commands(block: Block) -> list[tuple[int, str]]:
    """The block's commands, continuation lines joined, comment lines dropped."""
    out, pending, start = [], "", 0
    for n, line in enumerate(block.code.splitlines(), block.line + 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


SEQ = re.compile(r"\$\(seq -f \"([^\"]+)\" (\d+) (\d+)\)")


def simple_commands(command: str) -> list[list[str]]:
    """The simple commands of a command line (split at ``&&``, ``||``, ``;``, ``|``), each as
    the words the shell would pass; nothing is executed. The one expansion the docs use,
    ``$(seq -f "client%03g" 0 99)``, is done here; any other is refused."""
    command = SEQ.sub(lambda m: " ".join(m.group(1) % i for i in
                                         range(int(m.group(2)), int(m.group(3)) + 1)), command)
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            assert "$(" not in word and "`" not in word, f"unsupported expansion: {command}"
            commands[-1].append(word)
    # "..." stands for more flags; VAR=value before a command sets its environment
    commands = [[w for w in c if w != "..."] for c in commands]
    for c in commands:
        while c and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", c[0]):
            del c[0]
    return [c for c in commands if c]


# a walkthrough's blocks are run for real, as written (tests/backends/test_walkthrough.py)
SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("bash", "sh", "shell", "console")
                and b.walkthrough is None]


def fedlearn_commands():
    for b in SHELL_BLOCKS:
        for line, command in shell_commands(b):
            for argv in simple_commands(command):
                if argv[0] == "fedlearn":
                    yield pytest.param(argv[1:], id=f"{rel(b.page)}:{line}")


@pytest.mark.parametrize("argv", fedlearn_commands())
def test_fedlearn_commands_in_the_docs_parse(argv, capsys):
    from fedlearn.cli import build_parser, config_from_args

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"fedlearn {shlex.join(argv)}: {capsys.readouterr().err.strip()} "
                    f"(exit {exc.code})")
    if args.command == "train" and not args.resume and not args.config:
        config_from_args(args)  # a refused combination or a bad value raises, naming it


def script_commands():
    for b in SHELL_BLOCKS:
        cwd = REPO
        for line, command in shell_commands(b):
            for argv in simple_commands(command):
                if argv[0] == "cd" and len(argv) == 2:
                    cwd = (cwd / argv[1]).resolve()
                elif argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py"):
                    yield pytest.param(cwd / argv[1], argv[2:], id=f"{rel(b.page)}:{line}")


@pytest.mark.parametrize("script, argv", script_commands())
def test_script_commands_in_the_docs_name_real_flags(script, argv):
    assert script.is_file(), f"no such script: {script}"
    source = script.read_text(encoding="utf-8")
    flags = {a.split("=")[0] for a in argv if a.startswith("--")}
    unknown = sorted(f for f in flags if not re.search(rf"[\"']{re.escape(f)}[\"'=]", source))
    assert not unknown, f"{rel(script)} defines no {unknown}"
