"""Optuna search sweeps through real Ray Tune: the baseline first, ASHA-stopped trials PRUNED in the SQLite study
and 'asha' in the logs, the report of each smoke search (tradeoff sections, the enqueued baseline, the
early-stopping audit). A killed search resumed from its checkpoints without duplicate trials: test_search_resume.py."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers import ONE_SLOT, SEARCHED, check_study_agrees_with_logs, run_cli, SWEEP_TIMEOUT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["stn_search", "transfer_search"])
def smoke_search(request, mnist_dir, tmp_path_factory):
    """(script, RUN_DIR, the finished process) of each search script's smoke test, run once for the tests below."""
    run = tmp_path_factory.mktemp(request.param) / "RUN"
    proc = run_cli(f"sweeps/{request.param}.py", "--smoke-test", "--data-dir", str(mnist_dir), "--out", str(run),
                   env=ONE_SLOT, timeout=SWEEP_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return request.param, run, proc


def test_smoke_search_prunes_what_asha_stopped(smoke_search):
    script, run, _ = smoke_search
    study, per_trial = check_study_agrees_with_logs(run, 4)
    baseline = {"stn_search": {"batch_size": 64, "lr": 0.01, "lr_step": 0},
                "transfer_search": {"batch_size": 4, "lr": 0.001, "lr_step": 7}}[script]
    assert study.trials[0].params == baseline  # the original study's configuration, enqueued first
    assert "asha" in set(per_trial["stop_reason"])  # grace 1, factor 2 over 4 trials always stops some
    # the baseline runs its whole budget, whatever ASHA thinks of it, so the report compares against it as published
    base = per_trial[(per_trial["batch_size"] == baseline["batch_size"]) & (per_trial["lr"] == baseline["lr"])
                     & (per_trial["lr_step"] == baseline["lr_step"])]
    budget = int(pd.read_parquet(run / "logs")["config/epochs"].max())
    assert len(base) == 1 and base["stop_reason"].iloc[0] == "completed" and base["epochs"].iloc[0] == budget
    # searched and stopped on the validation split, logged beside the test metrics
    logs = pd.read_parquet(run / "logs")
    assert logs["val_acc"].between(0, 1).all() and logs["test_acc"].between(0, 1).all()
    # the confirm phase (smoke: 1,2): the best searched configuration by validation and the baseline, on two new
    # seeds each, the whole budget, no early stopping
    confirm = logs[logs["phase"] == "confirm"].groupby("trial_id").agg(
        **{p: (f"config/{p}", "first") for p in SEARCHED}, seed=("config/seed", "first"),
        stop_reason=("stop_reason", "last"), epochs=("epoch", "max"))
    assert len(confirm) == 4 and sorted(confirm["seed"]) == [1, 1, 2, 2]
    assert (confirm["epochs"] == budget).all() and set(confirm["stop_reason"]) == {"completed"}
    # the best by validation accuracy; of trials tied on it (smoke trials often are), the lowest validation loss
    search = logs[(logs["phase"] == "search") & (logs["trial_id"] != base.index[0])]
    ranked = search.groupby("trial_id").agg(acc=("val_acc", "max"), loss=("val_loss", "min"),
                                             **{p: (f"config/{p}", "first") for p in SEARCHED})
    best_by_val = ranked.assign(neg=-ranked["acc"]).sort_values(["neg", "loss"]).iloc[0]
    configs = {tuple(row) for row in confirm[list(SEARCHED)].itertuples(index=False)}
    assert configs == {tuple(baseline[p] for p in SEARCHED), tuple(best_by_val[p] for p in SEARCHED)}


def test_report_on_a_real_smoke_search(smoke_search):
    script, run, _ = smoke_search
    out = run / "report"
    md = (out / "report.md").read_text()
    logs = pd.read_parquet(run / "logs")
    assert logs["gpus"].notna().all() and logs["cpus"].notna().all()  # the runner passed its resources
    for title in ("## Tradeoff: accuracy against epochs and compute", "## Pareto front", "## Isolation plots",
                  "## When trials reach their best", "## Early-stopping audit"):
        assert title in md
    assert "the first configuration in sweep.json" in md  # the search's enqueued baseline
    comp = pd.read_csv(out / "comparison.csv").set_index("comparison")
    baseline = {"stn_search": "batch_size=64, lr=0.01, lr_step=0",
                "transfer_search": "batch_size=4, lr=0.001, lr_step=7"}[script]
    assert comp.loc["best vs baseline", "reference group"] == baseline
    audit = pd.read_csv(out / "audit.csv", dtype={"trial_id": str})  # Ray ids can be all digits
    stopped = logs.groupby("trial_id").agg(reason=("stop_reason", "last"), epochs=("epoch", "max"))
    assert sorted(audit["trial_id"]) == sorted(stopped.index[stopped["reason"] == "asha"])
    budget = int(logs["config/epochs"].max())
    assert (audit["epochs_saved"] == budget - audit["stop_epoch"]).all()
    assert " failed\n" not in md


def test_the_terminal_ends_with_the_reports_headline(smoke_search):
    _, run, proc = smoke_search
    md = (run / "report" / "report.md").read_text()
    headline = next(line for line in md.splitlines() if line.startswith("> tuned vs baseline"))[2:]
    lines = proc.stdout.splitlines()
    assert headline in lines and lines.index(headline) > lines.index(f"report: {run / 'report' / 'index.html'}")
    assert headline.startswith("tuned vs baseline: ")  # from the confirm phase: not the search's optimistic one
    winner = lines[lines.index(headline) + 1]  # then what won, by how much, on the confirm seeds
    assert winner.startswith("winner: ") and "fresh seed(s), against the baseline's " in winner


def test_optunas_routine_messages_stay_off_the_terminal(smoke_search):
    """Optuna logs "[I <time>] A new study created ..." at INFO through its own child loggers; without --verbose
    the terminal shows the progress view, not that."""
    _, _, proc = smoke_search
    chatter = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("[I ")]
    assert chatter == []


def test_the_terminal_names_the_best_search_trial_by_what_varied(smoke_search):
    """The summary's "best" line: the search's best validation epoch, the test accuracy there, and only the keys
    the search varied (not every constant of the study)."""
    script, run, proc = smoke_search
    line = next(line for line in proc.stdout.splitlines() if line.startswith("best val_acc "))
    df = pd.read_parquet(run / "logs")
    search = df[df["phase"] == "search"]
    top = search.loc[search["val_acc"].idxmax()]
    assert line.startswith(f"best val_acc {100 * top.val_acc:.1f}% at epoch {top.epoch} of the search's trial "
                           f"{top.trial_id} (test_acc {100 * top.test_acc:.1f}% there): ")
    shown = dict(part.split("=") for part in line.split("): ", 1)[1].split(", "))
    assert set(shown) == {"batch_size", "lr", "lr_step"}  # what the search varied; seed 0 throughout
    assert shown["lr"] == f"{top['config/lr']:.4g}"  # readable, not the sampler's 17 digits
    assert shown["batch_size"] == str(int(top["config/batch_size"]))
