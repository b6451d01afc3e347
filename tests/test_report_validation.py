"""Tests for the report's honest answer to "was tuning worth it?" (issue 14), on hand-made logs written through
the sweep's real ParquetLogger (no ray, no torch in the report):

- validation chooses, test reports: each trial's best epoch and the best group are chosen on val_acc, and the
  accuracy reported is the test accuracy at that epoch (without val columns: the test set, and the report says so);
- a baseline that did not run its whole epoch budget gets no Δ, but a sentence saying where it stopped;
- a search's headline comes from the confirm phase's trials only (Welch interval checked against scipy.stats);
- without a confirm phase the headline says it comes from the search itself and is optimistic.

    python -m pytest tests/test_report_validation.py -q

Every trial below has a budget of 4 epochs and holds half a GPU. In the curves, the epoch with the best test
accuracy is never the one validation picks, so choosing on the test set gives other numbers everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from analysis.report import build_report
from helpers import LogTrial, epoch_metrics, run_cli, write_logs

BUDGET = 4
SEARCH_BASELINE = {"lr": 0.01, "batch_size": 64, "seed": 0}  # sweep.json's first configuration


def _config(lr: float, seed: int) -> dict:
    return {"batch_size": 64, "epochs": BUDGET, "lr": lr, "seed": seed}


def _trial(tid: str, lr: float, seed: int, test: list[float], val: list[float] | None, seconds: float = 1.0,
           end: str = "completed") -> LogTrial:
    """val None: a trial without a validation split (val_per_class 0: the val columns are null)."""
    val = val if val is not None else [None] * len(test)
    return LogTrial(tid, _config(lr, seed),
                    [epoch_metrics(t, seconds=seconds, lr=lr, val_acc=v, val_loss=None if v is None else 1 - v)
                     for t, v in zip(test, val)], end=end)


def _write_run(run: Path, trials: list[LogTrial], phase: str | None = None, baseline: dict | None = None) -> Path:
    """Write the trials' logs; ``phase`` adds a phase column to their files (as a search's logger does)."""
    logs = write_logs(run / "logs", trials, config_types={"lr": float, "seed": int, "batch_size": int, "epochs": int},
                      resources={"cpu": 1, "gpu": 0.5})
    if phase is not None:
        for t in trials:
            path = logs / f"{t.trial_id}.parquet"
            table = pq.read_table(path)
            if "phase" in table.column_names:
                table = table.drop(["phase"])
            pq.write_table(table.append_column("phase", pa.array([phase] * table.num_rows, pa.string())), path)
    if baseline is not None:
        (run / "sweep.json").write_text(json.dumps({"configs": [baseline], "resources_per_trial": {"gpu": 0.5}}))
    return run


# --- (a) validation chooses, test reports --------------------------------------------------------------------------

CHOICE = {  # trial_id -> (lr, seed, test_acc per epoch, val_acc per epoch)
    # lr=0.1 is best on the test set (0.95, 0.93 at epoch 2; still 0.90, 0.92 at the epoch validation picks),
    # worse on validation (0.60, 0.62 at epoch 3)
    "a0": (0.1, 0, [0.50, 0.95, 0.90, 0.60], [0.40, 0.50, 0.60, 0.55]),
    "a1": (0.1, 1, [0.60, 0.93, 0.92, 0.65], [0.45, 0.55, 0.62, 0.62]),  # val tie at 3 and 4: the earlier, 3
    # lr=0.01 is best on validation (0.85, 0.88 at epoch 2); its test peaks later (0.85, 0.86 at epoch 3)
    "b0": (0.01, 0, [0.50, 0.80, 0.85, 0.84], [0.60, 0.85, 0.70, 0.70]),
    "b1": (0.01, 1, [0.55, 0.82, 0.86, 0.80], [0.65, 0.88, 0.75, 0.70]),
}


def _choice_run(run: Path, with_val: bool = True) -> Path:
    trials = [_trial(tid, lr, seed, test, val if with_val else None) for tid, (lr, seed, test, val) in CHOICE.items()]
    return _write_run(run, trials, baseline={"lr": 0.1, "batch_size": 64, "seed": 0})


@pytest.fixture(scope="module")
def choice_report(tmp_path_factory) -> Path:
    return build_report(_choice_run(tmp_path_factory.mktemp("choice") / "run")).parent


def test_each_trial_reports_test_accuracy_at_the_epoch_validation_chose(choice_report):
    t = pd.read_csv(choice_report / "trials.csv").set_index("trial_id")
    # (epoch chosen on val_acc, test accuracy there, val accuracy there); on the test set: epochs 2, 2, 3, 3
    expected = {"a0": (3, 0.90, 0.60), "a1": (3, 0.92, 0.62), "b0": (2, 0.80, 0.85), "b1": (2, 0.82, 0.88)}
    for tid, (epoch, test, val) in expected.items():
        row = t.loc[tid]
        assert (row["best_acc_epoch"], row["chosen_on"]) == (epoch, "val"), tid
        assert row["best_test_acc [fraction]"] == pytest.approx(test), tid
        assert row["best_val_acc [fraction]"] == pytest.approx(val), tid
        # loss likewise: the epoch of the lowest val_loss (1 - val_acc), the test loss (1 - test_acc) there
        assert row["best_loss_epoch"] == epoch and row["best_test_loss"] == pytest.approx(1 - test), tid
    g = pd.read_csv(choice_report / "groups.csv").set_index("group")
    assert g.loc["lr=0.01", "best_test_acc_mean [fraction]"] == pytest.approx(0.81)
    assert g.loc["lr=0.1", "best_test_acc_mean [fraction]"] == pytest.approx(0.91)



def test_epochs_tied_on_validation_accuracy_go_to_the_lower_validation_loss(tmp_path):
    """val_acc ties at epochs 2 and 4 (0.90, a step of a 500-image split); epoch 4 has the lower val_loss, so it is
    the choice, in the trials table and in the best-so-far curve, as a tie between configurations already is. A
    full tie (the same val_loss too) still goes to the earlier epoch."""
    from analysis.logs import load_logs
    from analysis.tables import chosen_so_far, trial_codes, trial_summary

    def trial(tid, losses):
        return LogTrial(tid, _config(0.1, 0), [epoch_metrics(t, val_acc=v, val_loss=l) for t, v, l in
                                                zip([0.80, 0.85, 0.86, 0.91, 0.88], [0.70, 0.90, 0.88, 0.90, 0.89],
                                                    losses)])

    write_logs(tmp_path / "logs", [trial("lower", [0.9, 0.40, 0.45, 0.30, 0.35]),
                                   trial("same", [0.9, 0.40, 0.45, 0.40, 0.35])],
               config_types={"lr": float, "seed": int, "batch_size": int, "epochs": int})
    df = load_logs(tmp_path)
    t = trial_summary(df, ["config/lr"]).set_index("trial_id")
    assert t.loc["lower", ["best_acc_epoch", "best_test_acc"]].tolist() == [4, pytest.approx(0.91)]
    assert t.loc["same", ["best_acc_epoch", "best_test_acc"]].tolist() == [2, pytest.approx(0.85)]
    so_far = chosen_so_far(df, trial_codes(df)[0])[0].reshape(2, 5)
    assert so_far[0] == pytest.approx([0.80, 0.85, 0.85, 0.91, 0.91])
    assert so_far[1] == pytest.approx([0.80, 0.85, 0.85, 0.85, 0.85])

def test_the_best_group_is_chosen_on_validation(choice_report):
    # lr=0.1 leads on the test set, at any epoch (0.94 against 0.855) and at the val-chosen ones (0.91 against
    # 0.81); validation picks lr=0.01 (0.865 against 0.61), and the comparison says what that cost on test
    c = pd.read_csv(choice_report / "comparison.csv").set_index("comparison").loc["best vs baseline"]
    assert (c["best group"], c["reference group"]) == ("lr=0.01", "lr=0.1")
    assert c["Δ best acc [fraction]"] == pytest.approx(0.81 - 0.91)
    assert c["Δ epoch of best"] == pytest.approx(2 - 3)
    b = pd.read_csv(choice_report / "tradeoff.csv").set_index("E")
    # budget 1: validation picks lr=0.01 (0.625 against 0.425) and reports its test accuracy, not lr=0.1's 0.55
    assert b.loc[1, ["best_group_at_E", "best_group_best_so_far_group"]].tolist() == ["lr=0.01", "lr=0.01"]
    assert b.loc[1, "best_group_acc_at_E [fraction]"] == pytest.approx(0.525)
    # budget 4: the test accuracy at each lr=0.01 trial's val-chosen epoch so far (epoch 2), not the best test one
    assert b.loc[4, "best_group_best_so_far [fraction]"] == pytest.approx(0.81)
    assert b.loc[4, "mean_trial_best_so_far [fraction]"] == pytest.approx((0.90 + 0.92 + 0.80 + 0.82) / 4)
    md = (choice_report / "report.md").read_text()
    assert "Best group (chosen on validation): lr=0.01: test accuracy at the val-chosen epoch 81.0 ± 1.4%" in md


def test_the_report_says_validation_chose(choice_report):
    md, page = (choice_report / "report.md").read_text(), (choice_report / "index.html").read_text()
    tradeoff = md.split("## Tradeoff")[1]
    assert tradeoff.split("\n\n")[1].startswith("Validation chose:")  # the section's first sentence
    assert "Validation chooses, test reports" in md and "Validation chooses, test reports" in page
    assert "hindsight" not in md.split("## ")[0]  # no test-set warning in the intro
    assert "test acc % at val-chosen epoch (epoch)" in md
    assert "tuned vs baseline" not in md  # a grid (no optuna.db, no phase column) gets no headline


def test_without_validation_the_test_set_chooses_and_the_report_warns(tmp_path):
    out = build_report(_choice_run(tmp_path / "run", with_val=False)).parent
    t = pd.read_csv(out / "trials.csv").set_index("trial_id")
    assert t["best_acc_epoch"].to_dict() == {"a0": 2, "a1": 2, "b0": 3, "b1": 3}
    assert (t["chosen_on"] == "test").all() and t["best_val_acc [fraction]"].isna().all()
    c = pd.read_csv(out / "comparison.csv").set_index("comparison").loc["best vs baseline"]
    assert c["best group"] == "lr=0.1"  # the baseline itself wins on the test set
    md = (out / "report.md").read_text()
    assert "chosen in hindsight on the test set" in md.split("## ")[0]
    assert md.split("## Tradeoff")[1].split("\n\n")[1].startswith("The test set chose:")


# --- (b) a baseline stopped early gets no Δ ------------------------------------------------------------------------

def test_baseline_stopped_early_gets_a_sentence_not_a_delta(tmp_path):
    trials = [_trial("base0", 0.01, 0, [0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.7, 0.8]),
              _trial("base1", 0.01, 1, [0.5, 0.6], [0.5, 0.6], end="plateau"),  # stopped after epoch 2 of 4
              _trial("tuned0", 0.1, 0, [0.7, 0.8, 0.9, 0.9], [0.7, 0.8, 0.9, 0.9]),
              _trial("tuned1", 0.1, 1, [0.7, 0.8, 0.9, 0.9], [0.7, 0.8, 0.9, 0.9])]
    run = _write_run(tmp_path / "run", trials, baseline=SEARCH_BASELINE)
    (run / "optuna.db").write_bytes(b"")  # a search's run folder: the report opens with the headline
    out = build_report(run).parent
    sentence = ("The baseline (lr=0.01) was stopped early (by plateau) at epoch 2 of 4 (1 of 2 trials), so no fair "
                "comparison exists.")
    c = pd.read_csv(out / "comparison.csv").set_index("comparison").loc["best vs baseline"]
    assert c["reference group"] == "lr=0.01" and c["note"] == sentence
    assert c[[k for k in c.index if k.startswith("Δ")]].isna().all() and pd.isna(c["best acc (reference) [fraction]"])
    md = (out / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| best vs baseline |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:3] == ["best vs baseline", "lr=0.1", "lr=0.01"] and cells[4:] == [""] * (len(cells) - 4)
    assert f"> {sentence}" in md
    # the headline (no confirm phase: from the search) gives the sentence instead of points
    first = md.split("## ")[0]
    assert f"tuned vs baseline (from the search itself, optimistic): {sentence}" in first
    assert "points" not in first


# --- (c) the headline comes from the confirm phase only ------------------------------------------------------------

def _curve(k: int, val_best: float, test_at_k: float) -> tuple[list[float], list[float]]:
    """(test, val) over 4 epochs: val peaks (uniquely) at epoch k, where test is test_at_k; test peaks at 0.99
    at another epoch, which choosing on the test set would take."""
    val = [round(val_best - 0.05 * (abs(e - k) + 1), 4) if e != k else val_best for e in range(1, BUDGET + 1)]
    test = [round(test_at_k - 0.1, 4)] * BUDGET
    test[k - 1] = test_at_k
    test[BUDGET - 1 if k != BUDGET else 0] = 0.99
    return test, val


# group -> {seed: (val-chosen epoch, val there, test there)}; seconds per epoch: 1 (baseline), 2, 3
SEARCH = {0.01: {0: (2, 0.70, 0.70)}, 0.1: {0: (2, 0.97, 0.95)}, 0.05: {0: (2, 0.80, 0.80)}}
CONFIRM = {0.01: {1: (2, 0.80, 0.78), 2: (3, 0.82, 0.80), 3: (2, 0.81, 0.75)},
           0.05: {1: (3, 0.90, 0.84), 2: (3, 0.91, 0.88), 3: (2, 0.89, 0.83)},  # best mean val: the winner
           0.1: {1: (2, 0.85, 0.90), 2: (3, 0.86, 0.91), 3: (3, 0.84, 0.92)}}  # best test, but not on val
SECONDS = {0.01: 1.0, 0.05: 2.0, 0.1: 3.0}


def _phase_trials(table: dict, prefix: str) -> list[LogTrial]:
    out = []
    for lr, seeds in table.items():
        for seed, (k, val, test) in seeds.items():
            t, v = _curve(k, val, test)
            out.append(_trial(f"{prefix}-{lr}-{seed}", lr, seed, t, v, seconds=SECONDS[lr]))
    return out


def _search_run(run: Path, confirm: bool) -> Path:
    _write_run(run, _phase_trials(SEARCH, "s"), phase="search", baseline=SEARCH_BASELINE)
    if confirm:
        _write_run(run, _phase_trials(CONFIRM, "c"), phase="confirm")
    return run


def _headline(md: str) -> str:
    return next(line for line in md.split("## ")[0].splitlines() if "tuned vs baseline" in line)


def test_headline_comes_from_the_confirm_phase_only(tmp_path):
    out = build_report(_search_run(tmp_path / "run", confirm=True)).parent
    md, page = (out / "report.md").read_text(), (out / "index.html").read_text()
    winner = np.array([CONFIRM[0.05][s][2] for s in (1, 2, 3)])
    base = np.array([CONFIRM[0.01][s][2] for s in (1, 2, 3)])
    diff = (winner.mean() - base.mean()) * 100
    ci = stats.ttest_ind(winner, base, equal_var=False).confidence_interval(0.95)
    line = (f"tuned vs baseline: {diff:+.1f} points (95% CI {ci.low * 100:+.1f} to {ci.high * 100:+.1f}) on the "
            "test set, at 1× the epochs and 2× the compute")  # 4 epochs each; 2 s/epoch against 1
    assert f"> {line}" in md and line in page
    assert md.index(line) < md.index("## ")  # at the top, before every section
    # the search alone would have named lr=0.1 (val 0.97) and said +25 points
    assert "Winner: lr=0.05" in md and "+25.0 points" not in md
    seeds = pd.read_csv(out / "confirm.csv")
    assert seeds["config/seed"].tolist() == [1, 2, 3]
    assert seeds["baseline_test_acc [fraction]"].tolist() == pytest.approx(base.tolist())
    assert seeds["winner_test_acc [fraction]"].tolist() == pytest.approx(winner.tolist())
    assert seeds["baseline_epoch"].tolist() == [2, 3, 2] and seeds["winner_epoch"].tolist() == [3, 3, 2]
    assert "| seed | baseline test acc % | winner test acc % |" in md and "| 1 | 78.0 | 84.0 |" in md
    assert "href='confirm.csv'" in page
    # the terminal gets the line and what won: write_report's lead (the sweep prints it after "report: ...")
    from analysis.report import write_report

    _, lead = write_report(tmp_path / "run", tmp_path / "again")
    assert lead == (f"{line}\nwinner: lr=0.05: 85.0 ± 2.6% test accuracy over 3 fresh seed(s), against the "
                    "baseline's 77.7 ± 2.5%")
    proc = run_cli("-m", "analysis.report", str(tmp_path / "run"), "--out", str(tmp_path / "cli"), timeout=120)
    assert proc.stdout.splitlines() == [str(tmp_path / "cli" / "index.html"), *lead.splitlines()], proc.stderr
    # the interval is over the confirm seeds; the headline says what it does not cover
    assert "The interval covers the confirm seeds, not the search's luck: a search with another --search-seed" in md


def test_headline_shows_each_side_mean_and_every_confirmed_configuration(tmp_path):
    out = build_report(_search_run(tmp_path / "run", confirm=True)).parent
    md = (out / "report.md").read_text().split("## ")[0]
    assert "| mean ± std | 77.7 ± 2.5 | 85.0 ± 2.6 |" in md  # (78, 80, 75) and (84, 88, 83)
    # best first by mean val_acc: the winner (0.90), lr=0.1 (0.85, though best on test: 0.91), the baseline (0.81)
    ranked = pd.read_csv(out / "confirm_ranked.csv")
    assert ranked["group"].tolist() == ["lr=0.05", "lr=0.1", "lr=0.01"]
    assert ranked["role"].fillna("").tolist() == ["winner", "", "baseline"]
    assert ranked["val_acc_mean [fraction]"].tolist() == pytest.approx([0.90, 0.85, 0.81])
    assert ranked["test_acc_mean [fraction]"].tolist() == pytest.approx([0.85, 0.91, (0.78 + 0.80 + 0.75) / 3])
    assert ranked["n_seeds"].tolist() == [3, 3, 3]
    assert "| lr=0.1 |  | 3 | 85.0 ± 1.0 | 91.0 ± 1.0 |" in md
    # a search without a confirm phase has no such table
    plain = build_report(_search_run(tmp_path / "plain", confirm=False)).parent
    assert not (plain / "confirm_ranked.csv").exists()


def test_the_tradeoff_comparison_names_the_headline_winner(tmp_path):
    """Pooled over both phases, lr=0.1's one lucky search trial (val 0.97) lifts its mean val_acc (0.88) above the
    confirmed winner lr=0.05's (0.875): the tradeoff section's "best vs baseline" row and the Pareto plot's mark
    still name the headline's winner, so the report names one winner."""
    out = build_report(_search_run(tmp_path / "run", confirm=True)).parent
    md = (out / "report.md").read_text()
    comp = pd.read_csv(out / "comparison.csv")
    assert comp["best group"].tolist() == ["lr=0.05", "lr=0.05"]
    # lr=0.05 over its 4 trials (test 0.80 in the search; 0.84, 0.88, 0.83 confirmed) against the baseline's 4
    assert comp["best acc (best) [fraction]"][0] == pytest.approx((0.80 + 0.84 + 0.88 + 0.83) / 4)
    assert comp["best acc (reference) [fraction]"][0] == pytest.approx((0.70 + 0.78 + 0.80 + 0.75) / 4)
    assert "Tuned vs baseline: the headline's winner (the confirmed configuration" in md
    # without a confirm phase the search's best group (on mean val_acc) is compared, as before
    plain = build_report(_search_run(tmp_path / "plain", confirm=False)).parent
    assert pd.read_csv(plain / "comparison.csv")["best group"].tolist() == ["lr=0.1", "lr=0.1"]
    assert "Tuned vs baseline: the best group (highest mean validation accuracy)" in (plain / "report.md").read_text()


def test_a_tie_on_validation_accuracy_goes_to_the_lower_validation_loss(tmp_path):
    """Two confirmed configurations with the same mean val_acc (0.90): the one with the lower val_loss wins the
    headline, though it comes later in the table, and heads the ranked table."""
    run = tmp_path / "run"
    _write_run(run, _phase_trials(SEARCH, "s"), phase="search", baseline=SEARCH_BASELINE)

    def confirm(lr, seed, val, loss, test):
        return LogTrial(f"c-{lr}-{seed}", _config(lr, seed),
                        [epoch_metrics(test, val_acc=val, val_loss=loss, lr=lr) for _ in range(BUDGET)])

    _write_run(run, [confirm(0.01, s, 0.80, 0.5, 0.78) for s in (1, 2, 3)]
               + [confirm(0.05, s, v, 0.40, 0.84) for s, v in ((1, 0.89), (2, 0.90), (3, 0.91))]
               + [confirm(0.1, s, 0.90, 0.30, 0.86) for s in (1, 2, 3)], phase="confirm")
    out = build_report(run).parent
    ranked = pd.read_csv(out / "confirm_ranked.csv")
    assert ranked["group"].tolist() == ["lr=0.1", "lr=0.05", "lr=0.01"]
    assert ranked["role"].fillna("").tolist() == ["winner", "", "baseline"]
    assert ranked["val_acc_mean [fraction]"].tolist() == pytest.approx([0.90, 0.90, 0.80])
    assert "Winner: lr=0.1" in (out / "report.md").read_text()


# --- (d) no confirm phase: the search's own, optimistic answer -----------------------------------------------------

@pytest.mark.parametrize("marker", ["phase column", "optuna.db"])
def test_without_a_confirm_phase_the_headline_says_optimistic(tmp_path, marker):
    run = tmp_path / "run"
    if marker == "phase column":
        _search_run(run, confirm=False)
    else:  # logs without a phase column, in a folder holding the search's Optuna study
        _write_run(run, _phase_trials(SEARCH, "s"), baseline=SEARCH_BASELINE)
        (run / "optuna.db").write_bytes(b"")
    out = build_report(run).parent
    line = _headline((out / "report.md").read_text())
    # the search's winner on validation is lr=0.1 (0.95 on test against the baseline's 0.70); one seed a side
    assert line == ("> tuned vs baseline (from the search itself, optimistic): +25.0 points (no CI: fewer than two "
                    "seeds on a side) on the test set, at 1× the epochs and 3× the compute")
    assert "no confirm phase" in (out / "report.md").read_text().split("## ")[0]
    assert "not the search's luck" not in (out / "report.md").read_text()  # it says "optimistic" instead
    assert not (out / "confirm.csv").exists()


def test_the_headline_shows_sampled_values_readably(tmp_path, monkeypatch):
    """An Optuna-sampled learning rate has 17 digits: the headline and its ranked table show 4 (more where two
    values would read the same), and confirm_ranked.csv keeps each exact."""
    from analysis import plots

    legends, real = [], plots._png

    def png(fig):  # every figure's legend texts, as drawn
        legends.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return real(fig)

    monkeypatch.setattr(plots, "_png", png)
    exact = {0.01: 0.01, 0.05: 0.008818300261327749, 0.1: 0.015644898162645162}
    trials = []
    for prefix, table, phase in (("s", SEARCH, "search"), ("c", CONFIRM, "confirm")):
        for lr, seeds in table.items():
            for seed, (k, val, test) in seeds.items():
                t, v = _curve(k, val, test)
                trials.append((phase, _trial(f"{prefix}-{lr}-{seed}", exact[lr], seed, t, v, seconds=SECONDS[lr])))
    run = tmp_path / "run"
    for phase in ("search", "confirm"):
        _write_run(run, [t for p, t in trials if p == phase], phase=phase,
                   baseline=SEARCH_BASELINE if phase == "search" else None)
    out = build_report(run).parent
    md = (out / "report.md").read_text()
    headline = md.split("## ")[0]
    assert "Winner: lr=0.008818, the best of 2" in headline and "baseline: lr=0.01," in headline
    assert "| lr=0.01564 |" in headline and "0.0088183" not in headline
    ranked = pd.read_csv(out / "confirm_ranked.csv")
    assert set(ranked["group"]) == {"lr=0.01", "lr=0.008818300261327749", "lr=0.015644898162645162"}
    # the rest of the page reads the same way: the groups, trials and comparison tables, the "Best group" line
    assert "0.0088183" not in md and "0.015644" not in md
    sections = dict(part.split("\n", 1) for part in md.split("\n## ")[1:])
    groups = sections["Groups (configuration without seed)"]
    assert "| lr=0.01564 | 4 |" in groups and "| lr=0.008818 | 4 |" in groups
    assert "| 0.008818 |" in sections["Trials"]
    assert "| best vs baseline | lr=0.008818 | lr=0.01 |" in md
    assert "Best group (chosen on validation): lr=0.01564:" in md
    assert set(pd.read_csv(out / "groups.csv")["group"]) == set(ranked["group"])  # the CSVs stay exact
    # and so do the figures' legends, in the same digits as the tables: the curves, the Pareto plot's winner
    assert "lr=0.008818" in legends and "confirmed winner: lr=0.008818" in legends, legends
    assert not [t for t in legends if "0.0088183" in t or "0.015644" in t], legends
