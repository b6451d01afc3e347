"""The shared loop: metric dicts that match a direct computation, thread pinning, and exact resume."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trainables.loop import MemoryReporter, evaluate, evaluate_splits, fit, pin_threads, train_one_epoch

CPU = torch.device("cpu")


def blobs(n=200, seed=0):
    """Two separable Gaussian blobs in 2-D: a linear model learns them in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 2, generator=g) * 0.5 + (y[:, None] * 2 - 1) * 2.0
    return x, y


def test_evaluate_matches_direct_computation():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    x, y = blobs(250)
    m = evaluate(model, x, y, batch_size=64, device=CPU)  # 250 is not a multiple of 64: the last batch counts
    logits = model(x)
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert m["acc"] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_train_one_epoch_returns_metrics_and_learns():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    x, y = blobs()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = evaluate(model, x, y, device=CPU)
    history = [train_one_epoch(model, x, y, opt, batch_size=16, generator=torch.Generator().manual_seed(e),
                               device=CPU) for e in range(5)]
    assert set(history[0]) == {"loss", "acc"}
    assert all(0.0 <= h["acc"] <= 1.0 for h in history)
    assert history[-1]["loss"] < history[0]["loss"]
    after = evaluate(model, x, y, device=CPU)
    assert after["loss"] < before["loss"] and after["acc"] >= 0.95


def test_evaluate_splits_combines_by_count():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    a, b = blobs(100, 1), blobs(300, 2)
    m = evaluate_splits(model, {"clean": a, "zoom": b}, device=CPU)
    whole = evaluate(model, torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]), device=CPU)
    assert m["test_acc"] == pytest.approx(whole["acc"])
    assert m["test_loss"] == pytest.approx(whole["loss"], rel=1e-5)
    assert {"test_acc/clean", "test_acc/zoom", "test_loss/clean", "test_loss/zoom"} <= set(m)
    assert set(evaluate_splits(model, {"test": a}, device=CPU)) == {"test_loss", "test_acc"}


def test_pin_threads():
    before = torch.get_num_threads()
    try:
        assert pin_threads(1.0) == 1 and torch.get_num_threads() == 1
        assert pin_threads(0.25) == 1  # a fractional CPU share still needs one thread
        assert pin_threads(None) == torch.get_num_threads()  # outside a trial: unchanged
    finally:
        torch.set_num_threads(before)


class ResumeFrom(MemoryReporter):
    def __init__(self, state):
        super().__init__()
        self.state = state

    def restore(self):
        return self.state


class KeepStates(MemoryReporter):
    def __init__(self):
        super().__init__()
        self.states = []

    def report(self, metrics, state, arrays=None):
        super().report(metrics, state, arrays)
        self.states.append(copy.deepcopy(state))


def _run(reporter, epochs=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Dropout(0.3), nn.Linear(8, 2))  # dropout: the RNG state matters
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, 2, 0.5)
    x, y = blobs()
    fit(model, opt, sched, train=(x, y), tests={"test": blobs(100, 9)}, epochs=epochs, batch_size=32, seed=7,
        device=CPU, reporter=reporter)
    return model


def test_fit_reports_every_epoch_and_resumes_exactly():
    full = KeepStates()
    model_full = _run(full)
    assert [r["epoch"] for r in full.rows] == [1, 2, 3, 4]
    assert [r["lr"] for r in full.rows] == [0.05, 0.05, 0.025, 0.025]  # StepLR(2, 0.5) applied per epoch
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds"):
        assert all(isinstance(r[key], float) for r in full.rows)

    resumed = ResumeFrom(full.states[1])  # as if the trial died after epoch 2
    model_resumed = _run(resumed)
    assert [r["epoch"] for r in resumed.rows] == [3, 4]
    assert resumed.rows[-1]["test_loss"] == pytest.approx(full.rows[-1]["test_loss"], rel=1e-6)
    for p, q in zip(model_full.parameters(), model_resumed.parameters()):
        torch.testing.assert_close(p, q)


def test_non_finite_loss_ends_the_run_as_diverged():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    x, y = blobs()
    opt = torch.optim.SGD(model.parameters(), lr=1e30)  # overflows to inf, then NaN
    rep = MemoryReporter()
    fit(model, opt, None, train=(x * 1e6, y), tests={"test": blobs(50, 3)}, epochs=10, batch_size=8, seed=0,
        device=CPU, reporter=rep)
    assert len(rep.rows) < 10
    assert rep.rows[-1]["stop_reason"] == "diverged" and not math.isfinite(rep.rows[-1]["train_loss"])
    assert all("stop_reason" not in r for r in rep.rows[:-1])
