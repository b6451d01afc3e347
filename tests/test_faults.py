"""Trial failures through real Ray Tune: an exception is retried up to --max-failures and then recorded with its
message, a diverging trial stops with stop_reason = diverged, and the other trials of the sweep finish."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pytest

from helpers import ONE_SLOT
from sweeps.runner import Study, run_study
from trainables.config import TrialConfig

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class FaultConfig(TrialConfig):
    mode: str = field(default="ok", metadata={"choices": ("ok", "raise", "diverge")})
    seed: int = 0


def test_exceptions_retry_then_record_and_divergence_stops(tmp_path, capfd, monkeypatch):
    for name, value in ONE_SLOT.items():  # the trials one at a time (tests/helpers.py)
        monkeypatch.setenv(name, value)
    attempts_dir = str(tmp_path / "attempts")

    # Defined here, not at module level: Ray ships a local function by value (tests/ is not importable there).
    def trainable(config, data=None):
        import os
        import uuid

        import torch
        from torch import nn

        from trainables.loop import MemoryReporter, TuneReporter, fit

        if config["mode"] == "ok":
            import sys
            print("a line the trial prints", file=sys.stderr, flush=True)
        os.makedirs(attempts_dir, exist_ok=True)
        open(os.path.join(attempts_dir, f"{config['mode']}-{uuid.uuid4().hex}"), "w").close()
        torch.manual_seed(0)
        x = torch.randn(64, 2) * (1e6 if config["mode"] == "diverge" else 1)
        y = (x[:, 0] > 0).long()
        model = nn.Linear(2, 2)
        lr = 1e30 if config["mode"] == "diverge" else 0.1
        to_tune = reporter = TuneReporter()
        if config["mode"] == "raise":
            class Boom(MemoryReporter):  # report epoch 1 to Tune, then fail in epoch 2 on every attempt
                def report(self, metrics, state, arrays=None):
                    if metrics["epoch"] == 2:
                        raise RuntimeError("injected failure in epoch 2")
                    to_tune.report(metrics, state, arrays)
            reporter = Boom()
        fit(model, torch.optim.SGD(model.parameters(), lr=lr), None, train=(x, y), tests={"test": (x, y)},
            epochs=4, batch_size=16, seed=0, device=torch.device("cpu"), reporter=reporter)

    study = Study(name="faults", doc=None, trainable=trainable, config_cls=FaultConfig,
                  defaults={"mode": ["ok", "raise", "diverge"]}, load_data=lambda data_dir: None)
    code = run_study(study, ["--out", str(tmp_path / "run"), "--max-failures", "1", "--no-report"])
    assert code == 1  # one trial failed for good; the sweep still ran the others to the end
    out = capfd.readouterr()
    said = [line for line in (out.out + out.err).splitlines() if line.startswith("trial ")]
    assert sorted(said)[1].startswith("trial 00001 failed after 1 epoch(s): RuntimeError: injected failure"), said
    assert "ended (diverged) at epoch 1 ·" in sorted(said)[2], said
    assert "Traceback" not in out.out + out.err and "from checkpoint: Checkpoint(" not in out.out + out.err
    # a trial's own output reaches the driver, its "(trainable pid=...)" prefix without colour codes off a terminal
    printed = [line for line in out.err.splitlines() if line.endswith("a line the trial prints")]
    assert printed and not any("\x1b[" in line for line in printed), printed

    df = pd.read_parquet(tmp_path / "run" / "logs")
    by_mode = {mode: g.sort_values("epoch") for mode, g in df.groupby("config/mode")}
    ok, raised, diverged = by_mode["ok"], by_mode["raise"], by_mode["diverge"]
    assert ok["epoch"].tolist() == [1, 2, 3, 4] and set(ok["stop_reason"]) == {"completed"}
    assert raised["epoch"].tolist() == [1] and set(raised["status"]) == {"error"}
    assert set(raised["stop_reason"]) == {"error"}
    assert raised["error"].iloc[0].endswith("RuntimeError: injected failure in epoch 2")
    assert raised["failures"].iloc[0] == 2  # the first try and one retry
    assert len(list((tmp_path / "attempts").glob("raise-*"))) == 2
    assert set(diverged["stop_reason"]) == {"diverged"} and set(diverged["status"]) == {"terminated"}
    assert len(diverged) < 4
    assert not df.duplicated(["trial_id", "epoch"]).any()
