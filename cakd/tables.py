"""The book's one table renderer: a DataFrame to an HTML table (Table 1, the conclusions, the option, choice
and profile tables of the reproduction notes, the benchmark tables of the Performance page).

Numbers are right-aligned with a fixed number of decimals, a two-level column index becomes grouped headers,
the DataFrame's index is never printed (put identifying columns in the frame), and the caption and notes
travel with the table. The look (wrapping, alignment) is `book/_static/cakd.css`.
"""
from __future__ import annotations

import html
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

Format = str | Callable[[Any], str]   # a format spec such as "{:.2f}" or "{:+.2f}", or a function


@dataclass(frozen=True)
class HtmlTable:
    """A rendered table: HTML for the book and notebooks, plain text for terminals and golden prints."""
    html: str
    text: str

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


def render_table(frame: pd.DataFrame, *, caption: str = "", formats: Mapping[Any, Format] | None = None,
                 na_rep: str | Mapping[Any, str] = "-", code_columns: Sequence[Any] = (),
                 wide_columns: Sequence[Any] = (), notes: Sequence[str] = (), css_class: str = "") -> HtmlTable:
    """`frame` as an HTML table (`HtmlTable.html`) and as text (`HtmlTable.text`).

    formats: column -> format spec or function (columns not named: numbers with 2 decimals, the rest str).
    na_rep: what a missing value shows (one string, or per column). code_columns: shown as `code`.
    wide_columns: long prose that may take the remaining width. notes: footnotes under the table.
    A column is a plain name or, with a two-level column index, a (group, name) pair: the groups become a
    header row above the names (an empty group leaves the name spanning both header rows).
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    if frame.columns.nlevels > 2:
        raise ValueError(f"frame has {frame.columns.nlevels} column levels; render_table draws 1 or 2")
    formats = dict(formats or {})
    unknown = sorted(str(c) for c in [*formats, *code_columns, *wide_columns] if c not in frame.columns)
    if unknown:
        raise ValueError(f"column(s) {unknown} are not in the table; its columns are "
                         f"{[str(c) for c in frame.columns]}")
    cells = [[_cell(frame[column].iloc[i], formats.get(column), _na(na_rep, column))
              for column in frame.columns] for i in range(len(frame))]
    numeric = [pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
               for column in frame.columns]
    classes = [" ".join(filter(None, ["num" if num else "", "wide" if column in wide_columns else ""]))
               for column, num in zip(frame.columns, numeric)]
    parts = [f'<table class="{" ".join(filter(None, ["cakd-table", css_class]))}">']
    if caption:
        parts.append(f"<caption>{html.escape(caption)}</caption>")
    parts.append("<thead>" + _header(frame.columns, classes) + "</thead><tbody>")
    for row in cells:
        parts.append("<tr>" + "".join(
            f'<td{_class(c)}>{_code(v) if column in code_columns and v else html.escape(v)}</td>'
            for v, c, column in zip(row, classes, frame.columns)) + "</tr>")
    parts.append("</tbody></table>")
    if notes:
        parts.append('<div class="cakd-table-notes">' + "".join(f"<p>{html.escape(n)}</p>" for n in notes)
                     + "</div>")
    return HtmlTable('<div class="cakd-table-wrap">' + "".join(parts) + "</div>",
                     _text(frame.columns, cells, caption, notes))


# ----------------------------------------------------------------------------- helpers

def _cell(value: Any, fmt: Format | None, na_rep: str) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return na_rep
    if callable(fmt):
        return fmt(value)
    if fmt is not None:
        return fmt.format(value)
    if isinstance(value, numbers.Integral) or isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{value:.2f}"
    return str(value)


def _na(na_rep: str | Mapping[Any, str], column: Any) -> str:
    return na_rep if isinstance(na_rep, str) else na_rep.get(column, "-")


def _class(names: str) -> str:
    return f' class="{names}"' if names else ""


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _header(columns: pd.Index, classes: list[str]) -> str:
    if columns.nlevels == 1:
        return "<tr>" + "".join(f"<th{_class(c)}>{html.escape(str(n))}</th>" for n, c in zip(columns, classes)) \
               + "</tr>"
    top, bottom, i = [], [], 0
    while i < len(columns):
        group = columns[i][0]
        if not group:             # no group: the name spans both header rows
            top.append(f'<th rowspan="2"{_class(classes[i])}>{html.escape(str(columns[i][1]))}</th>')
            i += 1
            continue
        span = 1
        while i + span < len(columns) and columns[i + span][0] == group:
            span += 1
        top.append(f'<th colspan="{span}" class="group">{html.escape(str(group))}</th>')
        bottom += [f"<th{_class(classes[j])}>{html.escape(str(columns[j][1]))}</th>" for j in range(i, i + span)]
        i += span
    return "<tr>" + "".join(top) + "</tr><tr>" + "".join(bottom) + "</tr>"


def _text(columns: pd.Index, cells: list[list[str]], caption: str, notes: Sequence[str]) -> str:
    names = [" / ".join(str(p) for p in c if p) if isinstance(c, tuple) else str(c) for c in columns]
    frame = pd.DataFrame(cells, columns=names)
    body = frame.to_string(index=False) if len(frame) else " | ".join(names) + "\n(no rows)"
    return "\n".join(filter(None, [caption, body, *notes]))
