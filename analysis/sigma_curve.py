"""Accuracy against elastic σ: where elastic deformation stops being learnable (a report section).

    python -m analysis.sigma_curve RUN_DIR      # writes sigma_curve.csv/png into RUN_DIR/report (or --out)

For a deformed-STN run over several σ (`python sweeps/stn_deformed.py --sigma 0 1 2 4 8 16 30 ...`): per
transformer and σ, the final-epoch test accuracy per deformation type (mean and std across seeds), and the digit
ink that stays in the 28×28 frame after elastic deformation (from RUN_DIR/deformations.csv, written by the sweep).
Final-epoch accuracy, not the best epoch, so no epoch is chosen on the test set. The report includes this section
whenever config/sigma takes more than one value. The page shows accuracy in percent; sigma_curve.csv keeps
fractions, its accuracy columns marked " [fraction]" (test_acc_mean [fraction]; ink_in_frame is no accuracy).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import render
from analysis.files import atomic_write
from analysis.logs import load_logs
from analysis.plots import _png
from analysis.run import RunData

SIGMA = "config/sigma"
TRANSFORMER = "config/transformer"
TITLE = "Accuracy against elastic σ"
CAPTION = ("Final-epoch test accuracy per deformation type against the elastic σ (pixels), mean ± std across seeds, "
           "one colour per type, one line style per transformer; right: mean fraction of a test digit's ink still "
           "in the 28×28 frame after elastic deformation (above 1 at small σ: the cubic spline spreads strokes).")


def sigma_table(df: pd.DataFrame, run_dir: Path) -> pd.DataFrame | None:
    """One row per (transformer, σ); None when σ does not vary."""
    if SIGMA not in df.columns or df[SIGMA].nunique(dropna=True) < 2:
        return None
    last = df.sort_values("epoch").groupby("trial_id").tail(1)
    accs = sorted(c for c in df.columns if c.startswith("test_acc/")) + ["test_acc"]
    keys = [c for c in (TRANSFORMER, SIGMA) if c in df.columns]
    g = last.groupby(keys, dropna=False)
    table = g[accs].agg(["mean", "std"])
    table.columns = [f"{m}_{s}" for m, s in table.columns]
    table.insert(0, "seeds", g.size())
    table = table.reset_index().rename(columns={SIGMA: "sigma", TRANSFORMER: "transformer"})
    deform = run_dir / "deformations.csv"
    if deform.exists():
        ink = pd.read_csv(deform)[["sigma", "ink/elastic"]].groupby("sigma", as_index=False).mean()
        table = table.merge(ink.rename(columns={"ink/elastic": "ink_in_frame"}), on="sigma", how="left")
    else:
        table["ink_in_frame"] = np.nan
    return table.sort_values([c for c in ("transformer", "sigma") if c in table.columns], kind="stable")


def accuracy_columns(table: pd.DataFrame) -> list[str]:
    """sigma_table's accuracy columns (fractions): mean and std of test_acc and of each test_acc/<variant>."""
    return [c for c in table.columns if c.startswith("test_acc")]


def plot_sigma_curve(table: pd.DataFrame) -> bytes:
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax, ax_ink = fig.subplots(1, 2, width_ratios=[2.2, 1])
    variants = [c.removesuffix("_mean") for c in table.columns if c.startswith("test_acc/") and c.endswith("_mean")]
    kinds = list(table["transformer"].unique()) if "transformer" in table.columns else [None]
    styles = ["-", "--", ":", "-."]
    for k, kind in enumerate(kinds):
        rows = table if kind is None else table[table["transformer"] == kind]
        for i, col in enumerate(variants):
            mean, std = rows[f"{col}_mean"].to_numpy() * 100, rows[f"{col}_std"].fillna(0).to_numpy() * 100
            ax.plot(rows["sigma"], mean, styles[k % len(styles)], marker="o", color=f"C{i}",
                    label=f"{col.removeprefix('test_acc/')}" + (f" ({kind})" if kind else ""))
            ax.fill_between(rows["sigma"], np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100), color=f"C{i}",
                            alpha=0.12)
    ax.set_xscale("symlog", linthresh=1)
    ticks = sorted(table["sigma"].unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlabel("elastic σ (pixels)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ink = table.drop_duplicates("sigma")
    ax_ink.plot(ink["sigma"], ink["ink_in_frame"], "o-", color="k")
    ax_ink.set_xscale("symlog", linthresh=1)
    ax_ink.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax_ink.set_xlabel("elastic σ (pixels)")
    ax_ink.set_ylabel("ink left in frame")
    ax_ink.set_ylim(0, max(1.05, float(np.nanmax(ink["ink_in_frame"])) + 0.02) if ink["ink_in_frame"].notna().any()
                    else 1.05)
    ax_ink.grid(alpha=0.3)
    return _png(fig)  # no title: the section heading and the caption say what it shows


def sigma_curve_section(df: pd.DataFrame, run_dir: Path) -> render.Section | None:
    """The σ-curve section (table, figure, sigma_curve.csv/png), or None when σ does not vary."""
    curve = sigma_table(df, Path(run_dir))
    if curve is None:
        return None
    acc = accuracy_columns(curve)
    shown = curve[[c for c in curve.columns if not c.endswith("_std")]].copy()
    for c in [c for c in shown.columns if c in acc]:
        shown[c] = shown[c].map(render.fmt_pct)
    shown = shown.rename(columns={c: c.removesuffix("_mean") + " %" for c in shown.columns if c in acc})
    shown["ink_in_frame"] = shown["ink_in_frame"].map(lambda v: render.fmt_num(v, 3))
    shown = shown.astype(str)
    return render.section(TITLE, [render.figure("sigma_curve", CAPTION), render.table(shown)],
                          {"sigma_curve.png": plot_sigma_curve(curve), "sigma_curve.csv": render.csv_bytes(curve, acc)})


def sigma_section(data: RunData) -> render.Section | None:
    """The report's σ-curve section (analysis.report lists it in SECTIONS)."""
    return sigma_curve_section(data.df, data.run_dir)


def write_sigma_curve(df: pd.DataFrame, run_dir: Path, out: Path) -> list[str] | None:
    """Write sigma_curve.csv and sigma_curve.png into `out`; the file names, or None when σ does not vary."""
    found = sigma_curve_section(df, run_dir)
    if found is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    for name in ("sigma_curve.csv", "sigma_curve.png"):
        atomic_write(out / name, found.files[name])
    return ["sigma_curve.png", "sigma_curve.csv"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.sigma_curve", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path)
    p.add_argument("--out", type=Path, help="default: RUN_DIR/report")
    args = p.parse_args(argv)
    try:
        files = write_sigma_curve(load_logs(args.run_dir), args.run_dir, args.out or args.run_dir / "report")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if files is None:
        print(f"error: config/sigma takes one value in {args.run_dir}; run the sweep with several --sigma values",
              file=sys.stderr)
        return 2
    print("\n".join(str((args.out or args.run_dir / "report") / f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
