"""Checkpoints that fail to load are skipped, not retried: each one is reported in one line (trial, folder, why)
and the trial resumes from the newest older checkpoint that loads, or from scratch when none does.

These tests drive the fallback on checkpoint folders written here; tests/test_search_resume.py kills a real search,
truncates the checkpoint Tune's snapshot names and resumes it through the command line.

    pytest tests/test_checkpoints.py
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from trainables.loop import (RESTORE_NOTES, STATE_FILE, MemoryReporter, TuneReporter, UnreadableCheckpoint, fit,
                             load_state, newest_readable_state, older_checkpoints)

CPU = torch.device("cpu")


def write_checkpoint(trial_dir: Path, index: int, epoch: int) -> Path:
    d = trial_dir / f"checkpoint_{index:06d}"
    d.mkdir(parents=True)
    torch.save({"model": {"w": torch.full((256,), float(epoch))}, "rng": torch.get_rng_state(), "epoch": epoch},
               d / STATE_FILE)
    return d


def truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def flip_tensor_byte(file: Path) -> None:
    """Damage one byte of a tensor's data: torch.load alone would load it as a wrong number."""
    data = bytearray(file.read_bytes())
    at = data.index(b"\x00\x00\x80\x3f" * 4)  # float32 1.0, repeated: inside the epoch-1 tensor's record
    data[at + 2] ^= 0xFF
    file.write_bytes(bytes(data))


DAMAGE = {
    "missing": lambda f: f.unlink(),
    "empty": lambda f: f.write_bytes(b""),
    "truncated": truncate,
    "garbage": lambda f: f.write_bytes(os.urandom(4096)),
    "bit flip": flip_tensor_byte,
    "no epoch": lambda f: torch.save({"model": {}}, f),
    "not a dict": lambda f: torch.save(torch.zeros(3), f),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_load_state_refuses_a_damaged_state_file(tmp_path, damage):
    d = write_checkpoint(tmp_path, 0, epoch=1)
    assert load_state(d)["epoch"] == 1
    DAMAGE[damage](d / STATE_FILE)
    with pytest.raises(UnreadableCheckpoint):
        load_state(d)


def test_truncated_newest_falls_back_to_the_older_one_with_one_line(tmp_path):
    dirs = [write_checkpoint(tmp_path, i, epoch=i + 1) for i in range(3)]
    truncate(dirs[2] / STATE_FILE)
    lines: list[str] = []
    path, state = newest_readable_state([dirs[1], dirs[2], dirs[0]], trial="t_00000", say=lines.append)
    assert path == dirs[1] and state["epoch"] == 2 and torch.equal(state["model"]["w"], torch.full((256,), 2.0))
    assert len(lines) == 1
    assert "t_00000" in lines[0] and str(dirs[2]) in lines[0] and "truncated" in lines[0]
    assert "resuming from checkpoint_000001 (epoch 2)" in lines[0]


def test_every_checkpoint_unreadable_means_from_scratch(tmp_path):
    dirs = [write_checkpoint(tmp_path, i, epoch=i + 1) for i in range(3)]
    for d, damage in zip(dirs, ["garbage", "empty", "truncated"]):
        DAMAGE[damage](d / STATE_FILE)
    lines: list[str] = []
    assert newest_readable_state(dirs, trial="t", say=lines.append) is None
    assert [str(d) in line for line, d in zip(lines, dirs[::-1])] == [True] * 3  # newest first, one line each
    assert "starting from epoch 1" in lines[-1]
    assert newest_readable_state([], say=lines.append) is None and len(lines) == 3  # nothing to skip: no line


def test_older_checkpoints_are_the_smaller_indices_beside_it(tmp_path):
    dirs = [write_checkpoint(tmp_path, i, epoch=i + 1) for i in range(4)]
    (tmp_path / "checkpoint_tmp").mkdir()  # not a Tune checkpoint name
    (tmp_path / "result.json").write_text("")
    assert sorted(older_checkpoints(dirs[2])) == dirs[:2]  # a newer folder was never in Tune's snapshot


def test_tune_reporter_restore_skips_the_bad_checkpoint_on_every_attempt(tmp_path, monkeypatch):
    """What Tune's retries do: hand the same (bad) checkpoint to each new attempt; each one falls back, none fails."""
    from ray import tune

    dirs = [write_checkpoint(tmp_path, i, epoch=i + 1) for i in range(3)]
    truncate(dirs[1] / STATE_FILE)
    write_checkpoint(tmp_path, 3, epoch=4)  # newer than the one Tune names: left alone
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(dirs[1]))
    for _attempt in range(3):
        assert TuneReporter().restore()["epoch"] == 1


def test_tune_reporter_sends_what_restore_skipped_with_its_next_result(tmp_path, monkeypatch, capsys):
    """The skipped checkpoint's line travels in the first result after the restore (results always reach the
    driver; a trial's stderr may not), once, and not on the trial's stderr as well."""
    from ray import tune

    dirs = [write_checkpoint(tmp_path, i, epoch=i + 1) for i in range(2)]
    truncate(dirs[1] / STATE_FILE)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(dirs[1]))
    sent = []
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: sent.append(metrics))
    reporter = TuneReporter()
    assert reporter.restore()["epoch"] == 1
    reporter.report({"epoch": 2}, {"epoch": 2, "model": {}})
    reporter.report({"epoch": 3}, {"epoch": 3, "model": {}})
    notes = sent[0][RESTORE_NOTES].splitlines()
    assert len(notes) == 1 and str(dirs[1]) in notes[0] and "resuming from checkpoint_000000 (epoch 1)" in notes[0]
    assert RESTORE_NOTES not in sent[1]
    assert capsys.readouterr().err == ""


def test_the_driver_prints_a_results_restore_notes_on_stderr(capsys):
    from sweeps.console import RestoreNotes

    RestoreNotes().on_trial_result(0, [], None, {"epoch": 2, RESTORE_NOTES: "warning: one\nwarning: two"})
    RestoreNotes().on_trial_result(0, [], None, {"epoch": 3})
    assert capsys.readouterr().err.splitlines() == ["warning: one", "warning: two"]


def test_tune_reporter_refuses_a_state_without_an_epoch():
    with pytest.raises(ValueError, match="epoch"):
        TuneReporter().report({"epoch": 1}, {"model": {}})


class DiskReporter(MemoryReporter):
    """Checkpoints like TuneReporter into trial_dir/checkpoint_N (N counting on, as Tune's index does) and
    restores through the fallback."""

    def __init__(self, trial_dir: Path):
        super().__init__()
        self.trial_dir = trial_dir

    def restore(self):
        found = newest_readable_state(self.trial_dir.glob("checkpoint_*"), say=lambda line: None)
        return None if found is None else found[1]

    def report(self, metrics, state, arrays=None):
        super().report(metrics, state, arrays)
        d = self.trial_dir / f"checkpoint_{len(list(self.trial_dir.glob('checkpoint_*'))):06d}"
        d.mkdir(parents=True)
        torch.save(state, d / STATE_FILE)


def test_fit_resumed_after_a_fallback_matches_an_uninterrupted_run(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 2, generator=g)
    y = (x[:, 0] > 0).long()

    def run(reporter, epochs):
        torch.manual_seed(0)
        model = nn.Linear(2, 2)
        fit(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), None, train=(x, y),
            tests={"test": (x, y)}, epochs=epochs, batch_size=16, seed=3, device=CPU, reporter=reporter)
        return model

    whole = run(MemoryReporter(), 4)
    run(DiskReporter(tmp_path), 3)
    truncate(tmp_path / "checkpoint_000002" / STATE_FILE)  # epoch 3's state
    resumed = DiskReporter(tmp_path)
    model = run(resumed, 4)
    assert [r["epoch"] for r in resumed.rows] == [3, 4]  # from epoch 2's checkpoint
    for a, b in zip(whole.parameters(), model.parameters()):
        assert torch.equal(a, b)
