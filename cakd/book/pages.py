"""Every page of the book, made in one place (torch-free: cakd.orchestration.reproduce hands `Page`s to Ray): the run
notebooks, one per method, each its own title and introduction then notebooks/run_template.ipynb's cells, with every
option its method reads as a papermill parameter (None: the profile's value, so no default is typed twice) plus
`profile`, `seed` and `force`; the other pages' parameters; a page's execution, stamp, title and profile banner; the
placeholders of pages not run yet; the table of contents."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..definitions import files, manifest, paths
from ..definitions.config import OPTIONS
from ..definitions.manifest import Row
from ..definitions.methods import METHODS
from ..definitions.networks import TEACHER_LABELS
from ..definitions.profiles import PROFILES, get_profile, profile_config

TEMPLATE = "run_template"
TEACHERS_PAGE, RESULTS_PAGE = "teachers", "results"
RUN_NOTEBOOKS: dict[str, str] = {m.notebook: name for name, m in METHODS.items()}   # run notebook -> its method
TEACHER_PAGE_OPTIONS = ("dataset", "data_dir", "synthetic_size", "synthetic_classes", "model_scale", "precision",
                        "device")
# Parameters of the pages that train no student: (type, default, doc) each.
PAGE_PARAMETERS: dict[str, dict[str, tuple[str, Any, str]]] = {
    TEACHERS_PAGE: {"profile": ("str", "paper", "paper | consistent | smoke"),
                    "teachers": ("list", None, "teacher names; None: every teacher the manifest uses"),
                    # the options that decide a teacher trained here (smoke), as the run notebooks have them
                    **{name: (o.type_name if o.optional else f"Optional[{o.type_name}]", None, o.doc)
                       for name, o in OPTIONS.items() if o.scope == "teacher_training" or name in TEACHER_PAGE_OPTIONS},
                    "force": ("bool", False, "True: train the smoke teachers again")},
    RESULTS_PAGE: {"profile": ("str", "paper", "whose runs fill the page: paper (the authors' recipe), consistent "
                                              "(ours), smoke"),
                   "seeds": ("Optional[int]", None, "None: every seed in the registry; N: seeds 0..N-1 only")},
}
NOTEBOOKS = (*RUN_NOTEBOOKS, *PAGE_PARAMETERS)
TOC_HEADER = ("# Generated from cakd/definitions/manifest.py by `python -m cakd notebooks`: do not edit by hand "
              "(a test compares).\n"
              "# book/runs/<id> pages are written by `python -m cakd reproduce` (a placeholder until a row has run).\n")


# ----------------------------------------------------------------------------- parameters

def parameter_names(notebook: str) -> list[str]:
    """The papermill parameters of `notebook`, in the order of its parameters cell."""
    return list(default_parameters(notebook))


def default_parameters(notebook: str) -> dict[str, Any]:
    """`notebook`'s parameters with their defaults, as its parameters cell sets them (None: the profile's value)."""
    if notebook in PAGE_PARAMETERS:
        return {name: default for name, (_, default, _) in PAGE_PARAMETERS[notebook].items()}
    method = RUN_NOTEBOOKS[notebook]
    probe = profile_config("paper", method=method, teachers=_default_teachers(method))
    options = [name for name in OPTIONS if name not in ("profile", "method", "seed") and
               (probe.reads(name) or OPTIONS[name].scope in ("speed", "teaching", "teacher_training"))
               and (name != "teachers" or METHODS[method].teachers != "none")]
    return {"profile": "paper", "seed": 0, **{name: _default_teachers(method) if name == "teachers" else None
                                              for name in options}, "force": False}


def parameters_source(notebook: str) -> str:
    """The source of `notebook`'s parameters cell: one typed, commented line per parameter."""
    # quoted annotations: IPython evaluates them, papermill --help-notebook reads them as text
    defaults = default_parameters(notebook)
    if notebook in PAGE_PARAMETERS:
        return "\n".join(f"{name}: {kind if kind in ('str', 'int', 'bool', 'list') else repr(kind)} = "
                         f"{defaults[name]!r}  # {doc}" for name, (kind, _, doc) in PAGE_PARAMETERS[notebook].items())
    lines = ['profile: str = "paper"  # paper: the authors\' recipe (GPU); consistent: ours (GPU); smoke: offline '
             'CPU demo', "seed: int = 0  # " + OPTIONS["seed"].doc]
    for name in list(defaults)[2:-1]:
        option = OPTIONS[name]
        kind = "list" if name == "teachers" else f'"Optional[{option.type_name.removeprefix("Optional[").rstrip("]")}]"'
        lines.append(f"{name}: {kind} = {defaults[name]!r}  # {option.doc}{_profile_values(name)}")
    lines.append("force: bool = False  # True: train again even if the run registry holds this exact config")
    return "\n".join(lines)


def _default_teachers(method: str) -> list[str]:
    """Its first manifest row's teachers (the report's choice), else as many registered ones as its loss takes."""
    wanted = {"none": 0, "one": 1, "several": 2}[METHODS[method].teachers]
    return next((list(row.params["teachers"]) for row in manifest.all_rows()
                 if row.params["method"] == method and "teachers" in row.params), list(TEACHER_LABELS)[:wanted])


def _profile_values(name: str) -> str:
    """' (paper 0.01, smoke 0.003)' where the profiles differ on `name`, else ' (default 0.01)'."""
    values = {p: getattr(profile_config(p, teachers=[], method="baseline"), name) for p in PROFILES}
    if len({repr(v) for v in values.values()}) == 1:
        return f" (default {next(iter(values.values()))!r})"
    return " (" + ", ".join(f"{p} {v!r}" for p, v in values.items()) + ")"


# ----------------------------------------------------------------------------- the run notebooks, generated

def run_notebook(notebook: str) -> nbformat.NotebookNode:
    """The whole of `notebooks/<notebook>.ipynb` (a run notebook): its own title and introduction (its first two
    cells, as committed), then the template's cells with its name, example and parameters filled in."""
    method = METHODS[RUN_NOTEBOOKS[notebook]]
    own = nbformat.read(paths.NOTEBOOKS / f"{notebook}.ipynb", as_version=4)
    cells = []
    for cell in nbformat.read(paths.NOTEBOOKS / f"{TEMPLATE}.ipynb", as_version=4).cells:
        tags = cell.metadata.get("tags", [])
        if "template" in tags or ("teachers" in tags and method.teachers == "none"):
            continue
        source = cell.source.replace("{notebook}", notebook).replace("{example}", method.example)
        cells.append(nbformat.from_dict({**cell, "source": parameters_source(notebook) if "parameters" in tags
                                         else source}))
    return nbformat.v4.new_notebook(cells=own.cells[:2] + cells, metadata=own.metadata)


def write_notebooks(root: Path | None = None) -> list[str]:
    """Write what the book's sources derive from cakd (`python -m cakd notebooks`): every run notebook from the
    template, the parameters cell of the other pages, and `_toc.yml` from the manifest; returns what changed."""
    changed = []
    if (paths.ROOT / "_toc.yml").read_text() != render_toc():
        files.write_text(paths.ROOT / "_toc.yml", render_toc())
        changed.append("_toc.yml")
    for notebook in NOTEBOOKS:
        path = (root or paths.NOTEBOOKS) / f"{notebook}.ipynb"
        if notebook in RUN_NOTEBOOKS:
            nb, old = run_notebook(notebook), nbformat.read(path, as_version=4)
            same = [(c.cell_type, c.source, c.metadata) for c in old.cells] == \
                [(c.cell_type, c.source, c.metadata) for c in nb.cells]
        else:
            nb = nbformat.read(path, as_version=4)
            cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
            same, cell.source = cell.source == parameters_source(notebook), parameters_source(notebook)
        if not same:
            nbformat.write(nb, path)
            changed.append(notebook)
    return changed


# ----------------------------------------------------------------------------- a page: made, executed, saved

@dataclass(frozen=True)
class Page:
    """book/runs/<name>.ipynb: `notebooks/<notebook>.ipynb` run with `parameters` under `profile`, titled by `row`."""
    name: str
    notebook: str
    parameters: dict[str, Any]
    profile: str
    row: Row | None = None

    @property
    def path(self) -> Path:
        return paths.inside(paths.BOOK_RUNS, f"{self.name}.ipynb", "row")

    def stamp(self) -> dict[str, Any]:
        """What the page is made from: its notebook, its parameters, the profile and cakd's code. A page whose stamp
        is unchanged is reused; any change to what renders it executes it again (a finished run is reused)."""
        code = sorted(paths.PACKAGE.rglob("*.py"))
        return {"notebook": self.notebook, "source": files.digest(paths.NOTEBOOKS / f"{self.notebook}.ipynb")[:16],
                "code": files.digest(*(part for p in code for part in (p.relative_to(paths.PACKAGE).as_posix(), p))
                                     )[:16], "parameters": self.parameters, "profile": self.profile}

    def render(self, source: nbformat.NotebookNode | None = None, stamp: dict[str, Any] | None = None) -> "Rendered":
        """Execute the page's notebook (or `source`, its contents read earlier, with the `stamp` taken then)."""
        start = time.perf_counter()
        stamp = stamp or self.stamp()
        executed, error = execute(source or self.notebook, self.parameters)
        return Rendered(self, stamp, executed, error, time.perf_counter() - start)


@dataclass(frozen=True)
class Rendered:
    """A page as executed: its notebook's JSON (None if papermill made none), the error's first line (None if none)."""
    page: Page
    stamp: dict[str, Any]
    executed: str | None
    error: str | None
    seconds: float

    def save(self) -> None:
        """Into book/runs/: its parameters folded as other code cells, titled by its row (several rows share a
        notebook), the profile's banner under the title, the stamp (which says if it failed)."""
        if self.executed is None:
            return
        page, nb = self.page, nbformat.reads(self.executed, as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.setdefault("tags", [])
            if {"parameters", "injected-parameters"} & set(tags) and "hide-input" not in tags:
                tags.append("hide-input")
        title = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.lstrip().startswith("# "))
        heading, _, text = title.source.strip().partition("\n")
        profile = get_profile(page.profile)
        if (row := page.row) is not None:
            kind = ("Table 1 row" if row.table1 else "a point of " + ", ".join(f"Figure {f[-1]}" for f in row.figures)
                    + (" (ours, not in the report)" if row.ours else ""))
            report = (f" The report's test accuracy for this row: {row.report_acc:.2f}%."
                      if row.report_acc is not None and profile.comparable else "")
            heading, text = f"# {row.label}", (
                f"{kind} `{row.id}`: the notebook `notebooks/{row.notebook}.ipynb` executed by papermill with "
                f"profile `{page.profile}` and this row's parameters (the cell tagged `injected-parameters` below the "
                f"defaults).{report}")
        banner = profile.banner
        title.source = "\n\n".join(filter(None, [heading, banner and f"```{{warning}}\n{banner}\n```", text.strip()]))
        nb.metadata["cakd"] = self.stamp if self.error is None else {**self.stamp, "failed": True}
        files.write_text(page.path, nbformat.writes(nb))   # atomic; makes book/runs/


def execute(notebook: str | nbformat.NotebookNode, parameters: dict[str, Any], output: Path | None = None
            ) -> tuple[str | None, str | None]:
    """papermill `notebooks/<notebook>.ipynb` (or a notebook given whole) with `parameters` on the `python3` kernel (IPC
    sockets, not TCP): (the executed notebook's JSON, None), or (it with its traceback or None, 'Error: first line')."""
    import papermill
    from traitlets.config import Config

    source = paths.NOTEBOOKS / f"{notebook}.ipynb" if isinstance(notebook, str) else notebook
    with tempfile.TemporaryDirectory(prefix="cakd-page-") as folder:   # notebooks find files through cakd.paths
        out, error = output or Path(folder) / "page.ipynb", None
        try:
            papermill.execute_notebook(source, str(out), parameters=parameters, cwd=folder, progress_bar=False,
                                       config=Config(KernelManager={"transport": "ipc"}))
        except papermill.PapermillExecutionError as e:     # the page keeps the traceback
            error = f"{e.ename}: {first_line(e.evalue or '')}"
        except Exception as e:  # noqa: BLE001 -- a kernel that died or did not start
            error = f"{type(e).__name__}: {first_line(e)}"
        return (out.read_text() if out.exists() else None), error


def stamp_of(path: Path) -> dict[str, Any] | None:
    """The stamp of the page at `path`; None for no page, or an unreadable one (executed again)."""
    try:
        return dict(nbformat.read(path, as_version=4).metadata.get("cakd", {}))
    except Exception:  # noqa: BLE001 -- no page, or an unreadable one
        return None


def row_pages(rows: list[Row], profile: str) -> list[Page]:
    """The pages of `rows` (each its seed-0 run) under `profile`."""
    return [Page(row.id, row.notebook, row.notebook_parameters(profile), profile, row) for row in rows]


def write_placeholders(profile: str) -> None:
    """A page for every toc entry this profile has not executed (the toc lists all of them), so the book builds."""
    entries = [(row.id, row.label, f"--rows {row.id}") for row in manifest.all_rows()]
    entries.append((TEACHERS_PAGE, "Teachers", ""))
    for name, title, option in entries:
        page = Page(name, name, {}, profile)
        if (stamp_of(page.path) or {}).get("profile") != profile:   # none, or another profile's
            command = f"python -m cakd reproduce --profile {profile} {option}".strip()
            nb = nbformat.v4.new_notebook(metadata={"cakd": {"placeholder": True, "profile": profile}, "kernelspec": {
                "name": "python3", "display_name": "Python 3", "language": "python"}})
            nb.cells.append(nbformat.v4.new_markdown_cell(
                f"# {title}\n\nNot run yet for the `{profile}` profile. To run it and rebuild the book:\n\n"
                f"```bash\n{command}\n```\n"))
            files.write_text(page.path, nbformat.writes(nb))   # atomic; makes book/runs/


def first_line(e: Any) -> str:
    """The first line of an error's message (or of any text)."""
    return (str(e).strip().splitlines() or [""])[0]


# ----------------------------------------------------------------------------- the table of contents

def toc_parts() -> list[tuple[str, list[str]]]:
    """(caption, page files) of every part of the book, in reading order."""
    points = manifest.FIGURE_POINTS
    fig2 = [row.id for row in points if "fig2" in row.figures]
    fig4 = [row.id for row in points if "fig4" in row.figures]
    if other := [row.id for row in points if row.id not in fig2 + fig4]:
        raise ValueError(f"figure point(s) {other} belong to neither Figure 2 nor Figure 4; give the book a part "
                         "for them in cakd.book.pages.toc_parts")
    runs = lambda ids: [f"book/runs/{i}" for i in ids]   # noqa: E731
    return [("The report and this book", ["book/method", "book/reproduction"]),
            ("Results", [f"book/runs/{RESULTS_PAGE}", "book/performance"]),
            ("Runs: Table 1 rows", runs([TEACHERS_PAGE, *(row.id for row in manifest.ROWS)])),
            ("Runs: Figure 2 points (alpha)", runs(fig2)),
            ("Runs: Figure 4 points (temperature)", runs(fig4)),
            ("Reproduce", ["book/reproduce", "book/references"])]


def render_toc() -> str:
    """_toc.yml's text (jupyter-book's jb-book format)."""
    lines = [TOC_HEADER.rstrip("\n"), "format: jb-book", "root: book/intro", "parts:"]
    for caption, pages in toc_parts():
        lines += [f'  - caption: "{caption}"', "    chapters:", *(f"      - file: {page}" for page in pages)]
    return "\n".join(lines) + "\n"
