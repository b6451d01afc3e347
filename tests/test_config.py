"""Config validation: unknown keys, out-of-range values, wrong types, data-dependent limits; one-line CLI errors."""
from __future__ import annotations

import pytest

from helpers import run_main
from trainables.config import ConfigError
from trainables.stn import STNConfig


def test_defaults_are_the_original_studys():
    cfg = STNConfig.from_dict({})
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.momentum, cfg.lr_step) == (0.01, 64, 20, 0.0, 0)
    assert cfg.transformer == "affine" and cfg.train_per_class is None


@pytest.mark.parametrize("values, message", [
    ({"lr": -0.1}, r"config 'lr' = -0.1 is out of range: must be > 0"),
    ({"lr": 0}, r"config 'lr' = 0.0 is out of range: must be > 0"),
    ({"momentum": 1.0}, r"config 'momentum' = 1.0 is out of range: must be < 1"),
    ({"batch_size": 0}, r"config 'batch_size' = 0 is out of range: must be >= 1"),
    ({"epochs": 2.5}, r"config 'epochs' = 2.5 has the wrong type: expected int"),
    ({"lr": "fast"}, r"config 'lr' = 'fast' has the wrong type: expected float"),
    ({"epochs": True}, r"config 'epochs' = True has the wrong type: expected int"),
    ({"seed": None}, r"config 'seed' = None is not allowed"),
    ({"transformer": "tps9"}, r"config 'transformer' = 'tps9' is not allowed: choose one of 'affine', 'tps', 'none'"),
    ({"lrr": 0.1}, r"unknown config key 'lrr' for STNConfig; known keys: batch_size, compile, epochs, gamma, lr, "),
    ({"lrr": 0.1, "bs": 4}, r"unknown config keys 'bs', 'lrr'"),
])
def test_bad_values_name_the_key_and_what_is_allowed(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        STNConfig.from_dict(values)


def test_coercion_of_numbers():
    cfg = STNConfig.from_dict({"lr": 1, "epochs": 3.0, "train_per_class": None})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)


def test_more_images_per_digit_than_the_data_has(mnist):
    have = int(min(mnist.train_labels.bincount()))
    STNConfig(train_per_class=have, val_per_class=0).check_data(mnist)
    with pytest.raises(ConfigError, match=rf"'train_per_class' = 600 is more than .* at most {have} images per"):
        STNConfig(train_per_class=600, val_per_class=0).check_data(mnist)
    # the default validation split (a tenth of the smallest digit) is held out of the same images
    held = have // 10
    STNConfig(train_per_class=have - held).check_data(mnist)
    with pytest.raises(ConfigError, match=rf"= {have} plus the {held} per digit held out for validation"):
        STNConfig(train_per_class=have).check_data(mnist)
    with pytest.raises(ConfigError, match="leaves no training images"):
        STNConfig(val_per_class=have).check_data(mnist)


def _one_clear_line(proc, *needles):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0]


def test_cli_rejects_negative_lr_and_unknown_key_before_ray():
    _one_clear_line(run_main("stn_mnist", "--dry-run", "--lr", "-0.1"), "'lr' = -0.1", "must be > 0")
    _one_clear_line(run_main("stn_mnist", "--dry-run", "--set", "lrr=0.1"), "unknown config key 'lrr'")


def test_cli_600_per_digit_on_mnist_5k(mnist_dir, mnist, tmp_path):
    if int(min(mnist.train_labels.bincount())) >= 600:
        pytest.skip("this MNIST has 600 images per digit; the check needs the 5k subset")
    # like the default runs/NAME: the run folder and its parent made by the sweep
    proc = run_main("stn_mnist", "--data-dir", str(mnist_dir), "--out", str(tmp_path / "runs" / "stn"),
                    "--train-per-class", "600")
    _one_clear_line(proc, "'train_per_class' = 600", "at most 500 images per digit")
    assert list(tmp_path.iterdir()) == []  # nothing started, and the folders it made are gone again
    (tmp_path / "mine").mkdir()  # a folder the user made is left where it is
    for out in (tmp_path / "mine", tmp_path / "mine" / "deeper" / "run"):
        proc = run_main("stn_mnist", "--data-dir", str(mnist_dir), "--out", str(out), "--train-per-class", "600")
        _one_clear_line(proc, "'train_per_class' = 600")
        assert (tmp_path / "mine").is_dir() and list((tmp_path / "mine").iterdir()) == []


def test_cli_empty_data_dir_offline(tmp_path):
    # A proxy on a closed loopback port makes every download fail at once, online or not.
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    proc = run_main("stn_mnist", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "run"),
                    env=offline)
    _one_clear_line(proc, "MNIST not found in", "download failed", "MNIST/raw/", "--data-dir")
    assert not (tmp_path / "run").exists()  # no empty run folder left behind


def test_cli_unwritable_run_dir(tmp_path, mnist_dir):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_main("stn_mnist", "--data-dir", str(mnist_dir), "--out", str(blocker / "run"))
    _one_clear_line(proc, "is not writable", "--out")
