"""Offline analysis of sweep logs: load RUN_DIR/logs, reduce per trial and per group, plot, report.

Run ``python -m analysis.report RUN_DIR`` to write RUN_DIR/report/ (index.html, report.md, PNGs, CSVs).
This package uses pandas, pyarrow, numpy and matplotlib only: it never imports ray or torch, so reports
can be built on any laptop from a copied logs folder.
"""

from analysis.logs import config_columns, group_columns, group_label, load_logs

__all__ = ["load_logs", "config_columns", "group_columns", "group_label"]
