"""Tune's snapshot kept whole (sweeps/tune_state.py): a file cut short by a driver killed while Tune copied its
snapshot is put back from the intact copy, a cut file with no copy is one clear error, and a restore Tune cannot
do is an error rather than a silent fresh start. The end-to-end case (a killed search whose searcher state is
empty resumes and finishes) is tests/test_search_resume.py.

    python -m pytest tests/test_tune_state.py -q
"""
from __future__ import annotations

import json
import pickle

import pytest

from sweeps.tune_state import COPY, RestoreFailed, SnapshotCopy, intact, refuse_restart, repair, write_copy
from trainables.errors import UserError


def _snapshot(folder, session: str, step: int) -> dict[str, bytes]:
    """The three files of a search's snapshot at `step`, as Tune names them."""
    files = {f"experiment_state-{session}.json": json.dumps({"trial_data": [], "step": step}).encode(),
             f"search_gen_state-{session}.json": pickle.dumps({"counter": step, "live": list(range(step))}),
             f"searcher-state-{session}.pkl": pickle.dumps({"trials": {f"t{i}": i for i in range(step)}})}
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_whole_files_are_told_from_cut_ones():
    data = pickle.dumps({"a": list(range(100)), "b": "x" * 50})
    assert intact(data) and intact(json.dumps({"a": [1, 2]}).encode())
    assert not intact(b"")
    assert not any(intact(data[:n]) for n in range(1, len(data)))
    text = json.dumps({"trial_data": [[1, 2]]}).encode()
    assert not any(intact(text[:n]) for n in range(1, len(text)))


def test_a_cut_file_brings_back_the_whole_snapshot_from_the_copy(tmp_path):
    experiment = tmp_path / "tune"
    newer = _snapshot(tmp_path / "staging", "2026-12-01_10-00-00", step=5)
    experiment.mkdir()
    write_copy(tmp_path / "staging", experiment / COPY)
    # the kill: the experiment state is still the previous snapshot's, the searcher's state was being copied
    older = _snapshot(experiment, "2026-12-01_10-00-00", step=4)
    searcher = experiment / "searcher-state-2026-12-01_10-00-00.pkl"
    searcher.write_bytes(older[searcher.name][:7])
    notes = repair(experiment)
    assert notes == [f"note: {searcher} was cut off when the driver stopped; put back from the intact copy of "
                     f"Tune's last snapshot"]
    assert {name: (experiment / name).read_bytes() for name in newer} == newer  # one snapshot, all of it


def test_whole_files_are_left_alone(tmp_path):
    experiment = tmp_path / "tune"
    _snapshot(tmp_path / "staging", "2026-12-01_10-00-00", step=5)
    experiment.mkdir()
    write_copy(tmp_path / "staging", experiment / COPY)
    older = _snapshot(experiment, "2026-12-01_10-00-00", step=4)
    assert repair(experiment) == []
    assert {name: (experiment / name).read_bytes() for name in older} == older


def test_only_the_files_tune_reads_count(tmp_path):
    """Tune reads the newest file of each kind: an older session's cut file is not in the way."""
    experiment = tmp_path / "tune"
    _snapshot(experiment, "2026-12-01_10-00-00", step=3)
    (experiment / "searcher-state-2026-12-01_10-00-00.pkl").write_bytes(b"")
    newest = _snapshot(experiment, "2026-12-01_11-00-00", step=4)
    assert repair(experiment) == []
    assert all((experiment / name).read_bytes() == data for name, data in newest.items())


def test_the_copy_is_kept_before_any_trial_starts(tmp_path, monkeypatch):
    """Tune's first snapshot comes before the first trial: the callback finds the staging folder in the Ray
    session's artifacts by the experiment's name, and copies what is there."""
    import ray.train.constants

    session = tmp_path / "session" / "artifacts"
    _snapshot(session / "2026-12-01_09-00-00" / "tune-confirm" / "driver_artifacts", "2026-12-01_09-00-00", 1)
    files = _snapshot(session / "2026-12-01_10-00-00" / "tune" / "driver_artifacts", "2026-12-01_10-00-00", 2)
    monkeypatch.setattr(ray.train.constants, "_get_ray_train_session_dir", lambda: str(session))
    experiment = tmp_path / "run" / "tune"
    experiment.mkdir(parents=True)
    assert SnapshotCopy(experiment).get_state() is None  # nothing for Tune to save of its own
    (experiment / "searcher-state-2026-12-01_10-00-00.pkl").write_bytes(b"")
    repair(experiment)
    assert all((experiment / name).read_bytes() == data for name, data in files.items())


def test_a_cut_file_without_a_copy_is_one_clear_error(tmp_path):
    experiment = tmp_path / "run" / "tune"
    _snapshot(experiment, "2026-12-01_10-00-00", step=3)
    (experiment / "search_gen_state-2026-12-01_10-00-00.json").write_bytes(b"")
    with pytest.raises(UserError) as err:
        repair(experiment)
    text = str(err.value)
    assert "search_gen_state-2026-12-01_10-00-00.json" in text and "--out NEW_DIR" in text and "\n" not in text
    (experiment / COPY).write_bytes(b"not a tar file")  # a damaged copy is no copy
    with pytest.raises(UserError):
        repair(experiment)


def test_a_restore_tune_cannot_do_is_an_error_not_a_fresh_start(tmp_path):
    """A real Tune experiment whose search state loads as an error: Tune would log it and run every trial again
    from scratch; the runner's filter makes Tuner.fit raise instead, with the cause, and runs nothing."""
    import ray
    from ray import tune

    from sweeps.runner import start_ray, stop_ray

    ran = tmp_path / "ran"
    ran.mkdir()

    def trainable(config):
        (ran / f"{config['x']}-{len(list(ran.iterdir()))}").touch()
        tune.report({"score": config["x"]})

    start_ray(None)
    try:
        tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2])},
                   run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path), verbose=0)).fit()
        assert len(list(ran.iterdir())) == 2
        state = max((tmp_path / "exp").glob("basic-variant-state-*.json"))
        # whole, so repair() leaves it, but it names a module that does not exist
        state.write_bytes(b"\x80\x02cno_such_module\nX\n.")
        assert intact(state.read_bytes())
        refuse_restart()
        tuner = tune.Tuner.restore(str(tmp_path / "exp"), trainable=trainable, resume_errored=True)
        with pytest.raises(RestoreFailed, match="no_such_module"):
            tuner.fit()
        assert len(list(ran.iterdir())) == 2  # nothing ran again
    finally:
        stop_ray()
        assert not ray.is_initialized()
