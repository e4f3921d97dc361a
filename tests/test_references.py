"""The project speaks only of what it contains: every path its code, notebooks and book name exists in the
repository (or is made by a run), and nothing cites a file or a discussion a reader does not have."""
import re
import subprocess

import pytest

from cakd.definitions import paths

SCANNED = ("cakd", "notebooks", "book", "tests", "scripts", ".ci", "README.md", "Makefile", "_config.yml",
           "_toc.yml", "pyproject.toml", "requirements.txt")
# a path written with at least one folder and a source file's suffix: book/method.md, ../cakd/training/losses.py
PATH = re.compile(r"(?<![\w/.$-])((?:\.\./|\./)*(?:[\w.-]+/)+[\w.-]+\.(?:py|md|ipynb|ya?ml|toml|cfg|txt|json|css|bib|sh))\b")
# what runs write (the run registry, executed pages, figures, the built book) and folders outside the repository
# a path may rightly name: the user's cache home, a temporary folder, the Python installation
MADE_BY_RUNS = ("results/", "book/runs/", "book/figures/", "_build/", "~/", "/tmp/", "site-packages/", ".venv/")
NOT_OURS = re.compile(r"AUTHORS_RECIPE|\bDESIGN(\.md| section)|STYLE\.md|\.\./shared|\bissues? #?\d+", re.I)


def scanned_files():
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *SCANNED],
                            cwd=paths.ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [paths.ROOT / name for name in listed if not name.startswith("tests/golden/")
            and (paths.ROOT / name).is_file() and (paths.ROOT / name).suffix not in (".png", ".svg")]


def unknown_paths(file, text):
    problems = []
    for match in PATH.finditer(text):
        name = match.group(1)
        if any(mark in name for mark in "<{*$") or name.startswith(MADE_BY_RUNS):
            continue
        candidates = [(file.parent / name).resolve(), (paths.ROOT / name).resolve()]
        inside = [c for c in candidates if c == paths.ROOT or paths.ROOT in c.parents]
        if not any(c.exists() for c in inside):
            problems.append(name)
    return problems


def test_the_scan_sees_the_code_the_notebooks_and_the_book():
    names = {f.relative_to(paths.ROOT).as_posix() for f in scanned_files()}
    assert {"cakd/training/losses.py", "notebooks/method3.ipynb", "book/reproduction.md", "README.md"} <= names


@pytest.mark.parametrize("text,found", [("see ../shared/DESIGN.md", ["../shared/DESIGN.md"]),
                                        ("`book/nothing.md`", ["book/nothing.md"]),
                                        ("`cakd/training/losses.py` and book/runs/<row>.ipynb", [])])
def test_the_path_check_itself_tells_missing_from_present(text, found):
    assert unknown_paths(paths.ROOT / "README.md", text) == found


def test_every_named_path_exists_in_the_repository():
    this = paths.ROOT / "tests" / "test_references.py"
    problems = {f.relative_to(paths.ROOT).as_posix(): bad for f in scanned_files()
                if f != this and (bad := unknown_paths(f, f.read_text(errors="replace")))}
    assert not problems, f"paths that are not in the repository: {problems}"


def test_nothing_cites_a_team_file_or_an_issue():
    this = paths.ROOT / "tests" / "test_references.py"
    problems = {f.relative_to(paths.ROOT).as_posix(): NOT_OURS.findall(f.read_text(errors="replace"))
                for f in scanned_files() if f != this and NOT_OURS.search(f.read_text(errors="replace"))}
    assert not problems, problems
