"""cluster.yaml (and README's on-premise example) checked offline with Ray's own autoscaler validation.

`ray up` runs `prepare_config` (fills in the provider's defaults.yaml, merges setup commands, sets per-type
worker limits) and then `validate_config` (ray/autoscaler/ray-schema.json plus a few cross-field checks) before
it talks to any cloud. Both are plain functions that need no credentials and no network; the fixture below
makes sure of that. The rest checks what the schema cannot: integer GPU workers, README's install command,
a loopback-only dashboard, shared storage for RUN_DIR and no credentials in the file.
"""
from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")  # a dependency of ray itself; Ray's validator imports it
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
README = ROOT / "README.md"

COMMAND_LISTS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                 "head_start_ray_commands", "worker_start_ray_commands")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network and no AWS credentials: validation must work on a laptop that has neither."""
    def refuse(*args, **kwargs):
        raise AssertionError("cluster config validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_validate(config: dict) -> dict:
    """What `ray up` does to a config before it contacts the provider; returns the prepared config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def readme_pip_install() -> str:
    """The `pip install ...` step of README's first code block (the main job's one-line install)."""
    first_block = re.search(r"```[^\n]*\n(.*?)```", README.read_text(), re.S)
    assert first_block, "README.md has no code block"
    steps = [s.strip() for s in first_block.group(1).split("&&")]
    pips = [s for s in steps if s.startswith("pip install")]
    assert len(pips) == 1, f"expected one `pip install` step in README's first code block, got {steps}"
    return pips[0]


def commands(config: dict) -> list[str]:
    return [c for key in COMMAND_LISTS for c in config.get(key) or []]


def assert_installs_like_readme(config: dict) -> None:
    pip = readme_pip_install()
    setup = config.get("setup_commands") or []
    hits = [c for c in setup if pip in c]
    assert hits, f"setup_commands do not run README's install command {pip!r}: {setup}"
    assert any(re.search(r"cd ~/mnist-sweeps\s*&&\s*" + re.escape(pip), c) for c in hits), \
        f"README's install command must run in the synced repository (cd ~/mnist-sweeps && {pip})"
    assert config["file_mounts"].get("~/mnist-sweeps") == ".", "file_mounts must sync the repository to ~/mnist-sweeps"


def assert_dashboard_on_loopback(config: dict) -> None:
    heads = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert heads, "no `ray start --head` in head_start_ray_commands"
    for cmd in heads:
        assert "--head" in cmd and "--dashboard-host=127.0.0.1" in cmd, cmd
    assert not [c for c in commands(config) if "0.0.0.0" in c], "a command binds to every interface"


SECRET_WORDS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "password", "passwd")
SECRET_PATTERNS = (r"AKIA", r"ASIA[0-9A-Z]{16}", r"-----BEGIN [A-Z ]*PRIVATE KEY")


def assert_no_secrets(text: str, config: dict) -> None:
    lowered = text.lower()
    assert not [w for w in SECRET_WORDS if w in lowered], "credentials do not belong in a cluster config"
    assert not [p for p in SECRET_PATTERNS if re.search(p, text)], "something that looks like a key"
    assert "aws_credentials" not in config.get("provider", {}), "AWS credentials come from the environment"


# ------------------------------------------------------------------------------------------------ cluster.yaml

def test_cluster_yaml_passes_rays_own_validation(config):
    had_boto3 = "boto3" in sys.modules
    prepared = ray_validate(config)
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]
    assert prepared["head_node_type"] in prepared["available_node_types"]
    # Our start commands replace the provider defaults (whose dashboard listens on 0.0.0.0) rather than merge.
    assert prepared["head_start_ray_commands"] == config["head_start_ray_commands"]
    # prepare_config runs the common setup before the head's own (boto3 for the autoscaler).
    assert prepared["head_setup_commands"][: len(config["setup_commands"])] == config["setup_commands"]
    assert any("boto3" in c for c in config["head_setup_commands"])
    assert had_boto3 or "boto3" not in sys.modules, "validation imported boto3 (AWS API client)"


@pytest.mark.parametrize("break_it, message", [
    (lambda c: c.update(max_workers="4"), "'4' is not of type 'integer'"),
    (lambda c: c.update(max_worker=4), "Additional properties are not allowed ('max_worker' was unexpected)"),
    (lambda c: c["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5), "0.5 is not of type 'integer'"),
    (lambda c: c["available_node_types"]["gpu_worker"].update(min_worker=1), "'min_worker' was unexpected"),
], ids=["string-for-integer", "unknown-top-level-key", "fractional-node-gpu", "unknown-node-type-key"])
def test_a_broken_copy_fails_with_rays_message(config, break_it, message):
    broken = copy.deepcopy(config)
    break_it(broken)
    with pytest.raises(jsonschema.ValidationError) as err:
        ray_validate(broken)
    assert message in err.value.message


def test_workers_have_integer_resources_and_a_gpu(config):
    types = config["available_node_types"]
    head = config["head_node_type"]
    workers = {name: t for name, t in types.items() if name != head}
    assert workers, "no worker node type"
    for name, node in workers.items():
        res = node["resources"]
        assert all(type(v) is int for v in res.values()), f"{name}: node resources must be integers: {res}"
        assert res.get("GPU", 0) >= 1 and res.get("CPU", 0) >= 1, f"{name}: a GPU worker needs GPU and CPU: {res}"
        assert 0 <= node.get("min_workers", 0) <= node["max_workers"] <= config["max_workers"], name
    # The head advertises no CPU, so trials (and the feature-cache tasks) always land on a GPU worker.
    assert types[head]["resources"] == {"CPU": 0}
    # One image for all: Ray needs the same Python version on every node.
    images = {t["node_config"].get("ImageId") for t in types.values()}
    assert len(images) == 1 and None not in images, images
    assert isinstance(config["idle_timeout_minutes"], (int, float)) and config["idle_timeout_minutes"] > 0


def test_setup_installs_the_project_as_readme_does(config):
    assert_installs_like_readme(config)
    setup = " ".join(config["setup_commands"])
    assert re.search(r"ray\[default\]==\d+\.\d+\.\d+", setup), "pin the cluster's Ray (dashboard/jobs need [default])"
    # The venv is created before anything is pip-installed into it.
    order = [i for i, c in enumerate(config["setup_commands"]) if "python3 -m venv" in c or "pip install" in c]
    assert "python3 -m venv" in config["setup_commands"][order[0]]


def test_dashboard_is_loopback_only_and_autoscaler_runs(config):
    assert_dashboard_on_loopback(config)
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start, "without it no worker ever starts"
    assert "$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])


def test_gpu_workers_start_mps_before_ray(config):
    # Packed trials (--gpus-per-trial < 1) only run side by side on a GPU under MPS; its daemon must be up before
    # `ray start` launches the processes that become trials, and starting it twice must not fail the node.
    start = config["worker_start_ray_commands"]
    mps = [i for i, c in enumerate(start) if "nvidia-cuda-mps-control -d" in c]
    ray = [i for i, c in enumerate(start) if "ray start" in c]
    assert mps and ray and mps[0] < ray[0], start
    assert "pgrep" in start[mps[0]], "a restart of Ray on a running node would fail on the running daemon"


def test_every_node_mounts_shared_storage_for_run_dir(config):
    mounts = [c for c in config["setup_commands"] if re.search(r"\bmount\b.*\s/mnt/runs\b", c)]
    assert mounts, "RUN_DIR must be on storage every node sees: mount it at /mnt/runs in setup_commands"
    assert "mkdir -p /mnt/runs/data" in " ".join(config["setup_commands"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to parse the shell commands")
def test_commands_are_valid_bash(config):
    # Ray runs each command as `bash --login -c -i '... && (CMD)'`; parse (not run) each one the same way.
    for cmd in commands(config):
        done = subprocess.run(["bash", "-n", "-c", f"({cmd})"], capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd!r}: {done.stderr}"


def test_no_credentials_or_keys_in_cluster_yaml(config):
    assert_no_secrets(CLUSTER_YAML.read_text(), config)


# ------------------------------------------------------------------------------ README's on-premise example

def on_premise_yaml() -> str | None:
    text = README.read_text()
    heading = re.search(r"^#{2,6}\s+On-premise\b.*$", text, re.M | re.I)
    if heading is None:
        return None
    block = re.search(r"```ya?ml\n(.*?)```", text[heading.end():], re.S)
    assert block, "README's On-premise section has no ```yaml block"
    return block.group(1)


def test_readme_on_premise_example_passes_rays_own_validation():
    text = on_premise_yaml()
    if text is None:
        pytest.skip("README.md has no 'On-premise' section yet; this checks its yaml block once it is pasted in")
    config = yaml.safe_load(text)
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]
    prepared = ray_validate(config)
    assert prepared["available_node_types"], "prepare_config builds the local node type from the IPs"
    assert_installs_like_readme(config)
    assert_dashboard_on_loopback(config)
    assert_no_secrets(text, config)
