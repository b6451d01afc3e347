"""Building blocks of report pages: Sections, Markdown/HTML tables, figures, paragraphs, number formats, CSV bytes.

    from analysis.render import section, table, figure, paragraph, csv_bytes
    section("Title", [paragraph("..."), table(frame), figure("name", "caption")], {"name.png": png})

A section is its Markdown and its HTML side by side, plus the files it shows (name -> bytes or str). Nothing here
knows about sweeps; analysis.report and the other page-writing modules build on it. No ray, no torch.
"""
from __future__ import annotations

import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

MAX_TABLE_ROWS = 50  # rows shown in the pages per table; the CSV next to it holds all


@dataclass
class Section:
    """One part of the report: a heading, its body as Markdown and as HTML, and the files it needs."""
    title: str
    markdown: str
    html: str
    files: dict[str, bytes | str] = field(default_factory=dict)


def csv_bytes(table: pd.DataFrame) -> bytes:
    """CSV through pyarrow's writer (~10x pandas' at 100k+ rows); pandas for what Arrow cannot type."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_pandas(table, preserve_index=False), buf)
        return buf.getvalue()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return table.to_csv(index=False).encode()


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub pipe table (pandas' to_markdown needs tabulate, which we do not depend on)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def table(df: pd.DataFrame, note: str = "") -> tuple[str, str]:
    """(Markdown, HTML) of a text table, with an optional note line under it."""
    md, page = markdown_table(df), df.to_html(index=False, border=0)
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


def bullets(items: list[str]) -> tuple[str, str]:
    return "\n".join(f"- {i}" for i in items), "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def section(title: str, parts: list[tuple[str, str]], files: dict | None = None) -> Section:
    return Section(title, "\n\n".join(m for m, _ in parts), "\n".join(h for _, h in parts), files or {})


def fmt_num(v, digits: int = 4) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}g}"


def fmt_pm(mean, std) -> str:
    return fmt_num(mean) + ("" if pd.isna(std) else f" ± {std:.2g}")


def fmt_ci(mean, half) -> str:
    return "" if pd.isna(half) else f"[{mean - half:.4g}, {mean + half:.4g}]"


def top_rows(frame: pd.DataFrame, by: str, limit: int = MAX_TABLE_ROWS) -> tuple[pd.DataFrame, str]:
    """The frame, or its best LIMIT rows by ``by`` in table order, and a note saying which."""
    if len(frame) <= limit:
        return frame, ""
    keep = frame[by].astype(float).nlargest(limit).index
    return frame.loc[frame.index.isin(keep)], f"Showing the top {limit} of {len(frame)} by {by}; the CSV holds all."



CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
figcaption{color:#555;font-size:13px}
.note{background:#fff8e1;padding:.5em 1em;border-left:4px solid #f0b400}"""


def _write(path: Path, data: str | bytes) -> None:
    """Write via a temp file in the same folder + os.replace, so a crash never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)

