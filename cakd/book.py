"""The book's table of contents, generated from the manifest: one page per run (`book/runs/<row id>`), grouped
as Table 1 rows, Figure 2 points and Figure 4 points, so no row can be left out of the book.

`python -m cakd.book` writes `_toc.yml`; `python -m cakd.book --check` fails when the committed file differs.
"""
from __future__ import annotations

import argparse
import sys

from . import files, manifest, paths

TOC = paths.ROOT / "_toc.yml"
RUN_PAGES = ("teachers",)   # run pages that are no manifest row (written by `python -m cakd reproduce`)
HEADER = ("# Generated from cakd/manifest.py by `python -m cakd.book`: do not edit by hand (a test compares).\n"
          "# book/runs/<id> pages are written by `python -m cakd reproduce` (a placeholder until a row has run).\n")


def toc_parts() -> list[tuple[str, list[str]]]:
    """(caption, page files) of every part of the book, in reading order."""
    points = [row for row in manifest.FIGURE_POINTS]
    fig2 = [row.id for row in points if "fig2" in row.figures]
    fig4 = [row.id for row in points if "fig4" in row.figures]
    other = [row.id for row in points if row.id not in fig2 + fig4]
    if other:
        raise ValueError(f"figure point(s) {other} belong to neither Figure 2 nor Figure 4; give the book a part "
                         "for them in cakd.book.toc_parts")
    runs = lambda ids: [f"book/runs/{i}" for i in ids]
    return [("The report and this book", ["book/method", "book/reproduction"]),
            ("Results", ["book/runs/results", "book/performance"]),
            ("Runs: Table 1 rows", runs([*RUN_PAGES, *(row.id for row in manifest.ROWS)])),
            ("Runs: Figure 2 points (alpha)", runs(fig2)),
            ("Runs: Figure 4 points (temperature)", runs(fig4)),
            ("Reproduce", ["book/reproduce", "book/references"])]


def render_toc() -> str:
    """_toc.yml's text (jupyter-book's jb-book format)."""
    lines = [HEADER.rstrip("\n"), "format: jb-book", "root: book/intro", "parts:"]
    for caption, pages in toc_parts():
        lines += [f'  - caption: "{caption}"', "    chapters:", *(f"      - file: {page}" for page in pages)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cakd.book", description="Write _toc.yml from the manifest.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when _toc.yml is out of date")
    args = parser.parse_args(argv)
    text = render_toc()
    current = TOC.read_text() if TOC.exists() else ""
    if args.check:
        if current != text:
            print(f"{TOC.name} is out of date: run `python -m cakd.book`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        files.write_text(TOC, text)
        print(f"wrote {TOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
