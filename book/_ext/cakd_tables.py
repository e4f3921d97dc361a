"""Sphinx directives rendered from cakd at build time, so the book cannot drift from the code or its results.
Every table goes through cakd.reading.tables.render_table, the renderer of Table 1.

``{cakd-table} NAME``: a reproduction-notes table (cakd.reading.report.BOOK_TABLES: options, choices, profiles, ...).
``{cakd-text} NAME``: a passage kept once in cakd (cakd.reading.report.BOOK_TEXTS: the baseline note, ...).
``{cakd-ties}``: the Method 3 ties the teachers page measured (results/<profile>/ties.json, paper first).
``{cakd-bench} measured|estimate [FILE]``: a benchmark file's timings, or the whole-Table-1 estimate made from
them (cakd.reading.costs): FILE (relative to the repository, e.g. a measurement kept with the book), else the newest
results/<profile>/bench.json, the paper profile's when there is one, else consistent's, else smoke's.
"""
from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from cakd.definitions import authors, config, manifest, paths
from cakd.definitions.profiles import PROFILES
from cakd.reading import costs, report, tables

BENCH_PARTS = ("measured", "estimate")


class CakdTable(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in report.BOOK_TABLES:
            raise self.error(f"cakd-table {name!r} is unknown; tables are {sorted(report.BOOK_TABLES)}")
        for module in (config, report, tables):       # rebuild the page when the source of the table changes
            self.env.note_dependency(str(Path(module.__file__).resolve()))
        return [nodes.raw("", report.book_table(name).html, format="html")]


class CakdText(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in report.BOOK_TEXTS:
            raise self.error(f"cakd-text {name!r} is unknown; texts are {sorted(report.BOOK_TEXTS)}")
        for module in (report, authors, manifest):
            self.env.note_dependency(str(Path(module.__file__).resolve()))
        return _markdown(self, report.BOOK_TEXTS[name]())


class CakdTies(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        path = newest_result("ties.json")
        if path is None:
            return _markdown(self, "*Not measured yet: the teachers page of `python -m cakd reproduce` writes it.*")
        self.env.note_dependency(str(path))
        profile, record = path.parent.name, json.loads(path.read_text())
        table = report.ties_table(record["sets"])
        note = PROFILES[profile].banner
        caption = (f"Measured on {record['device']} by the teachers page of `python -m cakd reproduce --profile "
                   f"{profile}` (its `ties.json`)" + (f". {note}." if note else "."))
        return _markdown(self, caption) + [nodes.raw("", table.html, format="html")]


class CakdBench(SphinxDirective):
    required_arguments = 1
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        part = self.arguments[0]
        if part not in BENCH_PARTS:
            raise self.error(f"cakd-bench {part!r} is unknown; parts are {list(BENCH_PARTS)}")
        for module in (costs, tables):
            self.env.note_dependency(str(Path(module.__file__).resolve()))
        path = (paths.inside(paths.ROOT, self.arguments[1], "file") if len(self.arguments) > 1
                else newest_result("bench.json"))
        if path is None:
            return _markdown(self, "*No benchmark file yet: run `python -m cakd bench --profile smoke` (CPU) or "
                                  "`python -m cakd bench --profile paper --device cuda`, then rebuild the book.*")
        self.env.note_dependency(str(path))
        record = json.loads(path.read_text())
        if part == "measured":
            return [nodes.raw("", t.html, format="html") for t in costs.measured_tables(record)]
        table = costs.estimate_table(record)
        if table is None:
            return _markdown(self,
                f"*No estimate: the benchmark file `{path.name}` timed the "
                f"`{record['profile']}` profile's stand-in models, and hours derived from them would mean nothing. "
                "Benchmark `--profile paper --device cuda` on a GPU for an estimate.*")
        return [nodes.raw("", table.html, format="html")]

def _markdown(directive: SphinxDirective, text: str) -> list[nodes.Node]:
    container = nodes.container()
    directive.state.nested_parse(StringList(text.splitlines(), source=directive.name), 0, container)
    return container.children


def newest_result(name: str) -> Path | None:
    """results/<profile>/<name> of the first profile that has one: paper, then the others."""
    for profile in sorted(PROFILES, key=lambda p: (not PROFILES[p].authors_code, not PROFILES[p].comparable, p)):
        path = paths.results_home() / profile / name
        if path.is_file():
            return path
    return None


def setup(app):
    app.add_directive("cakd-table", CakdTable)
    app.add_directive("cakd-bench", CakdBench)
    app.add_directive("cakd-text", CakdText)
    app.add_directive("cakd-ties", CakdTies)
    return {"version": "2", "parallel_read_safe": True, "parallel_write_safe": True}
