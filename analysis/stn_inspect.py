"""What a trained STN's transformer does: before/after image grids, affine θ decomposed, TPS control grids.

    python -m analysis.stn_inspect RUN_DIR                 # the best affine and the best TPS trial
    python -m analysis.stn_inspect RUN_DIR --trial ID ...  # these trials (ids as in RUN_DIR/logs)

Reads the `inspection.npz` that an STN trial stores in its final checkpoint (RUN_DIR/tune/<trial>/checkpoint_*;
see trainables/stn.py), so it needs NumPy, pandas and matplotlib only. Writes, per trial, into
RUN_DIR/report/stn_inspect/<transformer>-<trial_id>/ (or --out):
  before_after_<variant>.png   the first 64 test images of each deformation type, input | transformer output
  affine: theta.csv            θ of those images as translation (px), scale x/y, rotation, shear, reflection
          theta_hist.png       the same parameters over the whole test set, one colour per deformation type
          distinct.csv         how many distinct transforms a batch and the test set use
  tps:    tps_grid_<variant>.png  the predicted control grid drawn over the input images
and an inspect.md + index.html that show them, written by analysis.render.write_page like the report. The
report (analysis.report) includes the same sections for the best affine and TPS trial, under report/stn_inspect/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis import render
from analysis.logs import load_logs
from analysis.plots import _png
from analysis.run import RunData

ARRAYS = "inspection.npz"
PARAMS = ["tx_px", "ty_px", "scale_x", "scale_y", "rotation_deg", "shear", "magnification"]
DISTINCT_DECIMALS = 2  # θ entries rounded to 0.01 (0.14 px of translation) before counting distinct transforms
GRID_SHOWN = 16  # images per TPS control-grid figure


def find_inspection(run_dir: Path, trial_id: str) -> Path | None:
    """The newest checkpoint of `trial_id` that holds inspection arrays (Tune names trial folders
    <trainable>_<trial_id>_...)."""
    found = []
    # Underscores on both sides: an all-digit id must not match inside a date or a parameter value.
    for trial_dir in (run_dir / "tune").glob(f"*_{trial_id}_*"):
        for ckpt in trial_dir.glob("checkpoint_*"):
            if (ckpt / ARRAYS).is_file():
                found.append(ckpt / ARRAYS)
    return max(found, key=lambda p: p.parent.name) if found else None


def decompose_theta(theta: np.ndarray) -> pd.DataFrame:
    """θ (N×2×3, output → input coordinates in [-1, 1]) as A = R(rotation) · diag(sx, sy) · [[1, shear], [0, 1]]
    plus translation. sy < 0 is a reflection (det A < 0). Scale < 1 samples a smaller region: the STN magnifies;
    magnification = 1 / sqrt(|det A|). Translation in pixels of a 28-pixel image (1 unit = 14 px)."""
    a, b, c, d = theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1]
    sx = np.hypot(a, c)
    det = a * d - b * c
    safe = np.where(sx > 1e-9, sx, np.nan)
    return pd.DataFrame({
        "tx_px": theta[:, 0, 2] * 14.0, "ty_px": theta[:, 1, 2] * 14.0,
        "scale_x": sx, "scale_y": det / safe,
        "rotation_deg": np.degrees(np.arctan2(c, a)),
        "shear": (a * b + c * d) / np.square(safe),
        "magnification": 1.0 / np.sqrt(np.maximum(np.abs(det), 1e-12)),
        "reflection": det < 0,
    })


def distinct_transforms(theta: np.ndarray, decimals: int = DISTINCT_DECIMALS) -> int:
    return int(len(np.unique(np.round(theta.reshape(len(theta), -1), decimals), axis=0)))


def _variants(arrays) -> list[str]:
    return [k.removesuffix("/before") for k in arrays.files if k.endswith("/before")]


def plot_before_after(before: np.ndarray, after: np.ndarray, labels, pred, title: str) -> bytes:
    def mosaic(images: np.ndarray) -> np.ndarray:
        n, h, w = images.shape
        side = int(np.ceil(np.sqrt(n)))
        canvas = np.full((side * (h + 2), side * (w + 2)), 255, dtype=np.uint8)  # white 2 px gutters
        for i, img in enumerate(images):
            r, col = divmod(i, side)
            canvas[r * (h + 2):r * (h + 2) + h, col * (w + 2):col * (w + 2) + w] = img
        return canvas

    fig = Figure(figsize=(10, 5.4))
    axes = fig.subplots(1, 2)
    for ax, imgs, name in zip(axes, (before, after), ("input", "after the transformer")):
        ax.imshow(mosaic(imgs), cmap="gray", vmin=0, vmax=255)
        ax.set_title(name)
        ax.axis("off")
    right = int(np.sum(np.asarray(labels) == np.asarray(pred)))
    fig.suptitle(f"{title}: {right}/{len(labels)} of these classified correctly")
    return _png(fig)


def plot_theta_hist(frames: dict[str, pd.DataFrame], title: str) -> bytes:
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 4).flatten()
    for ax, param in zip(axes, PARAMS + ["reflection"]):
        values = {v: f[param].to_numpy(dtype=float) for v, f in frames.items()}
        if param == "reflection":
            ax.bar(list(values), [100 * x.mean() for x in values.values()], color=[f"C{i}" for i in range(len(values))])
            ax.set_ylabel("% of test images")
            ax.set_title("reflected (det θ < 0)")
            continue
        finite = np.concatenate([x[np.isfinite(x)] for x in values.values()])
        lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0, 1)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 40)
        for i, (v, x) in enumerate(values.items()):
            # one filled outline per type rather than a patch per bin: the same picture, far fewer artists to draw
            ax.hist(np.clip(x, lo, hi), bins=bins, histtype="stepfilled", alpha=0.55, color=f"C{i}", label=v)
        ax.set_title(param)
    axes[0].legend()
    fig.suptitle(f"{title}: θ over the whole test set per deformation type (0.5-99.5 percentile range shown)")
    return _png(fig)


def plot_tps_grid(before: np.ndarray, after: np.ndarray, points: np.ndarray, base: np.ndarray, title: str) -> bytes:
    k = int(round(np.sqrt(len(base))))
    n = min(GRID_SHOWN, len(before))
    cols = 8
    rows = -(-n // cols)
    fig = Figure(figsize=(12, 3.2 * rows), layout="constrained")
    axes = fig.subplots(2 * rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    h, w = before.shape[1:]
    for i in range(n):
        r, c = divmod(i, cols)
        ax = axes[2 * r, c]
        ax.imshow(before[i], cmap="gray", vmin=0, vmax=255)
        # [-1, 1] (align_corners=False) → pixel coordinates
        px = (points[i, :, 0] + 1) * w / 2 - 0.5
        py = (points[i, :, 1] + 1) * h / 2 - 0.5
        gx, gy = px.reshape(k, k), py.reshape(k, k)
        for j in range(k):
            ax.plot(gx[j], gy[j], color="tab:orange", lw=0.9)
            ax.plot(gx[:, j], gy[:, j], color="tab:orange", lw=0.9)
        ax.scatter(px, py, s=6, color="tab:red", zorder=3)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        axes[2 * r + 1, c].imshow(after[i], cmap="gray", vmin=0, vmax=255)
    fig.suptitle(f"{title}: where the {k}×{k} control grid samples the input (orange), and below each, the output")
    return _png(fig)


def trial_files(npz: Path, title: str) -> tuple[dict[str, bytes | str], list[tuple[str, str]], pd.DataFrame | None]:
    """One trial's artefacts in memory: (file name → content, (PNG, caption) pairs to show, distinct table)."""
    files: dict[str, bytes | str] = {}
    shown: list[tuple[str, str]] = []
    distinct = None
    with np.load(npz) as arrays:
        kind = str(arrays["transformer"])
        variants = _variants(arrays)
        for v in variants:
            name = f"before_after_{v}.png"
            files[name] = plot_before_after(arrays[f"{v}/before"], arrays[f"{v}/after"], arrays[f"{v}/labels"],
                                            arrays[f"{v}/pred"], f"{title}, {v}")
            shown.append((name, f"{v}: 64 test images before and after the {kind} transformer"))
        if kind == "affine":
            frames = {v: decompose_theta(arrays[f"{v}/theta"]) for v in variants}
            batch = pd.concat([f.head(len(arrays[f"{v}/labels"])).assign(
                variant=v, image=np.arange(len(arrays[f"{v}/labels"])), label=arrays[f"{v}/labels"],
                pred=arrays[f"{v}/pred"]) for v, f in frames.items()], ignore_index=True)
            cols = ["variant", "image", "label", "pred"] + PARAMS + ["reflection"]
            files["theta.csv"] = batch[cols].to_csv(index=False, float_format="%.4g")
            distinct = pd.DataFrame([{
                "variant": v, "batch_images": len(arrays[f"{v}/labels"]),
                "distinct_in_batch": distinct_transforms(arrays[f"{v}/theta"][:len(arrays[f"{v}/labels"])]),
                "test_images": len(arrays[f"{v}/theta"]),
                "distinct_in_test_set": distinct_transforms(arrays[f"{v}/theta"]),
                **{f"median_{p}": float(np.nanmedian(frames[v][p])) for p in ("scale_x", "scale_y", "magnification")},
                "reflected_pct": 100 * float(frames[v]["reflection"].mean()),
            } for v in variants])
            files["distinct.csv"] = distinct.to_csv(index=False, float_format="%.4g")
            files["theta_hist.png"] = plot_theta_hist(frames, title)
            shown.append(("theta_hist.png", "θ decomposed, histograms over the test set"))
        elif kind == "tps":
            for v in variants:
                name = f"tps_grid_{v}.png"
                files[name] = plot_tps_grid(arrays[f"{v}/before"], arrays[f"{v}/after"], arrays[f"{v}/points"],
                                            arrays["base"], f"{title}, {v}")
                shown.append((name, f"{v}: the TPS control grid over the inputs"))
    return files, shown, distinct


def _heading(df_last: pd.DataFrame, trial_id: str, kind: str) -> str:
    row = df_last.loc[trial_id] if trial_id in df_last.index else None
    accs = ", ".join(f"{c.removeprefix('test_acc/')} {render.fmt_pct(row[c], True)}" for c in sorted(df_last.columns)
                     if row is not None and c.startswith("test_acc/") and pd.notna(row[c]))
    if not accs and row is not None:  # a run without per-variant metrics (stn_mnist)
        accs = render.fmt_pct(row["test_acc"], True)
    epoch = int(row["epoch"]) if row is not None else "?"
    return f"{kind} STN, trial {trial_id} (epoch {epoch}; final accuracy {accs})"


def _kind(npz: Path) -> str:
    with np.load(npz) as arrays:
        return str(arrays["transformer"])


def _distinct_note() -> str:
    return f"Distinct transforms: θ rounded to {DISTINCT_DECIMALS} decimals, counted in the batch and the test set."


def pick_trials(df: pd.DataFrame, run_dir: Path) -> list[str]:
    """Per transformer (affine, tps), the trial with the best final combined test accuracy that has arrays."""
    if "config/transformer" not in df.columns:
        return []
    last = df.sort_values("epoch").groupby("trial_id").tail(1)
    chosen = []
    for kind in ("affine", "tps"):
        rows = last[last["config/transformer"] == kind].sort_values("test_acc", ascending=False)
        for trial_id in rows["trial_id"]:
            if find_inspection(run_dir, trial_id) is not None:
                chosen.append(trial_id)
                break
    return chosen


def trial_sections(df: pd.DataFrame, run_dir: Path, trials: list[str], prefix: str = "") -> list[render.Section]:
    """One page section per trial; its files are named PREFIX<transformer>-<trial_id>/<file>."""
    last = df.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    out = []
    for trial_id in trials:
        npz = find_inspection(run_dir, trial_id)
        if npz is None:
            raise FileNotFoundError(f"trial {trial_id}: no checkpoint with {ARRAYS} under {run_dir / 'tune'}")
        kind = _kind(npz)
        sub = f"{prefix}{kind}-{trial_id}"
        files, shown, distinct = trial_files(npz, f"{kind} STN, trial {trial_id}")
        parts = [render.paragraph("What the transformer does to the first 64 test images of each deformation type "
                                  "(python -m analysis.stn_inspect RUN_DIR writes the same for any trial).")]
        if distinct is not None:
            parts += [render.table(distinct.round(4).astype(str),
                                   _distinct_note() + f" Per-image θ: {sub}/theta.csv.")]
        parts += [render.figure(f"{sub}/{name.removesuffix('.png')}", caption) for name, caption in shown]
        out.append(render.section(f"STN inspection: {_heading(last, trial_id, kind)}", parts,
                                  {f"{sub}/{name}": content for name, content in files.items()}))
    return out


def build_inspection(run_dir: str | Path, out_dir: str | Path | None = None,
                     trials: list[str] | None = None) -> Path:
    """Write the artefacts for `trials` (default: pick_trials), inspect.md and index.html; returns index.html's
    path."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report" / "stn_inspect"
    df = load_logs(run_dir)
    trials = trials or pick_trials(df, run_dir)
    if not trials:
        raise FileNotFoundError(f"no STN trial in {run_dir} has inspection arrays (a trial stores them in its "
                                f"final checkpoint, RUN_DIR/tune/<trial>/checkpoint_*/{ARRAYS}; trials stopped "
                                f"before their last epoch have none)")
    return render.write_page(out, "STN inspection", trial_sections(df, run_dir, trials), markdown_name="inspect.md")


def inspection_sections(data: RunData) -> list[render.Section] | None:
    """The report's part (analysis.report lists it in SECTIONS): the same artefacts under report/stn_inspect/."""
    trials = pick_trials(data.df, data.run_dir)
    return trial_sections(data.df, data.run_dir, trials, "stn_inspect/") if trials else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.stn_inspect", description=__doc__.split("\n")[0],
                                     epilog="example: python -m analysis.stn_inspect runs/stn_deformed")
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a sweep folder with logs/ and tune/")
    parser.add_argument("--trial", nargs="+", metavar="ID",
                        help="trial ids to inspect (default: the best affine and the best TPS trial)")
    parser.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/report/stn_inspect)")
    args = parser.parse_args(argv)
    try:
        index = build_inspection(args.run_dir, args.out, args.trial)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
