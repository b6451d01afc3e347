"""sweeps/resources.py: a trial that no node can ever hold, and an --address where no cluster answers, each end in
one UserError line instead of a sweep that waits forever.

Most tests hand `check_fits` fake node lists (no Ray). Three start Ray (a local `ray.init`, the runner's
`start_ray`/`stop_ray`, and a `ray.cluster_utils.Cluster` with a GPU worker); the address tests start none, and
`auto` is kept from finding the Ray clusters other people run on this machine.
"""
from __future__ import annotations

import json
import socket
import time

import pytest
import yaml

from helpers import ROOT
from sweeps import resources
from sweeps.resources import (Shape, autoscaler_node_types, check_address, check_fits, config_file_from_cmdline,
                              monitor_args, node_types_from_cluster_config, node_types_from_config)
from trainables.errors import UserError


def node(name: str, cpu: float, gpu: float = 0) -> Shape:
    return Shape(name, {"CPU": cpu, "GPU": gpu, "memory": 8e9})


@pytest.fixture
def no_bootstrap_file(monkeypatch, tmp_path):
    """Autoscaler node types must not come from a ~/ray_bootstrap_config.yaml of whoever runs the tests."""
    monkeypatch.setattr(resources, "BOOTSTRAP_CONFIG", tmp_path / "absent.yaml")


# --------------------------------------------------------------------------------------- check_fits, no Ray

def test_too_many_cpus():
    with pytest.raises(UserError) as err:
        check_fits({"cpu": 8, "gpu": 0}, [node("10.0.0.1", 2)], [])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("--cpus-per-trial 8 --gpus-per-trial 0: no node of this cluster can ever hold one trial")
    assert "at most 2 CPU and 0 GPU each (2 CPU, 0 GPU in total on 1 node)" in msg
    assert msg.endswith("pass --cpus-per-trial 2")


def test_gpu_on_a_cpu_only_cluster():
    with pytest.raises(UserError) as err:
        check_fits({"cpu": 1, "gpu": 1}, [node("10.0.0.1", 8), node("10.0.0.2", 8)], [])
    msg = str(err.value)
    assert "at most 8 CPU and 0 GPU each (16 CPU, 0 GPU in total on 2 nodes)" in msg
    assert "pass --gpus-per-trial 0, or join a cluster whose nodes have GPUs" in msg
    assert "CUDA" not in msg


def test_gpu_on_a_local_ray_without_one_names_cuda():
    with pytest.raises(UserError, match=r"pass --gpus-per-trial 0 \(a local Ray counts the GPUs that CUDA shows"):
        check_fits({"cpu": 1, "gpu": 1}, [node("192.0.2.2", 2)], [], local=True)


def test_fits_on_one_node_and_not_on_the_sum_of_two():
    nodes = [node("cpu-node", 4), node("gpu-node", 2, 1)]
    assert check_fits({"cpu": 2, "gpu": 1}, nodes, []) is None
    assert check_fits({"cpu": 4, "gpu": 0}, nodes, []) is None
    assert check_fits({"cpu": 1, "gpu": 0.25}, nodes, []) is None  # a GPU share
    with pytest.raises(UserError) as err:  # 6 CPU and 1 GPU in all, but 4 CPU + 1 GPU on no single node
        check_fits({"cpu": 4, "gpu": 1}, nodes, [])
    assert str(err.value).endswith("pass --cpus-per-trial 2")


def test_fits_only_on_a_node_type_the_autoscaler_can_add():
    """The project's cluster.yaml: a head with CPU 0 and no GPU, GPU workers added on demand."""
    types = node_types_from_config(yaml.safe_load((ROOT / "cluster.yaml").read_text()))
    assert types == [Shape("gpu_worker", {"CPU": 4.0, "GPU": 1.0})]
    head = [node("head", 0)]
    note = check_fits({"cpu": 1, "gpu": 1}, head, types)
    assert note.startswith("note: ") and "gpu_worker (4 CPU, 1 GPU)" in note
    assert check_fits({"cpu": 4, "gpu": 0.25}, head, types) is not None
    with pytest.raises(UserError) as err:
        check_fits({"cpu": 8, "gpu": 1}, head, types)
    msg = str(err.value)
    assert "the autoscaler can add gpu_worker (4 CPU, 1 GPU)" in msg and msg.endswith("pass --cpus-per-trial 4")
    with pytest.raises(UserError, match="pass --gpus-per-trial 1$"):
        check_fits({"cpu": 1, "gpu": 2}, head, types)


def test_an_autoscaler_whose_node_types_are_unknown_rules_nothing_out():
    unknown = [Shape("node types of the autoscaler (not readable from here)", None)]
    assert check_fits({"cpu": 64, "gpu": 8}, [node("head", 0)], unknown) is not None
    assert check_fits({"cpu": 64, "gpu": 8}, [node("head", 0)], [Shape("gpu_worker", None)]) is not None


def test_no_node_with_cpus():
    with pytest.raises(UserError, match="no node offers CPUs to trials"):
        check_fits({"cpu": 1, "gpu": 0}, [node("head", 0)], [])


def test_node_types_from_config_limits():
    config = {"max_workers": 4, "head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 8}},                                    # the head: not added as a worker
        "off": {"resources": {"CPU": 64}, "max_workers": 0},                  # may never start
        "auto": {"max_workers": 2},                                           # resources filled in by the cloud
        "gpu": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 2}}}
    assert node_types_from_config(config) == [Shape("auto", None), Shape("gpu", {"CPU": 4.0, "GPU": 1.0})]
    assert node_types_from_config({**config, "max_workers": 0}) == []


def test_node_types_from_the_gcs_cluster_config():
    from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig

    proto = ClusterConfig(max_resources={"GPU": 2}, node_group_configs=[
        NodeGroupConfig(name="head", resources={"CPU": 4}, min_count=1, max_count=1),
        NodeGroupConfig(name="gpu", resources={"CPU": 8, "GPU": 4}, max_count=-1),
        NodeGroupConfig(name="off", resources={"CPU": 96}, max_count=0)])
    assert node_types_from_cluster_config(proto) == [
        Shape("head", {"CPU": 4.0}), Shape("gpu", {"CPU": 8.0, "GPU": 2.0})]


def test_the_monitor_command_line_names_the_autoscaling_config(tmp_path):
    cmd = ["/venv/bin/python", "-u", "/venv/lib/python3.11/site-packages/ray/autoscaler/_private/monitor.py",
           "--logs-dir=/tmp/ray/session_x/logs", "--gcs-address=10.0.0.5:6379",
           f"--autoscaling-config={tmp_path}/ray_bootstrap_config.yaml", "--monitor-ip=10.0.0.5"]
    assert config_file_from_cmdline(cmd, "10.0.0.5:6379") == tmp_path / "ray_bootstrap_config.yaml"
    assert config_file_from_cmdline([" ".join(cmd)], "10.0.0.5:6379") == tmp_path / "ray_bootstrap_config.yaml"
    assert config_file_from_cmdline(cmd, "10.0.0.6:6379") is None  # another cluster's monitor
    assert config_file_from_cmdline(cmd[:-2], "10.0.0.5:6379") is None  # a monitor without an autoscaler
    log_monitor = [a.replace("autoscaler/_private/monitor.py", "_private/log_monitor.py") for a in cmd]
    assert monitor_args(log_monitor, "10.0.0.5:6379") is None


def test_the_v1_status_report_tells_a_real_autoscaler_from_none():
    node_id = "9c90f223004304ab0f52ebeac48e74ec52c6b404664ec5a8bb8c68da"
    readonly = {"autoscaler_report": {"active_nodes": {f"node_{node_id}": 1},
                                      "node_type_mapping": {node_id: f"node_{node_id}"}, "pending_launches": {}}}
    real = {"autoscaler_report": {"active_nodes": {"head": 1}, "pending_launches": {"gpu_worker": 1}}}
    assert not resources._autoscaler_in_status(json.dumps(readonly))
    assert resources._autoscaler_in_status(json.dumps(real))
    assert not resources._autoscaler_in_status(None) and not resources._autoscaler_in_status("{}")


# --------------------------------------------------------------------------------------- check_fits, real Ray

@pytest.mark.slow  # Ray takes 5-15 s to start here
def test_local_ray(monkeypatch, no_bootstrap_file):
    import psutil
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ctx = ray.init(num_cpus=2, include_dashboard=False, configure_logging=True, logging_level="WARNING")
    try:
        gcs = ray.get_runtime_context().gcs_address
        check_address(ctx.address_info["gcs_address"], timeout_s=5)  # a GCS that answers passes
        assert autoscaler_node_types() == []
        # the monitor of this Ray (no autoscaler, so no config file) is recognised among this machine's processes
        assert any(monitor_args(p.info["cmdline"] or [], gcs) for p in psutil.process_iter(["cmdline"]))
        with pytest.raises(UserError) as err:
            check_fits({"cpu": 8, "gpu": 0}, local=True)
        msg = str(err.value)
        assert "at most 2 CPU and 0 GPU each (2 CPU, 0 GPU in total on 1 node)" in msg
        assert msg.endswith("pass --cpus-per-trial 2")
        assert check_fits({"cpu": 1, "gpu": 0}, local=True) is None
        with pytest.raises(UserError, match=r"pass --gpus-per-trial 0 \(a local Ray counts the GPUs that CUDA"):
            check_fits({"cpu": 1, "gpu": 1}, local=True)
    finally:
        ray.shutdown()


@pytest.mark.slow  # Ray takes 5-15 s to start here
def test_stop_ray_waits_out_no_grace_period(monkeypatch):
    """ray.shutdown() sends each process of a local Ray SIGTERM and waits up to a second before SIGKILL; the
    autoscaler monitor always used the whole second (its handler calls the GCS, stopped before it). The runner's
    stop_ray leaves no process to wait that out, and leaves none of the cluster's processes running."""
    import subprocess

    import ray
    import psutil  # noqa: I001  (Ray's vendored copy: importable once ray is)

    from sweeps.runner import start_ray, stop_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start_ray(None)
    node = ray._private.worker._global_node
    pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
    assert "monitor" in node.all_processes and len(pids) >= 3
    timed_out, wait = [], subprocess.Popen.wait

    def recording_wait(self, timeout=None):
        try:
            return wait(self, timeout)
        except subprocess.TimeoutExpired:
            timed_out.append(" ".join(map(str, self.args)) if isinstance(self.args, list) else str(self.args))
            raise

    monkeypatch.setattr(subprocess.Popen, "wait", recording_wait)
    stop_ray()
    assert not ray.is_initialized()
    assert [a for a in timed_out if "monitor" in a] == [], timed_out
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


@pytest.mark.slow  # Ray takes 5-15 s to start here
def test_cluster_with_a_gpu_worker(monkeypatch, no_bootstrap_file):
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1, num_gpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        assert check_fits({"cpu": 1, "gpu": 1}) is None
        with pytest.raises(UserError) as err:
            check_fits({"cpu": 1, "gpu": 2})
        msg = str(err.value)
        assert "at most 1 CPU and 1 GPU each (2 CPU, 1 GPU in total on 2 nodes)" in msg
        assert msg.endswith("pass --gpus-per-trial 1")
    finally:
        ray.shutdown()
        cluster.shutdown()


# --------------------------------------------------------------------------------------- check_address

def test_a_closed_port_fails_at_once_with_one_line():
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        check_address("127.0.0.1:1", timeout_s=5)
    took = time.perf_counter() - t0
    msg = str(err.value)
    assert msg.startswith("--address 127.0.0.1:1: no Ray cluster answers there (connection refused; waited up "
                          "to 5 s)"), msg
    assert "`ray status`" in msg and "drop --address" in msg and "\n" not in msg
    assert took < 60  # it returned (well within the timeout, in fact)


def test_ray_client_address_to_a_closed_port():
    with pytest.raises(UserError, match=r"^--address ray://127.0.0.1:1: no Ray cluster answers there .*Ray Client"):
        check_address("ray://127.0.0.1:1", timeout_s=5)


@pytest.mark.slow  # Ray's GCS client gives up ~10 s after its timeout
def test_a_port_that_is_not_a_gcs():
    """Something accepts the connection but speaks no GCS: Ray's client gives up after its timeout (+~10 s)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with pytest.raises(UserError, match="something listens there, but no Ray GCS answers"):
            check_address(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=1)


def test_auto_without_a_cluster(monkeypatch):
    from ray._private import services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # Other people's Rays on this machine must not count: no `ray start` cluster, no running GCS process.
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: set())
    with pytest.raises(UserError) as err:
        check_address("auto")
    msg = str(err.value)
    assert msg.startswith("--address auto: no running Ray cluster found on this machine")
    assert "`ray start --head`" in msg and "`ray up cluster.yaml`" in msg and "drop --address" in msg


def test_other_address_forms(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert check_address(None) is None and check_address("local") is None  # a local Ray: nothing to check
    with pytest.raises(UserError, match="dashboard"):
        check_address("http://10.0.0.5:8265")
    with pytest.raises(UserError, match="expected HOST:PORT"):
        check_address("10.0.0.5")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what ray.init would join without --address
    with pytest.raises(UserError, match="^RAY_ADDRESS=127.0.0.1:1: no Ray cluster answers"):
        check_address(None, timeout_s=5)


def test_the_node_watch_stops_a_sweep_only_after_no_node_held_a_waiting_trial_for_the_timeout(monkeypatch, capsys):
    import pickle
    from types import SimpleNamespace

    from sweeps import node_watch

    head, worker = Shape("head", {"CPU": 0.0}), Shape("worker", {"CPU": 2.0})
    cluster = {"nodes": [head, worker], "types": []}
    monkeypatch.setattr(node_watch, "current_nodes", lambda: cluster["nodes"])
    monkeypatch.setattr(node_watch, "autoscaler_node_types", lambda: cluster["types"])
    watch = node_watch.NoNodeWatch({"cpu": 1, "gpu": 0}, timeout=30)
    now, stops = [0.0], []
    watch.clock, watch.stop = lambda: now[0], lambda: stops.append(now[0])
    pending, running = SimpleNamespace(status="PENDING"), SimpleNamespace(status="RUNNING")

    def step(at, *trials):
        now[0] = at
        watch.on_step_begin(0, list(trials))
        return watch.since

    assert step(0, pending) is None  # a node holds it: the trial waits for a slot, as Tune would have it
    cluster["nodes"] = [head]  # the worker is lost
    assert step(5, pending) is None  # checked at most every 10 s
    assert step(10, running) is None  # nothing waits: nothing to check
    assert step(20, pending) == 20
    assert "note: no node of the cluster can hold a waiting trial (1 CPU, 0 GPU) right now" in capsys.readouterr().out
    assert step(40, pending) == 20 and not stops and watch.reason is None
    cluster["nodes"] = [head, worker]  # back in time: the clock starts again when it is lost again
    assert step(50, pending) is None
    cluster["nodes"] = [head]
    assert step(110, pending) == 110 and step(130, pending) == 110 and not stops
    step(140, pending)
    assert stops == [140]
    assert watch.reason.startswith("the sweep stopped: for 30 s no node of the cluster could hold a waiting trial "
                                   "(1 CPU, 0 GPU), as after a lost node: its nodes have at most 0 CPU and 0 GPU")
    step(200, pending)
    assert stops == [140]  # stopped once
    # an autoscaler that can add a node holding the trial: the sweep waits for it, however long
    cluster["types"] = [Shape("cpu_worker", {"CPU": 4.0})]
    patient = node_watch.NoNodeWatch({"cpu": 1, "gpu": 0}, timeout=30)
    patient.clock, patient.stop = (lambda: now[0]), (lambda: stops.append(now[0]))
    for now[0] in (300, 400, 500):
        patient.on_step_begin(0, [pending])
    assert patient.since is None and stops == [140]
    # Tune pickles callbacks with the experiment: a restored sweep's watch starts afresh
    fresh = node_watch.NoNodeWatch({"cpu": 1, "gpu": 0}, timeout=30)
    fresh.since, fresh.reason = 5.0, "stopped"
    again = pickle.loads(pickle.dumps(fresh))
    assert (again.since, again.reason, again.timeout, again.per_trial) == (None, None, 30.0, {"cpu": 1, "gpu": 0})
