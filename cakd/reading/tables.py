"""The book's one table renderer: a DataFrame through pandas' Styler to HTML (look: `book/_static/cakd.css`) and through
`DataFrame.to_string` to text for terminals and the golden prints. Numbers are right-aligned with fixed decimals, a
two-level column index becomes grouped headers, and the index is never shown."""
from __future__ import annotations

import html
import re
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from ..definitions.files import digest

Format = str | Callable[[Any], str]   # a format spec such as "{:.2f}", or a function


@dataclass(frozen=True)
class HtmlTable:
    """A rendered table: HTML for the book and notebooks, plain text for terminals and golden prints."""
    html: str
    text: str

    @classmethod
    def message(cls, text: str) -> "HtmlTable":
        """No table: a sentence that says why (a page with nothing to show for the runs it reads)."""
        return cls(f"<p>{html.escape(text)}</p>", text)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def render_table(frame: pd.DataFrame, *, caption: str = "", formats: Mapping[Any, Format] | None = None,
                 na_rep: str | Mapping[Any, str] = "-", code_columns: Sequence[Any] = (),
                 wide_columns: Sequence[Any] = (), notes: Sequence[str] = (), css_class: str = "") -> HtmlTable:
    """`frame` as HTML and text. formats: column -> format (others: numbers with 2 decimals, the rest str);
    na_rep: what a missing value shows (per column, or one for all); code_columns: shown as code; wide_columns:
    prose that may take the remaining width; notes: lines under the table (`code` in them shown as code)."""
    if unknown := sorted(str(c) for c in [*(formats or {}), *code_columns, *wide_columns] if c not in frame.columns):
        raise ValueError(f"column(s) {unknown} are not in the table; its columns are {[str(c) for c in frame.columns]}")
    text_formats = {c: _formatter((formats or {}).get(c), na_rep if isinstance(na_rep, str) else na_rep.get(c, "-"))
                    for c in frame.columns}
    cells = frame.apply(lambda column: column.map(text_formats[column.name]))   # every cell as its text
    escaped = cells.map(html.escape)
    for column in code_columns:
        escaped[column] = cells[column].map(lambda v: f"<code>{html.escape(v)}</code>" if v else "")
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    classes = pd.DataFrame([[" ".join(filter(None, ["num" if num else "", "wide" if c in wide_columns else ""]))
                             for c, num in zip(frame.columns, numeric)]] * len(frame), columns=frame.columns,
                           index=frame.index)
    styler = (escaped.style.hide(axis="index").set_td_classes(classes)
              .set_table_attributes(f'class="{" ".join(filter(None, ["cakd-table", css_class]))}"')
              .set_caption(html.escape(caption)).set_uuid(digest(caption, cells.to_json())[:8]))
    notes_html = "".join("<p>" + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(n)) + "</p>" for n in notes)
    table = styler.to_html(cell_ids=False).replace('<style type="text/css">\n</style>\n', "")   # no styles: css
    page = (f'<div class="cakd-table-wrap">{table}'
            + (f'<div class="cakd-table-notes">{notes_html}</div>' if notes else "") + "</div>")
    columns = [" / ".join(str(p) for p in c if p) if isinstance(c, tuple) else str(c) for c in frame.columns]
    body = cells.set_axis(columns, axis=1).to_string(index=False) if len(frame) else " | ".join(columns) + "\n(no rows)"
    return HtmlTable(page, "\n".join(filter(None, [caption, body, *notes])))


def _formatter(fmt: Format | None, na_rep: str) -> Callable[[Any], str]:
    def show(value: Any) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return na_rep
        if callable(fmt):
            return fmt(value)
        if fmt is not None:
            return fmt.format(value)
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            return f"{value:.2f}"
        return str(value)
    return show
