"""Turn a sweep's Parquet logs into a report: tables, plots, Markdown and HTML, and the accuracy-vs-cost tradeoff.

    python -m analysis.report RUN_DIR [--out DIR] [--compare RUN_DIR2] [--baseline "lr=0.01, batch_size=64"]

Writes into DIR (default RUN_DIR/report), all files side by side so the folder can be copied or served as is:
index.html and report.md (the same content), the PNGs they show and the tables behind them as CSV:

- trials.csv: per trial best/final accuracy and loss with their epochs (best_val_acc and chosen_on say whether
  validation chose the epoch), epochs to 95/99/100% of the best and to
  plateau, stop reason, epochs run, training seconds (total_seconds) and GPU-seconds (seconds x the trial's GPU
  share from the logs' gpus column; 0 for old logs without it, and the report says so), its share of the feature
  pass (feature_seconds, feature_gpu_seconds; analysis.compute), their sums (compute_seconds,
  compute_gpu_seconds: the compute the Pareto front and the ratios use); Pareto membership.
- groups.csv (a group is a configuration without its seed): mean, std and 95% Student-t interval across seeds;
  curves.csv per group and epoch; test_acc.png / test_loss.png (the original study's Tables 3 and 4);
  size_effect.csv/png when train_per_class varies (its Table 2); variants.png when test_acc/<variant> exists.
- tradeoff.csv/png (accuracy if stopped at each epoch budget, marginal gain, plateau), comparison.csv (best
  group, or a search's confirmed winner, vs baseline and vs median group), confirm.csv (a search's headline, per
  seed), confirm_ranked.csv (every confirmed configuration, best first by validation, with its test accuracy),
  pareto.csv/png, best_epoch.png, isolation.csv/png, and audit.csv/png where a scheduler stopped trials early.
  With --compare: compare_groups.csv, compare.csv and compare.png.

The pages show accuracy in percent with one decimal; the CSVs keep fractions in [0, 1] at full precision, and the
header of every column of accuracies (or of their spreads and differences) says so: "best_test_acc [fraction]",
"test_acc_mean [fraction]", "Δ best acc [fraction]" (the pages' "Tables:" line explains it). A run where no
trial or feature pass held a GPU gets no GPU-seconds columns in its pages (one sentence in the intro says so; the
CSVs keep them, all 0).

Validation chooses, test reports: where the logs have val_acc (the held-out validation split), each trial's best
epoch and the best group and trial are chosen on it, and the accuracy reported is the test accuracy at that epoch;
without it (old logs, --val-per-class 0) they are picked in hindsight on the test set, and the report says so.

A search's report (RUN_DIR holds optuna.db, or the logs have a phase column) opens with the headline "tuned vs
baseline: +x points (95% CI) on the test set, at y× the epochs and z× the compute": the best non-baseline
configuration against the baseline (sweep.json's first configuration, or --baseline) on the confirm phase's
trials only, with the per-seed numbers below it and in confirm.csv, then every confirmed configuration (the
runners-up too) in confirm_ranked.csv; without a confirm phase the same comparison
comes from the search's own trials and the line says it is optimistic. A baseline that did not run its whole
epoch budget gets no number there, nor in comparison.csv: the report says where it was stopped instead.

Extending: a section is a function ``fn(data: RunData) -> Section | list[Section] | None`` (RunData from
analysis.run; build the Section with analysis.render's table/figure/paragraph/section); list it in SECTIONS or
add it with ``register_section(fn)``. The built-in sections live in analysis.sections, the σ curve in
analysis.sigma_curve, the STN inspection in analysis.stn_inspect; analysis.render.write_page writes the page. A
Section carries its title, Markdown, HTML and files (name -> bytes/str, written into the report folder). A
section that raises becomes a note; it never breaks the report. The modules this one imports never import it.
Uses pandas, pyarrow, numpy, scipy and matplotlib's Agg canvas only (no ray, no torch, no display needed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from analysis.logs import CONFIG_PREFIX, SEED_COLUMN, config_columns, group_label
from analysis.render import Section, bullets, fmt_num, fmt_pct_pm, note, paragraph, section, write_page
from analysis.run import RunData, load_run
from analysis.runstate import driver_alive, read_status
from analysis.sections import audit_section, best_epoch_section, compare_section, curves_section, groups_section, \
    headline, isolation_section, pareto_section, size_section, skipped_section, trials_section, tradeoff_section, \
    variants_section
from analysis.tables import chosen_on, rank_column
from analysis.tradeoff import phases
from analysis.sigma_curve import sigma_section
from analysis.stn_inspect import inspection_sections

HINDSIGHT = ("Best accuracy, best loss and their epochs are chosen in hindsight on the test set "
             "(there is no separate validation split), so they are optimistic.")
VALIDATION = ("Validation chooses, test reports: each trial's best epoch (the highest val_acc; a tie to the "
              "lower val_loss, then the earlier epoch), the best group and the best trial are chosen on the "
              "validation split (val_acc, val_loss); the best accuracy and loss shown are the test values at that "
              "epoch.")


def choice_note(d: RunData) -> str:
    """The intro's line on which split chose the best epochs: VALIDATION, HINDSIGHT, or how the two mix."""
    split = chosen_on(d.trials)
    if split == "validation":
        return VALIDATION
    if split == "test":
        return HINDSIGHT
    n = int((d.trials["chosen_on"] != "val").sum())
    return (f"{n} of {len(d.trials)} trials have no validation split (val_acc): their best accuracy, best loss and "
            "epochs are chosen in hindsight on the test set, and so is the ranking of groups, so they are "
            "optimistic; the other trials' best epochs are chosen on validation.")


SectionFn = Callable[[RunData], "Section | list[Section] | None"]
SECTIONS: list[SectionFn] = [groups_section, size_section, curves_section, variants_section, tradeoff_section,
                             pareto_section, best_epoch_section, isolation_section, audit_section, compare_section,
                             sigma_section, inspection_sections, trials_section, skipped_section]


def register_section(fn: SectionFn) -> SectionFn:
    """Add a section function to every report built after this call (usable as a decorator)."""
    if fn not in SECTIONS:
        SECTIONS.insert(len(SECTIONS) - 2, fn)  # before the long trials table and the skipped files
    return fn


PARALLEL_ROWS = 200_000  # from here on, sections (mostly plot rendering) run in two processes
_FORKED: tuple[list[SectionFn], RunData] | None = None  # what forked section workers inherit


def _one_section(fn: SectionFn, data: RunData) -> list[Section]:
    try:
        result = fn(data)
    except Exception as exc:  # one broken section must not cost the whole report
        name = getattr(fn, "__name__", str(fn))
        result = section(f"Section {name} failed", [paragraph(f"{type(exc).__name__}: {exc}")])
    if result is None:
        return []
    return result if isinstance(result, list) else [result]


def _forked_sections(indices: list[int]) -> list[list[Section]]:
    fns, data = _FORKED
    return [_one_section(fns[i], data) for i in indices]


def _run_sections(data: RunData) -> list[Section]:
    global _FORKED
    fns = list(SECTIONS)
    cores = os.cpu_count() or 1
    if len(data.df) < PARALLEL_ROWS or cores < 2 or "fork" not in _start_methods():
        return [s for fn in fns for s in _one_section(fn, data)]
    # Large runs: half of the sections in a forked process, which inherits the loaded data instead of receiving
    # it (only the finished sections travel back); plotting dominates there, and two cores share it.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _FORKED = (fns, data)
    theirs, mine = list(range(0, len(fns), 2)), list(range(1, len(fns), 2))
    results: dict[int, list[Section]] = {}
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            pending = pool.submit(_forked_sections, theirs)
            for i in mine:
                results[i] = _one_section(fns[i], data)
            results.update(zip(theirs, pending.result()))
    finally:
        _FORKED = None
    return [s for i in range(len(fns)) for s in results[i]]


def _start_methods() -> list[str]:
    import multiprocessing

    return multiprocessing.get_all_start_methods()


def fixed_value(d: RunData, column: str) -> str:
    """`name=value` of a configuration value every trial shares; a None says what it stands for when sweep.json
    tells (`val_per_class=None (a tenth of the smallest digit's training images)`)."""
    text = group_label(d.df.iloc[0], [column])
    name = column.removeprefix(CONFIG_PREFIX)
    meaning = ((d.sweep or {}).get("none_means") or {}).get(name)
    return f"{text} ({meaning})" if text == f"{name}=None" and isinstance(meaning, str) else text


def _facts(d: RunData) -> list[str]:
    fixed = [c for c in config_columns(d.df) if c not in d.gcols and c != SEED_COLUMN]
    best = d.groups.loc[d.groups[rank_column(d.groups)].idxmax()]
    by_val = chosen_on(d.groups) == "validation"
    return [
        f"{len(d.trials)} trials in {len(d.groups)} group(s), {len(d.df)} rows (trial × epoch), "
        f"up to {d.df['epoch'].max()} epochs.",
        "Varying: " + (", ".join(c.removeprefix(CONFIG_PREFIX) for c in d.gcols) or "nothing (one group)") + ".",
        "Fixed: " + (", ".join(fixed_value(d, c) for c in fixed) if fixed else "nothing") + ".",
        f"Best group{' (chosen on validation)' if by_val else ''}: {d.readable(best['group'])}: "
        f"{'test accuracy at the val-chosen epoch' if by_val else 'best test accuracy'} "
        f"{fmt_pct_pm(best['best_test_acc_mean'], best['best_test_acc_std'], sign=True)}"
        f" over {best['n_seeds']} seed(s)"
        + (" (search and confirm trials together; the headline uses the confirm phase alone)."
           if (phases(d.trials) == "confirm").any() else "."),
        *compute_facts(d),
        *d.notes,
    ]


def compute_facts(d: RunData) -> list[str]:
    """The compute line (training + the feature pass, in seconds and, where any GPU was held, GPU-seconds) and,
    on a run without GPUs, the one sentence saying why the GPU-seconds columns are missing."""
    train = d.trials["total_seconds"].sum()
    if d.passes is None:
        line = f"Compute: {fmt_num(train)} s of training (the sum of the trials' epoch seconds)"
    else:
        n = len(d.passes)
        line = (f"Compute: {fmt_num(train)} s of training + {fmt_num(d.feature_seconds)} s of feature pass "
                f"({n} backbone pass{'es' if n != 1 else ''}, split over the trials by the images each used) = "
                f"{fmt_num(train + d.feature_seconds)} s")
    if d.has_gpu:
        gpu = d.trials["gpu_seconds"].sum()
        line += (f"; {fmt_num(gpu)} GPU-seconds of training" if d.passes is None else
                 f"; {fmt_num(gpu)} GPU-seconds of training + {fmt_num(d.feature_gpu_seconds)} of feature pass = "
                 f"{fmt_num(gpu + d.feature_gpu_seconds)} GPU-seconds") + " (seconds × the GPU share held)"
        return [line + "."]
    return [line + ".", "No trial held a GPU, so the tables leave out GPU-seconds (all 0; the CSVs keep them)."]


def completeness(d: RunData) -> str | None:
    """The report's first line when the run is not a finished sweep (RUN_DIR/status.json, written by the
    driver); None when it finished or says nothing (older runs, copied logs)."""
    status = read_status(d.run_dir)
    state, total = status.get("state"), status.get("trials")
    if state in (None, "finished", "failed") or not isinstance(total, int):
        return None
    done = int((d.trials["status"] == "terminated").sum())
    missing = max(total - done, 0)
    if state == "running" and driver_alive(d.run_dir):
        return f"In progress: {done} of {total} trials finished; this report shows the rows logged so far."
    why = "was interrupted" if state == "interrupted" else "stopped without finishing (its driver is gone)"
    return (f"Incomplete: the sweep {why}; {done} of {total} trials finished, {missing} missing. Continue it with "
            f"the same command plus --resume --out {d.run_dir}.")


def build_report(run_dir: str | Path, out_dir: str | Path | None = None, compare: str | Path | None = None,
                 baseline: str | None = None) -> Path:
    """Write the report for RUN_DIR into OUT_DIR (default RUN_DIR/report) and return index.html's path.
    ``compare``: a second run shown side by side; ``baseline``: the group label to compare the best group with."""
    return write_report(run_dir, out_dir, compare, baseline)[0]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, compare: str | Path | None = None,
                 baseline: str | None = None) -> tuple[Path, str | None]:
    """build_report, also returning what a terminal shows of a search's answer: the headline line ("tuned vs
    baseline: ...") and, from a confirm phase, a line naming the winner with both sides' test accuracy; None for a
    grid."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "report"
    data = load_run(run_dir, baseline)
    if compare is not None:
        data.compare = load_run(compare)
    sections = _run_sections(data)
    intro = [bullets(_facts(data)), note(choice_note(data))]
    files = {}
    if (top := _headline(data)) is not None:  # a search's answer comes first
        intro.insert(0, (top.markdown, top.html))
        files = top.files
    if (first := completeness(data)) is not None:
        intro.insert(0, note(first))
    index = write_page(out, f"Sweep report: {run_dir.resolve().name}", sections, intro, files=files)
    return index, top.lead if top is not None else None


def _headline(data: RunData) -> Section | None:
    try:
        return headline(data)
    except Exception as exc:  # like a section: a failure becomes a note, never a missing report
        return section("Tuned vs baseline", [note(f"tuned vs baseline failed: {type(exc).__name__}: {exc}")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Summarise a sweep's RUN_DIR/logs (Parquet, one file per trial) into tables, plots, "
                    "report.md and index.html: per trial and per group (configuration without seed) results, "
                    "accuracy against epoch budget and compute, Pareto front, isolation plots, early-stopping audit.",
        epilog="example: python -m analysis.report runs/stn_mnist  (then open runs/stn_mnist/report/index.html)",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="the sweep's output folder, the one that holds logs/")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where to write the report (default: RUN_DIR/report)")
    parser.add_argument("--compare", metavar="RUN_DIR2", type=Path, default=None,
                        help="a second run to show side by side (groups of both, curves, Δ best accuracy and compute)")
    parser.add_argument("--baseline", metavar="GROUP", default=None,
                        help="group label (as in groups.csv) to compare the best group with (default: the group of "
                             "sweep.json's first configuration, else the first group)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.run_dir / "report"
    try:
        index, lead = write_report(args.run_dir, args.out, args.compare, args.baseline)
    except FileNotFoundError as exc:  # no logs there: the message names the folder and what was expected
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the report folder cannot be written: read-only, full, not a folder
        print(f"error: cannot write the report to {out} ({exc.strerror or exc}): pass --out with a folder you can "
              f"write to; the logs were only read", file=sys.stderr)
        return 2
    print(index)
    if lead:  # a search's answer, as the sweep printed it
        print(lead)
    return 0


if __name__ == "__main__":
    sys.exit(main())
