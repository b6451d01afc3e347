"""Building blocks of the analysis pages and the one page writer: Sections, Markdown/HTML tables, figures,
paragraphs, number formats, CSV bytes, and write_page (index.html, its Markdown twin and every section's files).

Number formats, one each: fmt_num (4 significant digits, no exponent from 10,000 up), fmt_pm (mean ± std, both
fixed-point with the same decimals; `decimals` picks them for a whole column), fmt_pct / fmt_pct_pm / fmt_ci
(accuracy, a fraction in the logs and CSVs, shown in percent with one decimal). CSVs keep full precision and
fractions: csv_bytes marks the accuracy columns its caller names with FRACTION (" [fraction]") in the header, and
CSV_UNITS says so on the page.

    from analysis.render import csv_bytes, figure, paragraph, section, table, write_page
    s = section("Title", [paragraph("..."), table(frame), figure("name", "caption")], {"name.png": png})
    write_page(out_dir, "Page title", [s])   # out_dir/index.html, out_dir/report.md, out_dir/name.png

A section is its Markdown and its HTML side by side, plus the files it shows (name -> bytes or str). Nothing here
knows about sweeps; analysis.report, analysis.sigma_curve and analysis.stn_inspect build on it. Every file goes
through analysis.files.atomic_write. No ray, no torch.
"""
from __future__ import annotations

import html
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from analysis.files import atomic_write

MAX_TABLE_ROWS = 50  # rows shown in the pages per table; the CSV next to it holds all


@dataclass
class Section:
    """One part of the report: a heading, its body as Markdown and as HTML, and the files it needs."""
    title: str
    markdown: str
    html: str
    files: dict[str, bytes | str] = field(default_factory=dict)
    lead: str | None = None  # the section's answer in one line, for a terminal (a search's headline)


FRACTION = " [fraction]"  # the header suffix of a CSV column holding accuracies (or their differences) as fractions


def csv_bytes(table: pd.DataFrame, fractions: Iterable[str]) -> bytes:
    """CSV through pyarrow's writer (far faster than pandas' on large tables); pandas for what Arrow cannot type.
    FRACTIONS: the table's accuracy columns (fractions, their spreads and differences), whose header names get
    FRACTION appended; names the table lacks are skipped (optional columns such as val_acc_mean). Only the
    header is renamed: the values stay fractions at full precision, and ``table`` itself is left as it is."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    marked = set(fractions)
    names = [f"{c}{FRACTION}" if c in marked else str(c) for c in table.columns]
    try:
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False).rename_columns(names), buf)
        return buf.getvalue()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return table.to_csv(index=False, header=names).encode()


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


NUMERIC = re.compile(r"[\d\s.,+\-−±%()\[\]/×]*\d[\d\s.,+\-−±%()\[\]/×]*")  # "80.0 ± 1.2", "0.8 (2)", "3/3/4"


def html_table(df: pd.DataFrame) -> str:
    """An HTML table whose number cells (class n) are right-aligned and never wrap, so "80.0 ± 10.0" stays on
    one line; text cells (group labels) wrap."""
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in df.columns)
    rows = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            text = str(v)
            cells.append(f"<td class='n'>{e(text)}</td>" if NUMERIC.fullmatch(text) else f"<td>{e(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>" + "\n".join(rows)
            + "</tbody></table></div>")


def table(df: pd.DataFrame, note: str = "") -> tuple[str, str]:
    """(Markdown, HTML) of a text table, with an optional note line under it. Columns empty in every row (a 95% CI
    when every group has one seed) are left out: they only widen the table."""
    if len(df):
        df = df.loc[:, [c for c in df.columns if (df[c].astype(str) != "").any()]]
    md, page = markdown_table(df), html_table(df)
    if note:
        md, page = md + f"\n\n{note}", page + f"<p>{html.escape(note)}</p>"
    return md, page


def figure(name: str, caption: str, alt: str | None = None) -> tuple[str, str]:
    """(Markdown, HTML) showing NAME.png with its caption; the PNG goes into the section's files."""
    e = html.escape
    return (f"![{name}]({name}.png)\n\n*{caption}*",
            f"<figure><img src='{name}.png' alt='{e(alt or name)}'><figcaption>{e(caption)}</figcaption></figure>")


def paragraph(text: str) -> tuple[str, str]:
    return text, f"<p>{html.escape(text)}</p>"


def note(text: str) -> tuple[str, str]:
    """A highlighted remark: a Markdown quote, an HTML paragraph of class note."""
    return f"> {text}", f"<p class='note'>{html.escape(text)}</p>"


def bullets(items: list[str]) -> tuple[str, str]:
    return "\n".join(f"- {i}" for i in items), "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def section(title: str, parts: list[tuple[str, str]], files: dict | None = None) -> Section:
    return Section(title, "\n\n".join(m for m, _ in parts), "\n".join(h for _, h in parts), files or {})


def fmt_num(v, digits: int = 4) -> str:
    """DIGITS significant digits; from 10**DIGITS up a whole number with thousands separators (no exponent)."""
    if pd.isna(v):
        return ""
    return f"{v:,.0f}" if abs(v) >= 10 ** digits else f"{v:.{digits}g}"


def decimals(*values) -> int:
    """Decimals that give the largest value 4 significant digits, 0 to 3: pass a whole column's values so that
    its cells share one format."""
    top = max((abs(float(v)) for v in values if not pd.isna(v)), default=0.0)
    return 0 if top == 0 else min(3, max(0, 3 - math.floor(math.log10(top))))


def fmt_pm(mean, std, places: int | None = None) -> str:
    """"mean ± std", both fixed-point with PLACES decimals (default: 4 significant digits of the mean)."""
    if pd.isna(mean):
        return ""
    d = decimals(mean if mean else std) if places is None else places
    return f"{mean:,.{d}f}" + ("" if pd.isna(std) else f" ± {std:,.{d}f}")


def fmt_column(values, digits: int = 4) -> list[str]:
    """Numbers of one table column, fixed-point with one number of decimals (``digits`` significant digits of
    the largest), so that the column reads as one format; empty for missing values."""
    values = list(values)
    places = min(3, max(0, digits - 1 - math.floor(math.log10(top)))) if (top := max(
        (abs(float(v)) for v in values if not pd.isna(v)), default=0.0)) else 0
    return ["" if pd.isna(v) else f"{v:,.{places}f}" for v in values]


def fmt_pct(v, sign: bool = False) -> str:
    """A fraction as percent with one decimal: 0.8123 -> "81.2" (or "81.2%" with ``sign``)."""
    return "" if pd.isna(v) else f"{v * 100:.1f}" + ("%" if sign else "")


def fmt_pct_pm(mean, std, sign: bool = False) -> str:
    """Fractions' mean ± std in percent, one decimal: "81.2 ± 3.4" (or "81.2 ± 3.4%")."""
    if pd.isna(mean):
        return ""
    return fmt_pm(mean * 100, std * 100, 1) + ("%" if sign else "")


def fmt_ci(mean, half) -> str:
    """A 95% interval of an accuracy (fractions) in percent: "[70.1, 90.3]"; empty without one."""
    return "" if pd.isna(half) else f"[{(mean - half) * 100:.1f}, {(mean + half) * 100:.1f}]"


CSV_UNITS = (f"full precision; accuracies there are fractions in [0, 1], not percent, and every column of accuracies "
             f"(or of their spreads and differences) says so with '{FRACTION.strip()}' in its header; losses are mean "
             "cross-entropy; times are seconds")


def top_rows(frame: pd.DataFrame, by: str, limit: int = MAX_TABLE_ROWS) -> tuple[pd.DataFrame, str]:
    """The frame, or its best LIMIT rows by ``by`` in table order, and a note saying which."""
    if len(frame) <= limit:
        return frame, ""
    keep = frame[by].astype(float).nlargest(limit).index
    return frame.loc[frame.index.isin(keep)], f"Showing the top {limit} of {len(frame)} by {by}; the CSV holds all."



CSS = """body{font-family:system-ui,sans-serif;max-width:1280px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:1em 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.wide{overflow-x:auto}img{max-width:100%}figure{margin:1em 0}
figcaption{color:#555;font-size:13px}
.note{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0b400}"""


def write_page(out: str | Path, title: str, sections: list[Section], intro: list[tuple[str, str]] | None = None,
               markdown_name: str = "report.md", files: dict[str, bytes | str] | None = None) -> Path:
    """Write FILES (those the INTRO parts show) and every section's files into OUT, then the page twice:
    MARKDOWN_NAME and index.html, each with the title, the INTRO parts, a heading per section and a line linking
    the CSVs; returns index.html's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    every = [dict(files or {})] + [s.files for s in sections]
    for group in every:
        for name, content in group.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)  # sections may use subfolders
            atomic_write(out / name, content)
    csvs = [n for group in every for n in group if n.endswith(".csv")]
    intro = intro or []

    md = [f"# {title}", "", *[f"{m}\n" for m, _ in intro]]
    md += [f"## {s.title}\n\n{s.markdown}\n" for s in sections]
    if csvs:
        md += [f"Tables: {', '.join(csvs)} ({CSV_UNITS}).", ""]
    atomic_write(out / markdown_name, "\n".join(md))

    e = html.escape
    toc = "".join(f"<li><a href='#s{i}'>{e(s.title)}</a></li>" for i, s in enumerate(sections))
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
            f"<style>{CSS}</style></head><body><h1>{e(title)}</h1>", *[h for _, h in intro],
            f"<nav><ol>{toc}</ol></nav>"]
    page += [f"<h2 id='s{i}'>{e(s.title)}</h2>\n{s.html}" for i, s in enumerate(sections)]
    if csvs:
        page += ["<p>Tables: " + ", ".join(f"<a href='{c}'>{c}</a>" for c in csvs) + f" ({e(CSV_UNITS)}).</p>"]
    page += ["</body></html>"]
    # index.html last: its presence means the whole page and its files are there
    return atomic_write(out / "index.html", "\n".join(page))
