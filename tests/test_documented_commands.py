"""Every sweep command line that README.md and the scripts document resolves, under --dry-run, to the same trial
configurations and search settings as recorded before the options were generated from the config classes
(tests/golden/documented_dry_runs.json, written by tests/documented_commands.py), and `--help` lists every
study option with its default."""
from __future__ import annotations

import dataclasses
import json

import pytest

from documented_commands import COMMANDS, dry_run
from helpers import ROOT

RECORDED = {(r["script"], r["args"]): r for r in json.loads(
    (ROOT / "tests" / "golden" / "documented_dry_runs.json").read_text())}


@pytest.mark.parametrize("script,args", COMMANDS, ids=[f"{s} {a}"[:60] for s, a in COMMANDS])
def test_documented_command_resolves_as_before(script, args):
    import importlib

    now, before = dry_run(script, args), RECORDED[(script, args)]
    assert len(now["configs"]) == len(before["configs"])
    # a field added since the record (with its default) is the only difference allowed: same trials otherwise
    defaults = importlib.import_module(f"sweeps.{script}").STUDY.config_cls().to_dict()
    added = [{k: v for k, v in c.items() if k not in b} for c, b in zip(now["configs"], before["configs"])]
    assert all(extra == {k: defaults[k] for k in extra} for extra in added), added
    now["configs"] = [{k: v for k, v in c.items() if k in b} for c, b in zip(now["configs"], before["configs"])]
    assert {"script": script, "args": args, **now} == before


@pytest.mark.parametrize("script", sorted({s for s, _ in COMMANDS}))
def test_help_lists_every_study_option_with_its_default(script, capsys):
    import importlib

    module = importlib.import_module(f"sweeps.{script}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    options = text.split("study options", 1)[1]  # past the usage line and the sweep options
    flags = ["--" + f.name.replace("_", "-") + " " for f in dataclasses.fields(module.STUDY.config_cls)]
    # in field order, each option's help ends with its default: "--lr FLOAT SGD learning rate (default: 0.01)"
    for flag, following in zip(flags, flags[1:] + [" search options" if module.STUDY.search else "\x00"]):
        assert flag in options, flag
        entry = options.split(flag, 1)[1].split(following, 1)[0]
        assert entry.rstrip().endswith(")") and "(default: " in entry, (flag, entry)
    if script == "transfer_grid":  # the study's grid, not the config's single default
        assert "(default: resnet50 vgg19)" in options and "(default: 10 30 50 70 90)" in options
