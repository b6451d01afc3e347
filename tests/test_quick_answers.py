"""`--help` and a refused value answer without loading the heavy libraries: a sweep script's command line and its
validation come from torch-free config classes (trainables/configs.py) and Ray-free search domains
(sweeps/search_space.py), and the parts that need torch, Ray, Optuna or pandas are imported only when the sweep runs
(`Study.parts`).

    python -m pytest tests/test_quick_answers.py -q

Each case runs in a fresh interpreter and lists which of those libraries it imported (a count of modules, not a
timing: what the libraries cost varies between machines).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT

HEAVY = ("torch", "torchvision", "ray", "optuna", "pandas", "pyarrow")
SCRIPTS = ("stn_mnist", "stn_deformed", "transfer_grid", "stn_search", "transfer_search")

PROBE = """
import json, sys
from importlib import import_module
script, argv = sys.argv[1], sys.argv[2:]
try:
    code = import_module(f"sweeps.{script}").main(argv)
except SystemExit as exit_:
    code = exit_.code
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def probe(script: str, *argv: str) -> tuple[int, list[str], str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, script, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["code"], result["loaded"], proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_loads_none_of_them(script):
    code, loaded, out = probe(script, "--help")
    assert code == 0 and "--data-dir" in out
    assert loaded == [], loaded


@pytest.mark.parametrize("script, argv, needle", [
    ("stn_mnist", ["--lr", "0.01", "-1"], "'lr' = -1.0"),
    ("stn_deformed", ["--sigma", "-2"], "'sigma' = -2.0"),
    ("transfer_grid", ["--image-size", "8"], "'image_size' = 8"),
    ("stn_search", ["--num-samples", "0"], "--num-samples"),
    ("transfer_search", ["--asha", "0,3"], "--asha 0,3"),
])
def test_a_refused_value_is_answered_before_torch_or_ray_load(script, argv, needle):
    code, loaded, out = probe(script, *argv)
    assert code == 2 and needle in out, out
    assert loaded == [], loaded


def test_the_transformer_names_are_the_models_that_exist():
    from trainables.configs import TRANSFORMER_NAMES
    from trainables.models import TRANSFORMERS

    assert tuple(TRANSFORMERS) == TRANSFORMER_NAMES
