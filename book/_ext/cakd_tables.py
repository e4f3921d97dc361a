"""Sphinx directives rendered from cakd at build time, so the book cannot drift from the code or its results.

``{cakd-table} NAME``: the option / choice / profile tables (one source: cakd.config, cakd.report).
``{cakd-bench}``: the newest benchmark file (results/paper/bench.json, else results/smoke/bench.json).
"""
from __future__ import annotations

from pathlib import Path

import json

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

from cakd import bench, config, paths, report

TABLES = {"options": report.options_table, "choices": report.choices_table, "profiles": report.profiles_table}


class CakdTable(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in TABLES:
            raise self.error(f"cakd-table {name!r} is unknown; tables are {sorted(TABLES)}")
        for module in (config, report):               # rebuild the page when the source of the table changes
            self.env.note_dependency(str(Path(module.__file__).resolve()))
        frame = TABLES[name]().reset_index()
        table = nodes.table(classes=["cakd-table"])
        group = nodes.tgroup(cols=len(frame.columns))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in frame.columns)
        group += nodes.thead("", _row(frame.columns, literal_first=False))
        group += nodes.tbody("", *(_row(values, literal_first=True) for values in frame.itertuples(index=False)))
        return [table]


class CakdBench(SphinxDirective):
    def run(self) -> list[nodes.Node]:
        for profile in ("paper", "smoke"):
            path = paths.results_home() / profile / "bench.json"
            if path.is_file():
                self.env.note_dependency(str(path))
                text = bench.format_markdown(json.loads(path.read_text()))
                break
        else:
            text = "*No benchmark yet: run `python -m cakd bench --profile smoke` (or `--profile paper --device cuda`).*"
        container = nodes.container()
        self.state.nested_parse(StringList(text.splitlines(), source="bench.json"), 0, container)
        return container.children


def _row(values, literal_first: bool) -> nodes.row:
    row = nodes.row()
    for i, value in enumerate(values):
        text = str(value)
        content = nodes.literal(text=text) if (literal_first and i == 0) else nodes.Text(text)
        row += nodes.entry("", nodes.paragraph("", "", content))
    return row


def setup(app):
    app.add_directive("cakd-table", CakdTable)
    app.add_directive("cakd-bench", CakdBench)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
