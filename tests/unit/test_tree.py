"""The source tree keeps its shape: rooms of at most 16 modules, modules of at most 600 lines,
nothing that points outside the repository, no dead link or `python -m` in the docs.

Each check is a function over a root directory, so the same code runs on the checkout and, in
the tests at the end, on a small tree made to break it (a check that cannot fail is no check).
Import circles are checked by tests/unit/test_import_graph.py.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

MAX_MODULES_PER_FOLDER = 16
MAX_MODULE_LINES = 600
LINE_CAPPED = ("edrfleet", "bench", "scripts", "tests")  # the product, its tools and tests
# Built from pieces so that this file does not contain what it looks for.
OUTSIDE_NEEDLES = ("DESIGN" + ".md", ".." + "/shared")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PYTHON_M = re.compile(r"-m\s+(edrfleet(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
SKIP_DIRS = {".git", ".venv", ".edrfleet", "__pycache__", ".pytest_cache", ".ruff_cache"}
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
TOP_DIRS = ("edrfleet", "tests", "bench", "bpf", "templates", "roles", "scripts", "docs",
            "inventories")
PLACEHOLDER = re.compile(r"[<>{}*?$|…\[]")


def tree_files(root: Path) -> list[Path]:
    """Files git tracks or would track (untracked but not ignored), else every file outside
    the tool and state folders (a copy of the tree without .git)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in root.rglob("*") if p.is_file()
                      and not SKIP_DIRS.intersection(p.relative_to(root).parts))
    names = {n for n in out.decode("utf-8", "surrogateescape").split("\0") if n}
    return sorted(root / n for n in names if (root / n).is_file())


def crowded_folders(root: Path) -> list[str]:
    problems = []
    for folder in sorted(p for p in (root / "edrfleet").rglob("*") if p.is_dir()):
        modules = [m.name for m in folder.glob("*.py") if m.name != "__init__.py"]
        if len(modules) > MAX_MODULES_PER_FOLDER:
            problems.append(
                f"{folder.relative_to(root)}/: {len(modules)} modules side by side, at most "
                f"{MAX_MODULES_PER_FOLDER} (fix: move the modules of one concern into a "
                f"subpackage)")
    return problems


def long_modules(root: Path, tops: Iterable[str] = LINE_CAPPED) -> list[str]:
    problems = []
    for top in tops:
        for module in sorted((root / top).rglob("*.py")):
            if SKIP_DIRS.intersection(module.relative_to(root).parts):
                continue
            lines = len(module.read_bytes().splitlines())
            if lines > MAX_MODULE_LINES:
                problems.append(
                    f"{module.relative_to(root)}: {lines} lines, at most {MAX_MODULE_LINES} "
                    f"(fix: split it by concern into modules whose names say what they hold)")
    return problems


def outside_references(root: Path, files: Iterable[Path]) -> list[str]:
    needles = [n.encode() for n in OUTSIDE_NEEDLES]
    problems = []
    for path in files:
        data = path.read_bytes()
        for needle in (n for n in needles if n in data):
            for lineno, line in enumerate(data.splitlines(), 1):
                if needle in line:
                    problems.append(
                        f"{path.relative_to(root)}:{lineno}: mentions {needle.decode()!r}, "
                        f"outside the repository (fix: say it in the product's own words, or "
                        f"point at docs/)")
    return problems


def doc_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def dead_links(root: Path) -> list[str]:
    problems = []
    for doc in doc_files(root):
        for lineno, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for target in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                    continue  # a URL or an anchor in the same file
                if not (doc.parent / target.split("#", 1)[0]).exists():
                    problems.append(
                        f"{doc.relative_to(root)}:{lineno}: link to {target}, which does not "
                        f"exist (fix: point it at the file's new place, relative to "
                        f"{doc.parent.relative_to(root) or Path('.')}/)")
    return problems


def dead_paths(root: Path) -> list[str]:
    """Repository paths quoted in the docs (`edrfleet/...`, `tests/...`): a module that moved
    leaves them behind.  Placeholders (`<host>`, `*`, `{a,b}`) are not paths."""
    problems = []
    for doc in doc_files(root):
        text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), doc.read_text(encoding="utf-8"))
        for lineno, line in enumerate(text.splitlines(), 1):
            for span in CODE_SPAN.findall(line):
                for word in span.split():
                    path = word.rstrip(".,;:)")
                    if (path.split("/", 1)[0] not in TOP_DIRS or "/" not in path
                            or PLACEHOLDER.search(path)):
                        continue
                    if not (root / path).exists():
                        problems.append(
                            f"{doc.relative_to(root)}:{lineno}: `{path}` does not exist (fix: "
                            f"write where it lives now, relative to the repository root)")
    return problems


def module_exists(root: Path, dotted: str) -> bool:
    path = root.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def dead_python_m(root: Path) -> list[str]:
    sources = [*doc_files(root), root / "Makefile",
               *(p for p in sorted((root / "roles").rglob("*")) if p.is_file()),
               *sorted((root / "scripts").glob("*.sh"))]
    problems = []
    for path in sources:
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for dotted in PYTHON_M.findall(line):
                if not module_exists(root, dotted):
                    problems.append(
                        f"{path.relative_to(root)}:{lineno}: `python -m {dotted}` names no "
                        f"module (fix: the module's new dotted path under edrfleet/)")
    return problems


# --- the checkout ------------------------------------------------------------------------------
def test_no_package_folder_holds_more_than_16_modules() -> None:
    assert not crowded_folders(REPO), "\n".join(crowded_folders(REPO))


def test_no_module_is_longer_than_600_lines() -> None:
    assert not long_modules(REPO), "\n".join(long_modules(REPO))


def test_nothing_in_the_tree_points_outside_the_repository() -> None:
    files = tree_files(REPO)
    assert Path(__file__).resolve() in files
    problems = outside_references(REPO, files)
    assert not problems, "\n".join(problems)


def test_every_relative_link_in_the_docs_points_to_a_file() -> None:
    assert not dead_links(REPO), "\n".join(dead_links(REPO))


def test_every_repository_path_quoted_in_the_docs_exists() -> None:
    assert not dead_paths(REPO), "\n".join(dead_paths(REPO))


def test_every_python_m_in_the_docs_makefile_and_role_names_a_module() -> None:
    assert not dead_python_m(REPO), "\n".join(dead_python_m(REPO))


# --- the checks themselves, on a tree made to break them ---------------------------------------
@pytest.fixture
def broken(tmp_path: Path) -> Path:
    crowded = tmp_path / "edrfleet" / "crowded"
    crowded.mkdir(parents=True)
    for i in range(MAX_MODULES_PER_FOLDER + 1):
        (crowded / f"m{i}.py").write_text("")
    (crowded / "__init__.py").write_text("")
    (tmp_path / "edrfleet" / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "See [policy](docs/policy.md), [web](https://example.org/x) and [here](#top).\n"
        "Run `python -m edrfleet.gone.module`.\n"
        "```\n`edrfleet/fenced.py`\n```\nSee `edrfleet/moved.py`, `tests/<room>/x.py`.\n")
    (tmp_path / "docs" / "a.md").write_text(f"cites {OUTSIDE_NEEDLES[0]}\n[up](../README.md)\n")
    (tmp_path / "Makefile").write_text("run:\n\t$(PY) -m edrfleet.crowded.m1\n")
    (tmp_path / "roles").mkdir()
    return tmp_path


def test_the_checks_find_what_they_look_for(broken: Path) -> None:
    assert crowded_folders(broken) == [
        "edrfleet/crowded/: 17 modules side by side, at most 16 (fix: move the modules of one "
        "concern into a subpackage)"]
    assert [p.split(":")[0] for p in long_modules(broken, ("edrfleet",))] == ["edrfleet/big.py"]
    assert [p.split(": ")[0] for p in outside_references(broken, tree_files(broken))] == [
        "docs/a.md:1"]
    assert [p.split(": ")[0] for p in dead_links(broken)] == ["README.md:1"]
    assert [p.split(": ")[0] for p in dead_python_m(broken)] == ["README.md:2"]
    assert [p.split(": ")[0] for p in dead_paths(broken)] == ["README.md:6"]


def test_a_tree_within_the_limits_passes(broken: Path) -> None:
    for extra in list((broken / "edrfleet" / "crowded").glob("m1[0-9].py")):
        extra.unlink()
    (broken / "edrfleet" / "big.py").write_text("x = 1\n" * MAX_MODULE_LINES)
    (broken / "docs" / "a.md").write_text("[up](../README.md)\n")
    (broken / "docs" / "policy.md").write_text("")
    (broken / "README.md").write_text("[policy](docs/policy.md#top) `python -m edrfleet`\n")
    (broken / "edrfleet" / "__init__.py").write_text("")
    assert not crowded_folders(broken)
    assert not long_modules(broken, ("edrfleet",))
    assert not outside_references(broken, tree_files(broken))
    assert not dead_links(broken)
    assert not dead_python_m(broken)
    assert not dead_paths(broken)
