"""Security habits that code review forgets: a local Ray's dashboard stays on loopback, every torch.load is
weights_only, and no committed file holds a secret."""
from __future__ import annotations

import ast
import re
import subprocess

import pytest

from helpers import ROOT


def test_local_ray_dashboard_listens_on_loopback_only():
    import ray

    from sweeps.runner import start_ray

    ctx = start_ray(None)
    try:
        url = ctx.dashboard_url or ""  # empty: ray[tune] alone runs no dashboard web server at all
        assert url == "" or url.startswith("127.0.0.1:"), url
        node = ray._private.worker.global_worker.node
        assert node._ray_params.dashboard_host == "127.0.0.1"
    finally:
        ray.shutdown()


def _python_files():
    return [p for d in ("trainables", "sweeps", "analysis", "benchmarks") for p in (ROOT / d).rglob("*.py")]


def test_every_torch_load_is_weights_only():
    calls = 0
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                calls += 1
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                    f"{path.relative_to(ROOT)}:{node.lineno}: torch.load without weights_only=True"
    assert calls >= 2  # checkpoints and --weights PATH


SECRET = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[:=]\s*\S{8,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|"
                    r"(?i:password|token)\s*[:=]\s*['\"][^'\"]{8,}['\"]")


def test_no_secrets_in_committed_files():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    hits = []
    for name in files.splitlines():
        path = ROOT / name
        if path.is_file() and path.stat().st_size < 2_000_000:
            text = path.read_text(errors="ignore")
            hits += [f"{name}: {m.group(0)[:20]}..." for m in SECRET.finditer(text)]
    assert not hits, hits
