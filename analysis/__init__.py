"""Offline analysis of sweep logs: load RUN_DIR/logs, reduce per trial and per group, plot, report.

Run ``python -m analysis.report RUN_DIR`` to write RUN_DIR/report/ (index.html, report.md, PNGs, CSVs).
This package uses pandas, pyarrow, numpy, scipy and matplotlib only: it never imports ray or torch, so reports
can be built on any laptop from a copied logs folder.
"""

__all__ = ["load_logs", "config_columns", "group_columns", "group_label"]


def __getattr__(name: str):
    # on first use only: trial processes import analysis.files (atomic writes) and need no pandas
    if name in __all__:
        from analysis import logs

        return getattr(logs, name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
