"""Sphinx directives rendered from cakd at build time, so the book cannot drift from the code or its results.
Every table goes through cakd.tables.render_table, the renderer of Table 1.

``{cakd-table} NAME``: a reproduction-notes table (cakd.report.BOOK_TABLES: options, choices, profiles, ...).
``{cakd-bench} measured|estimate [FILE]``: a benchmark file's timings, or the whole-Table-1 estimate made from
them (cakd.costs): FILE (relative to the repository, e.g. a measurement kept with the book), else the newest
results/<profile>/bench.json, the paper profile's when there is one, else consistent's, else smoke's.
"""
from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from cakd import config, costs, paths, report, tables

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


class CakdBench(SphinxDirective):
    required_arguments = 1
    optional_arguments = 1

    def run(self) -> list[nodes.Node]:
        part = self.arguments[0]
        if part not in BENCH_PARTS:
            raise self.error(f"cakd-bench {part!r} is unknown; parts are {list(BENCH_PARTS)}")
        for module in (costs, tables):
            self.env.note_dependency(str(Path(module.__file__).resolve()))
        path = paths.inside(paths.ROOT, self.arguments[1], "file") if len(self.arguments) > 1 else newest_bench()
        if path is None:
            return self._markdown("*No benchmark file yet: run `python -m cakd bench --profile smoke` (CPU) or "
                                  "`python -m cakd bench --profile paper --device cuda`, then rebuild the book.*")
        self.env.note_dependency(str(path))
        record = json.loads(path.read_text())
        if part == "measured":
            return [nodes.raw("", t.html, format="html") for t in costs.measured_tables(record)]
        table = costs.estimate_table(record)
        if table is None:
            return self._markdown(
                f"*No estimate: the benchmark file `{path.name}` timed the "
                f"`{record['profile']}` profile's stand-in models, and hours derived from them would mean nothing. "
                "Benchmark `--profile paper --device cuda` on a GPU for an estimate.*")
        return [nodes.raw("", table.html, format="html")]

    def _markdown(self, text: str) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(text.splitlines(), source="cakd-bench"), 0, container)
        return container.children


def newest_bench() -> Path | None:
    """results/<profile>/bench.json of the first profile that has one: paper, then the others."""
    names = report.profile_names()
    for profile in sorted(names, key=lambda p: (p != "paper", not report.profile_note(p).comparable, p)):
        path = paths.results_home() / profile / "bench.json"
        if path.is_file():
            return path
    return None


def setup(app):
    app.add_directive("cakd-table", CakdTable)
    app.add_directive("cakd-bench", CakdBench)
    return {"version": "2", "parallel_read_safe": True, "parallel_write_safe": True}
