"""The feature pass's chunks on disk (sweeps/features.py): a pass resumed from its saved chunks computes the same
features as one that ran through, and RUN_DIR/features only ever hands back whole, matching chunks.

    python -m pytest tests/test_feature_store.py -q

The task function is called in this process (it is a plain generator; the sweep runs it as a Ray task), then the
driver's `cached_features` through a local Ray; tests/test_e2e_transfer.py interrupts a real sweep in its feature
pass and resumes it.
"""
from __future__ import annotations

import dataclasses
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sweeps.features import Chunk, FeatureStore, Finished, Progress, _task
from trainables.transfer import FeatureSet, TransferConfig, feature_jobs

KEY = "resnet18|none|32|fp32"
# the GCS declares a killed node dead after a second or two instead of Ray's default tens of seconds
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}


@pytest.fixture(scope="module")
def job(mnist):
    """A pass of 150 images: two whole CPU batches of 64 and a partial one."""
    cfg = TransferConfig(model="resnet18", weights="none", image_size=32, train_per_class=10, val_per_class=0,
                         test_limit=50)
    (idx, n_test), = feature_jobs(mnist, [cfg], "cpu").values()
    assert len(idx) + n_test == 150
    return idx, n_test


def run_task(mnist, job, start=0, before=None):
    """Every item the task yields, in order; chunk_s=0: a chunk after every batch."""
    idx, n_test = job
    torch.set_num_threads(1)  # what pin_threads gives a 1-CPU task; both runs alike
    return list(_task(KEY, mnist, idx, n_test, cpus=None, gpus=0, start=start, before=before, chunk_s=0.0))


def test_a_resumed_pass_computes_the_same_features_as_an_uninterrupted_one(mnist, job):
    whole = run_task(mnist, job)
    chunks = [c for c in whole if isinstance(c, Chunk)]
    assert [(c.start, len(c.features)) for c in chunks] == [(0, 64), (64, 64), (128, 22)]
    assert isinstance(whole[-2], Finished) and whole[-2].total == 150 and whole[-2].dim == 512
    full = whole[-1]
    assert isinstance(full, FeatureSet) and full.key == KEY
    assert torch.equal(torch.cat([full.train, full.test]), torch.from_numpy(np.concatenate([c.features for c in chunks])))

    resumed = run_task(mnist, job, start=64, before=torch.from_numpy(chunks[0].features))
    again = [c for c in resumed if isinstance(c, Chunk)]
    assert [(c.start, len(c.features)) for c in again] == [(64, 64), (128, 22)]  # only the rest is computed
    assert all(p.done > 64 for p in resumed if isinstance(p, Progress))
    last = resumed[-1]
    assert torch.equal(last.train, full.train) and torch.equal(last.test, full.test)
    assert torch.equal(last.train_index, full.train_index)


def test_the_store_hands_back_whole_chunks_from_the_first_image_on(mnist, job, tmp_path):
    idx, n_test = job
    store = FeatureStore(tmp_path, KEY, mnist, idx, n_test)
    assert store.load() is None
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 8)).astype(np.float32) for n in (64, 64, 22)]
    store.save(Chunk(0, parts[0], 1.0))
    store.save(Chunk(128, parts[2], 3.0))  # after a gap: not used until the gap is filled
    np.testing.assert_array_equal(store.load(), parts[0])
    store.save(Chunk(64, parts[1], 2.0))
    np.testing.assert_array_equal(store.load(), np.concatenate(parts))
    assert not list(store.dir.glob(".*"))  # atomic writes leave no temporary files

    # a chunk cut short (a full disk, a killed writer) ends what is read: the pass recomputes from there
    path = store.dir / f"{64:08d}.npy"
    path.write_bytes(path.read_bytes()[:200])
    np.testing.assert_array_equal(store.load(), parts[0])
    path.write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(store.load(), parts[0])


def test_other_images_weights_or_dtypes_never_share_a_pass(mnist, job, tmp_path):
    idx, n_test = job
    here = FeatureStore(tmp_path, KEY, mnist, idx, n_test).dir
    assert FeatureStore(tmp_path, KEY, mnist, idx, n_test).dir == here  # the same pass, found again
    assert FeatureStore(tmp_path, KEY, mnist, idx[:-1], n_test).dir != here
    assert FeatureStore(tmp_path, KEY, mnist, idx, n_test - 1).dir != here
    assert FeatureStore(tmp_path, "resnet18|none|32|bf16", mnist, idx, n_test).dir != here
    assert FeatureStore(tmp_path, "resnet18|imagenet|32|fp32", mnist, idx, n_test).dir != here
    # a weights file: its contents (size and time) are part of the pass
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"1")
    first = FeatureStore(tmp_path, f"resnet18|{weights}|32|fp32", mnist, idx, n_test).dir
    weights.write_bytes(b"22")
    assert FeatureStore(tmp_path, f"resnet18|{weights}|32|fp32", mnist, idx, n_test).dir != first
    # the same indices into other images (another data folder)
    other = dataclasses.replace(mnist, train_images=mnist.train_images.flip(0))
    assert FeatureStore(tmp_path, KEY, other, idx, n_test).dir != here


@pytest.mark.slow
def test_the_driver_reads_a_finished_pass_back_and_resumes_a_cut_one(mnist, tmp_path, monkeypatch, capsys):
    """`cached_features` through a real local Ray, three times on one RUN_DIR: the pass computed and kept; read back
    whole with no task run; its last chunk lost, computed again from there. The trials get the same features."""
    import ray

    from sweeps.features import cached_features

    cfg = TransferConfig(model="resnet18", weights="none", image_size=32, train_per_class=10, val_per_class=0,
                         test_limit=50)
    args = SimpleNamespace(out=tmp_path)
    monkeypatch.setenv("SWEEPS_FEATURE_CHUNK_S", "0")  # a chunk per batch: 64, 64, 22 images

    def run():
        refs = cached_features(mnist, [cfg], {"cpu": 1, "gpu": 0}, args)["features"]
        fs = ray.get(refs[cfg.feature_key])
        passes = json.loads((tmp_path / "features.json").read_text())["passes"]
        return torch.cat([fs.train, fs.test]), passes, capsys.readouterr().out

    # what features.json holds as each chunk is about to be written: all a driver killed there would leave
    seen, save = [], FeatureStore.save

    def spy(self, chunk):
        path = tmp_path / "features.json"
        seen.append(json.loads(path.read_text())["passes"] if path.exists() else None)
        save(self, chunk)

    monkeypatch.setattr(FeatureStore, "save", spy)

    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        whole, passes, out = run()
        assert len(passes) == 1 and passes[0]["images"] == 150 and passes[0]["complete"] is True
        # the pass's one entry, brought up to date after each chunk: the seconds behind the chunks on disk survive
        assert seen[0] is None and [[(p["images"], p["complete"]) for p in s] for s in seen[1:]] == \
            [[(64, False)], [(128, False)]]
        assert 0 < seen[1][0]["seconds"] <= seen[2][0]["seconds"] <= passes[0]["seconds"]
        assert len({p["task"] for s in seen[1:] for p in s} | {passes[0]["task"]}) == 1
        chunks = sorted(tmp_path.glob("features/*/*.npy"))
        assert [p.name for p in chunks] == ["00000000.npy", "00000064.npy", "00000128.npy"]

        again, passes, out = run()
        assert "all 150 images read back" in out and len(passes) == 1  # no task, no compute recorded
        assert torch.equal(again, whole)

        chunks[-1].unlink()
        resumed, passes, out = run()
        assert "resuming at image 128 of 150" in out
        assert len(passes) == 2 and (passes[1]["resumed_at"], passes[1]["images"]) == (128, 22)
        assert torch.equal(resumed, whole)
    finally:
        ray.shutdown()


def test_the_bf16_note_is_for_a_long_local_cpu_pass_left_at_fp32_on_a_cpu_with_native_bf16(monkeypatch):
    from sweeps import features

    cfg = TransferConfig(model="resnet50", weights="none", image_size=224)
    monkeypatch.setattr(features, "cpu_has_native_bf16", lambda: True)
    assert "--feature-dtype bf16" in features.bf16_hint([cfg], "cpu", local=True)
    assert features.bf16_hint([cfg], "cuda", local=True) is None  # bf16 already, under auto
    assert features.bf16_hint([cfg], "cpu", local=False) is None  # the pass runs on some other node's CPU
    chosen = dataclasses.replace(cfg, feature_dtype="fp32")
    assert features.bf16_hint([chosen], "cpu", local=True) is None  # fp32 asked for by name
    assert features.bf16_hint([dataclasses.replace(cfg, image_size=32)], "cpu", local=True) is None  # short pass
    assert features.bf16_hint([dataclasses.replace(cfg, backbone_mode="tutorial")], "cpu", local=True) is None
    assert features.bf16_hint([chosen, cfg], "cpu", local=True) is not None
    monkeypatch.setattr(features, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower than fp32
    assert features.bf16_hint([cfg], "cpu", local=True) is None


def test_the_bf16_note_is_printed_before_the_pass(mnist, tmp_path, monkeypatch, capsys):
    import ray

    from sweeps import features

    monkeypatch.setattr(features, "cpu_has_native_bf16", lambda: True)
    cfg = TransferConfig(model="resnet18", weights="none", image_size=64, train_per_class=1, val_per_class=0,
                         test_limit=10)
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        features.cached_features(mnist, [cfg], {"cpu": 1, "gpu": 0}, SimpleNamespace(out=tmp_path, address=None))
        out = capsys.readouterr().out
        assert out.count("note: this CPU computes bf16 natively") == 1
        # read back whole by a second run: nothing left to compute, nothing to say
        features.cached_features(mnist, [cfg], {"cpu": 1, "gpu": 0}, SimpleNamespace(out=tmp_path, address=None))
        out = capsys.readouterr().out
        assert "read back" in out and "bf16 natively" not in out
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_feature_pass_whose_node_is_lost_stops_and_resumes_from_its_chunks(mnist, tmp_path, monkeypatch, capsys):
    """On a cluster (a head without CPUs and one worker) the worker dies after the pass's first chunk: the retried
    task can run nowhere, so after SWEEPS_NO_NODE_TIMEOUT_S `cached_features` raises NoNodeLeft instead of waiting
    for ever, keeping the chunks; with a worker back, the pass resumes after them."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    from sweeps.features import cached_features
    from sweeps.node_watch import NoNodeLeft

    # 150 images at 64 px through a ResNet50 on one CPU: seconds after the first chunk, time enough to lose the node
    cfg = TransferConfig(model="resnet50", weights="none", image_size=64, train_per_class=10, val_per_class=0,
                         test_limit=50)
    monkeypatch.setenv("SWEEPS_FEATURE_CHUNK_S", "0")  # a chunk per batch of 64
    monkeypatch.setenv("SWEEPS_NO_NODE_TIMEOUT_S", "2")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "_system_config": FAST_NODE_DEATH})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    args = SimpleNamespace(out=tmp_path, address=cluster.address)
    lost = threading.Event()

    def lose_the_worker_after_a_chunk():
        while not list(tmp_path.glob("features/*/*.npy")):
            time.sleep(0.05)
        cluster.remove_node(worker, allow_graceful=False)
        lost.set()

    ray.init(address=cluster.address, configure_logging=False, log_to_driver=False)
    try:
        threading.Thread(target=lose_the_worker_after_a_chunk, daemon=True).start()
        with pytest.raises(NoNodeLeft, match="for 2 s no node of the cluster could hold a waiting feature task "
                                             r"\(1 CPU, 0 GPU\), as after a lost node"):
            cached_features(mnist, [cfg], {"cpu": 1, "gpu": 0}, args)
        assert lost.is_set()
        kept = sum(len(np.load(p)) for p in tmp_path.glob("features/*/*.npy"))
        assert 0 < kept < 150
        err = capsys.readouterr().err
        assert f"{kept:,} of 150 images kept in" in err and "--resume starts there" in err
        first, = json.loads((tmp_path / "features.json").read_text())["passes"]
        assert first["complete"] is False and first["images"] >= kept and first["seconds"] > 0

        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        refs = cached_features(mnist, [cfg], {"cpu": 1, "gpu": 0}, args)["features"]
        assert f"resuming at image {kept:,} of 150" in capsys.readouterr().out
        fs = ray.get(refs[cfg.feature_key])
        assert len(fs.train) + len(fs.test) == 150
        passes = json.loads((tmp_path / "features.json").read_text())["passes"]
        assert len(passes) == 2 and (passes[1]["resumed_at"], passes[1]["complete"]) == (kept, True)
    finally:
        ray.shutdown()
        cluster.shutdown()
