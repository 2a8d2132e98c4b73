#!/usr/bin/env python3
"""Generate (and check) src/vid2dcm/deidentify/data/safe_private.tsv: DICOM PS3.15 Table E.3.10-1
"Safe Private Attributes", whole, as pinned data for the Retain Safe Private Option (E.3.10).

The table is never edited by hand. Regenerate it from one of:

* the standard itself: PS3.15's DocBook source (``part15.xml``) or its HTML renderings
  (``part15.html``, or the chapter page ``part15/sect_E.3.10.html``), as NEMA publishes them.
  The rows are read from the table whose id is ``table_E.3.10-1``: Data Element, Private
  Creator, VR, VM, Meaning, each cell's text with its whitespace collapsed, nothing else changed;
* a machine-readable copy in the ``pymedphys-deid-table/1`` JSON schema (PyMedPhys,
  ``lib/pymedphys/_dicom/deidentify/_standard/e3_10_1.json``), which PyMedPhys generates from
  the standard's ``sect_E.3.10.html`` and which records the page's SHA-256 and a digest of its
  rows.

Usage::

    scripts/safe_private_table.py convert SOURCE --edition 2026d --source-note TEXT -o TSV
    scripts/safe_private_table.py check TSV

Every generated file records ``content_sha256``: the SHA-256 of its rows as canonical JSON (a list
of {tag, private_creator, vr, vm, meaning} objects, keys sorted, no whitespace, UTF-8: the same
digest PyMedPhys records), so ``check`` proves the committed rows are the ones generated, and
the same digest from an independent copy proves both read the standard alike. Only the
standard library is used, so the script runs without the project installed.
"""

from __future__ import annotations

import argparse
import hashlib
import html.parser
import json
import re
import sys
from pathlib import Path

COLUMNS = ("tag", "private_creator", "vr", "vm", "meaning")
TABLE_ID = "table_E.3.10-1"
PRIVATE_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),xx([0-9A-Fa-f]{2})\)")


def content_sha256(rows: list[dict[str, str]]) -> str:
    canonical = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _TableReader(html.parser.HTMLParser):
    """Collects the cell texts of the rows of the table with id TABLE_ID (DocBook XML or
    HTML: both spell rows tr/td; in the HTML the id sits on an anchor just before the
    table, in the DocBook on the table element itself). A cell spanning rows (rowspan, as
    the standard's tables use for a repeated value) is repeated in each row it spans."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.armed = False
        self.depth = 0
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.span = 1
        self.header = False
        self.pending: dict[int, tuple[int, str]] = {}

    def _fill_spanned(self) -> None:
        row = self.rows[-1]
        while len(row) in self.pending:
            left, text = self.pending[len(row)]
            if left > 1:
                self.pending[len(row)] = (left - 1, text)
            else:
                del self.pending[len(row)]
            row.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if any(name in ("id", "xml:id", "name") and value == TABLE_ID for name, value in attrs):
            self.armed = True
        if tag == "table" and self.armed:
            self.depth += 1
        elif self.depth and tag == "thead":
            self.header = True
        elif self.depth and tag == "tr" and not self.header:
            self.rows.append([])
        elif self.depth and tag in ("td", "th") and not self.header:
            self._fill_spanned()
            self.cell = []
            self.span = int(dict(attrs).get("rowspan") or 1)

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
            if not self.depth:
                self.armed = False
        elif self.depth and tag == "thead":
            self.header = False
        elif self.depth and tag in ("td", "th") and self.cell is not None:
            text = " ".join("".join(self.cell).split())
            if self.span > 1:
                self.pending[len(self.rows[-1])] = (self.span - 1, text)
            self.rows[-1].append(text)
            self.cell = None
        elif self.depth and tag == "tr" and not self.header and self.rows:
            self._fill_spanned()

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def rows_from_markup(text: str) -> list[dict[str, str]]:
    reader = _TableReader()
    reader.feed(text)
    rows = [dict(zip(COLUMNS, cells, strict=True)) for cells in reader.rows if cells]
    if not rows:
        raise SystemExit(f"no rows found in a table with id {TABLE_ID}")
    return rows


def rows_from_json(text: str) -> tuple[list[dict[str, str]], str]:
    document = json.loads(text)
    if document.get("table") != "PS3.15 Table E.3.10-1":
        raise SystemExit("not a PS3.15 Table E.3.10-1 document")
    rows = [{c: row[c] for c in COLUMNS} for row in document["rows"]]
    recorded = document.get("content_sha256")
    if recorded and recorded != content_sha256(rows):
        raise SystemExit("the JSON rows do not match their recorded content_sha256")
    return rows, str(document.get("edition", ""))


def validate(rows: list[dict[str, str]]) -> None:
    seen: set[tuple[str, str]] = set()
    for number, row in enumerate(rows, start=1):
        match = PRIVATE_TAG.fullmatch(row["tag"])
        if match is None or int(match[1], 16) % 2 == 0:
            raise SystemExit(f"row {number}: {row['tag']!r} is not a private (gggg,xxee)")
        if not row["private_creator"]:
            raise SystemExit(f"row {number}: no Private Creator")
        if any("\t" in value or "\n" in value for value in row.values()):
            raise SystemExit(f"row {number}: a tab or line break in a cell")
        key = (row["private_creator"], row["tag"].upper())
        if key in seen:
            raise SystemExit(f"row {number}: {key} repeats")
        seen.add(key)


def render(rows: list[dict[str, str]], edition: str, source_note: str) -> str:
    creators = len({row["private_creator"] for row in rows})
    header = [
        f"# DICOM PS3.15 {edition} Table E.3.10-1 Safe Private Attributes, whole:",
        f"# {len(rows)} rows, {creators} Private Creators (Retain Safe Private Option, E.3.10).",
        "# Generated by scripts/safe_private_table.py, never edited by hand; rows in the",
        "# table's order, cells as the standard writes them (hex digits in either case, VR",
        "# alternatives such as OW/OB, an empty VR or Meaning where the table gives none).",
        f"# Source: {source_note}",
        f"# edition: {edition}",
        f"# content_sha256: {content_sha256(rows)}",
        "# The block byte of each tag is \"xx\": an element is kept only when the Private",
        "# Creator that reserves its block in the same dataset (gggg,00xx) equals",
        "# private_creator exactly. The standard's own note: the list is a sample of",
        "# attributes thought to be safe; vendors do not guarantee them to be safe.",
        "# DICOM PS3.15 (c) NEMA.",
        "\t".join(COLUMNS),
    ]
    body = ["\t".join(row[c] for c in COLUMNS) for row in rows]
    return "\n".join(header + body) + "\n"


def read_tsv(path: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    meta: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line:
            continue
        if line.startswith("#"):
            key, _, value = line[1:].strip().partition(": ")
            if key in ("edition", "content_sha256"):
                meta[key] = value.strip()
            continue
        cells = line.split("\t")
        if header is None:
            header = cells
            continue
        rows.append({c: cells[header.index(c)] for c in COLUMNS})
    return rows, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="standard XML/HTML or pymedphys JSON -> TSV")
    convert.add_argument("source", type=Path)
    convert.add_argument("--edition", default="", help="e.g. 2026d (JSON names its own)")
    convert.add_argument("--source-note", required=True,
                         help="where the source came from (URL/repository, commit, sha256)")
    convert.add_argument("-o", "--output", type=Path, required=True)
    check = sub.add_parser("check", help="recompute a TSV's content_sha256")
    check.add_argument("tsv", type=Path)
    args = parser.parse_args(argv)

    if args.command == "check":
        rows, meta = read_tsv(args.tsv)
        validate(rows)
        digest = content_sha256(rows)
        if digest != meta.get("content_sha256"):
            print(f"{args.tsv}: rows digest {digest} != recorded {meta.get('content_sha256')}")
            return 1
        print(f"{args.tsv}: {len(rows)} rows, edition {meta.get('edition')}, digest ok")
        return 0

    text = args.source.read_text(encoding="utf-8")
    source_sha = hashlib.sha256(args.source.read_bytes()).hexdigest()
    if args.source.suffix == ".json":
        rows, edition = rows_from_json(text)
        edition = args.edition or edition
    else:
        rows, edition = rows_from_markup(text), args.edition
    if not edition:
        raise SystemExit("name the edition (--edition 2026d)")
    validate(rows)
    note = f"{args.source_note} (file sha256 {source_sha})"
    args.output.write_text(render(rows, edition, note), encoding="utf-8")
    print(f"{args.output}: {len(rows)} rows, edition {edition}, digest {content_sha256(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
