"""The one training loop every trainable shares.

`train_one_epoch` and `evaluate` are plain functions over in-memory tensors that return metric dicts;
`fit` runs them epoch by epoch with a resumable state and hands each epoch's metrics to a reporter
(`TuneReporter` inside a Ray Tune trial, `MemoryReporter` in notebooks, tests and benchmarks). `TuneReporter`
resumes from the newest checkpoint that loads (`newest_readable_state`): unreadable ones are reported and skipped.
On CUDA the data, the shuffling order and the metric sums stay on the GPU, so the step loop never waits for it;
`fit(..., compile="default")` (or "reduce-overhead", "max-autotune") trains through torch.compile, and on CUDA
replays each compiled step as one CUDA graph (`CudaGraphSteps`).

    from trainables.loop import fit, MemoryReporter
    rep = MemoryReporter()
    fit(model, optimizer, None, train=(x, y), tests={"test": (xt, yt)}, epochs=2, batch_size=64, seed=0,
        device=torch.device("cpu"), reporter=rep)
    rep.rows[-1]["test_acc"]
"""
from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import time
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

import torch
import torch.nn.functional as F
from torch import nn

Split = tuple[torch.Tensor, torch.Tensor]


def pin_threads(cpus: float | None) -> int:
    """Give torch as many intra-op threads as the trial has CPUs (at least 1): two trials with all
    threads each on a 2-core machine thrash."""
    if cpus is None:  # not in a trial: leave torch's default alone
        return torch.get_num_threads()
    n = max(1, int(cpus))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)  # for libraries started after this point
    return n


def trial_resources() -> tuple[float | None, float | None]:
    """(CPUs, GPUs) granted to this Tune trial; (None, None) outside Tune."""
    try:
        from ray import tune

        with warnings.catch_warnings():  # outside Tune, Ray warns and returns None
            warnings.simplefilter("ignore")
            pgf = tune.get_context().get_trial_resources()
    except Exception:  # Ray missing or no Tune session: a notebook, test or benchmark
        pgf = None
    if pgf is None:
        return None, None
    res = pgf.required_resources
    return res.get("CPU", 1), res.get("GPU", 0)


def pick_device(gpus: float | None) -> torch.device:
    """CUDA when the trial was granted a GPU share (or, outside a trial, when one is there)."""
    wanted = torch.cuda.is_available() if gpus is None else gpus > 0
    return torch.device("cuda") if wanted and torch.cuda.is_available() else torch.device("cpu")


EVAL_BATCH = 500  # test-pass batch size: large enough to keep the device busy, small enough for any split
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move to the device in channels_last layout: oneDNN (CPU) and cuDNN run these small convolutions
    20-30% faster that way; layers without 4-D weights are unaffected."""
    return model.to(device=device, memory_format=torch.channels_last)


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """The generator that orders epoch `epoch` of a run seeded `seed`: a function of (seed, epoch) only.

    On CPU it is the CPU generator the loop has always used, so CPU runs keep their order. On CUDA it is a CUDA
    generator with the same seed: the permutation is drawn on the GPU, a different order from the CPU one but
    equally seeded and reproducible, and no index ever crosses from host to device."""
    return torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + epoch)


def _means(sums: torch.Tensor, n: int) -> dict[str, float]:
    """{"loss", "acc"} from a device tensor (summed loss, correct count): the one host sync of a pass."""
    loss_sum, correct = sums.tolist()
    return {"loss": loss_sum / n, "acc": correct / n}


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    """The distinct batch sizes of a pass over n items: the full batch and the remainder."""
    sizes = {min(n, batch_size)} | ({n % batch_size} if n > batch_size else set())
    return sorted(sizes - {0}, reverse=True)


def train_one_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                    *, batch_size: int, generator: torch.Generator, device: torch.device,
                    steps: CudaGraphSteps | None = None) -> dict[str, float]:
    """One pass over (images, labels) in an order drawn from `generator`; mean cross-entropy and accuracy.

    The order is `torch.randperm` drawn on the generator's device: a CPU generator gives the order (and on CPU
    the results) the loop always gave; a CUDA one (`epoch_generator`) draws it on the GPU. Nothing in the step
    loop copies between host and device or waits for the device: the data and the order move to `device` at
    most once per call (`fit` already keeps them there), batches are index_select gathers on the device, and the
    sums stay there until one transfer at the end. `steps` (CUDA), built over the same model, optimizer, images
    and labels, replays each step as one CUDA graph instead of launching it kernel by kernel."""
    model.train()
    images, labels = images.to(device), labels.to(device)
    order = torch.randperm(len(labels), generator=generator, device=generator.device).to(device)
    if steps is not None:
        return _means(steps.sums(order, batch_size=batch_size), len(labels))
    return _means(train_sums(model, images, labels, order, optimizer, batch_size=batch_size), len(labels))


def train_sums(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, order: torch.Tensor,
               optimizer: torch.optim.Optimizer, *, batch_size: int) -> torch.Tensor:
    """The step loop over `order` (all on one device): (summed loss, correct count) as a float64 device tensor.
    It never synchronises with the host."""
    total_loss = torch.zeros((), device=images.device)
    correct = torch.zeros((), device=images.device, dtype=torch.long)
    for batch in order.split(batch_size):
        optimizer.zero_grad(set_to_none=True)
        train_step(model, images, labels, batch, optimizer, total_loss, correct)
    return torch.stack([total_loss.double(), correct.double()])  # exact: counts stay far below 2**53


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor,
               optimizer: torch.optim.Optimizer, loss_sum: torch.Tensor, correct: torch.Tensor) -> None:
    """One training step over the items `idx`: gather the batch, forward, cross-entropy, backward (into gradients
    the caller left empty), optimizer step; the batch's summed loss and correct count are added to `loss_sum` and
    `correct` on the device. The one step both the eager loop and `CudaGraphSteps`' recordings run."""
    x, y = images.index_select(0, idx), labels.index_select(0, idx)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    optimizer.step()
    loss_sum += loss.detach() * len(idx)
    correct += (logits.argmax(1) == y).sum()


def use_cuda_graphs(device: torch.device, optimizer: torch.optim.Optimizer, compile: str) -> bool:
    """Whether `fit` trains through CudaGraphSteps: on CUDA, with a supported optimizer, and only for a compiled
    model. Recorded eager steps trained the STN to 56.5% test accuracy on an H200 where the same run without
    graphs reached 96.3% and the compiled, recorded one 97.0%; until that is understood, eager steps are not
    recorded."""
    return device.type == "cuda" and compile != "off" and CudaGraphSteps.supported(optimizer)


class GraphRecordingFailed(RuntimeError):
    """A training step could not be recorded as a CUDA graph; the training state is as it was before."""


class CudaGraphSteps:
    """`train_step` (gather the batch, forward, cross-entropy, backward, optimizer step, the epoch's sums)
    recorded as one CUDA graph per batch size and replayed: one launch per step instead of one per kernel, which
    is what a small model on a fast GPU is bound by. The batch's indices are the graph's one input,
    copied device to device before each replay; the data, parameters and sums never leave the GPU.

    Recording needs a few eager warm-up steps (cuDNN's autotuning, the optimizer's momentum buffers); their effect
    is undone (parameters, buffers, optimizer state and the CUDA RNG restored; momentum buffers created by them
    zeroed, which with dampening 0 is the same first step as SGD's clone of the gradient). SGD reads its learning
    rate and momentum as Python numbers, which a recording freezes: a step is recorded again when they change (the
    scheduler steps between epochs). Only SGD with dampening 0 is supported (`supported`); `fit` falls back to the
    eager loop otherwise, or when recording fails (a model that synchronises with the host cannot be recorded)."""

    WARMUP_STEPS = 3

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                 labels: torch.Tensor):
        self.model, self.optimizer, self.images, self.labels = model, optimizer, images, labels
        self.device = images.device
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), device=self.device, dtype=torch.long)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.settings: tuple | None = None

    @staticmethod
    def supported(optimizer: torch.optim.Optimizer) -> bool:
        return type(optimizer) is torch.optim.SGD and all(
            g["dampening"] == 0 and not g.get("differentiable") and not isinstance(g["lr"], torch.Tensor)
            for g in optimizer.param_groups)

    def _step(self, idx: torch.Tensor) -> None:
        train_step(self.model, self.images, self.labels, idx, self.optimizer, self.loss_sum, self.correct)

    def _snapshot(self) -> dict[str, Any]:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return {"tensors": [(t, t.detach().clone()) for t in [*self.model.parameters(), *self.model.buffers()]],
                "state": {p: {k: v.clone() for k, v in self.optimizer.state[p].items() if isinstance(v, torch.Tensor)}
                          for p in params if p in self.optimizer.state},
                "params": params, "rng": torch.cuda.get_rng_state(self.device)}

    @torch.no_grad()
    def _restore(self, saved: dict[str, Any]) -> None:
        for t, value in saved["tensors"]:
            t.copy_(value)
        for p in saved["params"]:
            before = saved["state"].get(p)
            for k, v in self.optimizer.state.get(p, {}).items():
                if not isinstance(v, torch.Tensor):
                    continue
                if before is not None and k in before:
                    v.copy_(before[k])
                else:
                    v.zero_()
        torch.cuda.set_rng_state(saved["rng"], self.device)

    def _record(self, size: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        """The graph of a step over `size` items and its index input; GraphRecordingFailed (state restored) if
        the step cannot be recorded."""
        idx = torch.arange(size, device=self.device)
        saved = self._snapshot()
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(self.WARMUP_STEPS):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._step(idx)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self._restore(saved)
            graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)  # the graph owns the gradients: replays write them afresh
            # "global" (torch's default): a call unsafe during capture from any thread, the autograd engine's
            # included, fails the recording (and `fit` trains eagerly) instead of running once outside the graph.
            with torch.cuda.graph(graph, capture_error_mode="global"):
                self._step(idx)
        except Exception as err:
            torch.cuda.synchronize(self.device)
            self._restore(saved)
            self.optimizer.zero_grad(set_to_none=True)
            raise GraphRecordingFailed(f"{type(err).__name__}: {err}") from err
        return graph, idx

    def sums(self, order: torch.Tensor, *, batch_size: int) -> torch.Tensor:
        """`train_sums` over `order` by graph replays: (summed loss, correct count) as a float64 device tensor."""
        settings = tuple((g["lr"], g["momentum"], g["weight_decay"], g["nesterov"], g["maximize"])
                         for g in self.optimizer.param_groups)
        if settings != self.settings:
            self.graphs.clear()
            self.settings = settings
        for size in _batch_sizes(len(order), batch_size):  # before the sums are cleared: warm-ups add to them
            if size not in self.graphs:
                self.graphs[size] = self._record(size)
        self.loss_sum.zero_()
        self.correct.zero_()
        for batch in order.split(batch_size):
            graph, idx = self.graphs[len(batch)]
            idx.copy_(batch)
            graph.replay()
        return torch.stack([self.loss_sum.double(), self.correct.double()])


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = EVAL_BATCH,
             device: torch.device) -> dict[str, float]:
    """Mean cross-entropy and accuracy of `model` in eval mode over the whole split (one host sync)."""
    return _means(eval_sums(model, images, labels, batch_size=batch_size, device=device), len(labels))


@torch.inference_mode()
def eval_sums(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = EVAL_BATCH,
              device: torch.device) -> torch.Tensor:
    """(summed loss, correct count) of `model` in eval mode over the split, as a float64 tensor on `device`;
    batches are slices of the split moved to `device` once, and nothing waits for the device."""
    model.eval()
    images, labels = images.to(device), labels.to(device)
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for start in range(0, len(labels), batch_size):
        x, y = images[start:start + batch_size], labels[start:start + batch_size]
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    return torch.stack([total_loss.double(), correct.double()])


def evaluate_splits(model: nn.Module, tests: Mapping[str, Split], *, device: torch.device,
                    val: Split | None = None) -> dict[str, float]:
    """test_loss/test_acc over all test splits together, plus test_acc/<name> per split when there are several,
    and val_loss/val_acc on the validation split when given. All sums come back to the host in one transfer."""
    splits = ([val] if val is not None else []) + list(tests.values())
    sums = torch.stack([eval_sums(model, x, y, device=device) for x, y in splits]).tolist() if splits else []
    out: dict[str, float] = {}
    if val is not None:
        val_sums, sums = sums[0], sums[1:]
        out["val_loss"], out["val_acc"] = val_sums[0] / len(val[1]), val_sums[1] / len(val[1])
    n_total, loss_sum, correct_sum = 0, 0.0, 0.0
    for (name, (_, y)), split_sums in zip(tests.items(), sums):
        n = len(y)
        loss, acc = split_sums[0] / n, split_sums[1] / n
        if len(tests) > 1:
            out[f"test_loss/{name}"], out[f"test_acc/{name}"] = loss, acc
        n_total += n
        loss_sum += loss * n
        correct_sum += acc * n
    out["test_loss"], out["test_acc"] = loss_sum / n_total, correct_sum / n_total
    return out


# On CUDA the step's CUDA graphs are CudaGraphSteps' own (one graph for the whole step, optimizer included), so
# inductor compiles without its cudagraph trees: a graph cannot be recorded inside another.
INDUCTOR_MODE_ON_CUDA = {"default": "default", "reduce-overhead": "default",
                         "max-autotune": "max-autotune-no-cudagraphs"}


def compile_model(model: nn.Module, mode: str, device: torch.device | None = None) -> nn.Module:
    """`model` itself for mode "off", else a torch.compile'd module sharing its parameters (train through it; save
    and inspect `model`, whose state has no `_orig_mod.` prefix). Shapes are compiled static (`dynamic=False`): a
    pass has two batch sizes, and CUDA graphs need one graph per shape anyway. On CUDA the modes compile without
    inductor's CUDA graphs (`INDUCTOR_MODE_ON_CUDA`): `fit` records the whole step itself (`CudaGraphSteps`)."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile = {mode!r}: choose one of {', '.join(map(repr, COMPILE_MODES))}")
    if mode == "off":
        return model
    if device is not None and device.type == "cuda":
        mode = INDUCTOR_MODE_ON_CUDA[mode]
    return torch.compile(model, mode=mode, dynamic=False)


def warm_up(net: nn.Module, train: Split, tests: Mapping[str, Split], *, batch_size: int,
            device: torch.device) -> float:
    """Seconds spent compiling `net` for every shape `fit` will give it: a forward and backward (no optimizer step)
    per training batch size, a test-mode forward per test batch size, each twice (CUDA graphs are recorded on a
    shape's second call). Training is left as it was: gradients cleared, buffers (BatchNorm statistics) and the
    CPU RNG state (the one checkpoints carry) restored."""
    buffers = [(b, b.detach().clone()) for b in net.buffers()]
    rng = torch.get_rng_state()
    t0 = time.perf_counter()
    images, labels = (t.to(device) for t in train)
    net.train()
    for size in _batch_sizes(len(labels), batch_size):
        batch = torch.arange(size, device=device)  # the same gather as the step loop: same strides, same graph
        x, y = images.index_select(0, batch), labels.index_select(0, batch)
        for _ in range(2):
            F.cross_entropy(net(x), y).backward()
    net.eval()
    with torch.inference_mode():
        for x, _ in tests.values():
            x = x.to(device)
            for size in _batch_sizes(len(x), EVAL_BATCH):
                for _ in range(2):
                    net(x[:size])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    for p in net.parameters():
        p.grad = None
    with torch.no_grad():
        for b, saved in buffers:
            b.copy_(saved)
    torch.set_rng_state(rng)
    return seconds


@contextmanager
def _cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cuDNN autotuning while training on CUDA: batch shapes repeat all run long, so timing the algorithms once
    per shape pays; the previous setting comes back after. Never touched on CPU."""
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parts of a model's state that training changes: trainable parameters and buffers (BatchNorm
    statistics drift in train mode). A frozen ResNet50 checkpoint is then ~0.5 MB instead of ~100 MB."""
    keep = {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in model.named_buffers()}
    return {k: v for k, v in model.state_dict().items() if k in keep}


def make_sgd(params, cfg) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with momentum and an optional StepLR (cfg.lr_step epochs, factor cfg.gamma), stepped once per epoch."""
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step, cfg.gamma) if cfg.lr_step else None
    return optimizer, scheduler


class Reporter(Protocol):
    def restore(self) -> dict[str, Any] | None: ...
    def report(self, metrics: dict[str, Any], state: dict[str, Any],
               arrays: dict[str, Any] | None = None) -> None: ...


class MemoryReporter:
    """Keeps every epoch's metrics in `rows` and the last inspection arrays in `arrays`; no checkpoints
    (notebooks, tests, benchmarks)."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []
        self.arrays: dict[str, Any] | None = None

    def restore(self) -> None:
        return None

    def report(self, metrics: dict[str, Any], state: dict[str, Any], arrays: dict[str, Any] | None = None) -> None:
        self.rows.append(metrics)
        if arrays is not None:
            self.arrays = arrays


STATE_FILE = "state.pt"
_CHECKPOINT_DIR = re.compile(r"checkpoint_(\d+)")


class UnreadableCheckpoint(Exception):
    """A checkpoint folder whose training state cannot be used; the message says why."""


def _is_epoch(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def checkpoint_index(path: str | Path) -> int:
    """N of a Tune checkpoint folder `checkpoint_N`; -1 for any other name."""
    m = _CHECKPOINT_DIR.fullmatch(Path(path).name)
    return int(m.group(1)) if m else -1


def _check_records(file: Path) -> None:
    """Read every record of a torch file (a zip archive) against the CRC-32 torch stored for it: torch.load
    itself does not check them, so a damaged tensor would load as wrong numbers."""
    try:
        with zipfile.ZipFile(file) as archive:
            for info in archive.infolist():
                if info.CRC == 0:  # saved with torch's CRC-32 switched off: nothing to check against
                    continue
                with archive.open(info) as f:
                    while f.read(1 << 20):
                        pass
    except zipfile.BadZipFile as err:
        raise UnreadableCheckpoint(f"{STATE_FILE} is truncated or damaged: {err}") from None


def load_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """The training state in `checkpoint_dir`/state.pt, loaded as data only (weights_only: never code to run).

    Raises UnreadableCheckpoint, saying why, when the file is missing, empty, truncated, damaged, not a torch
    file, or holds no state with an epoch."""
    file = Path(checkpoint_dir) / STATE_FILE
    if not file.is_file():
        raise UnreadableCheckpoint(f"no {STATE_FILE}")
    try:
        if file.stat().st_size == 0:
            raise UnreadableCheckpoint(f"{STATE_FILE} is empty")
        _check_records(file)
        state = torch.load(file, map_location="cpu", weights_only=True)
    except UnreadableCheckpoint:
        raise
    except Exception as err:  # whatever torch, pickle or the OS raise for a bad file
        why = (str(err).strip().splitlines() or [""])[0][:200]
        raise UnreadableCheckpoint(f"{STATE_FILE} does not load: {type(err).__name__}"
                                   + (f": {why}" if why else "")) from None
    if not (isinstance(state, dict) and _is_epoch(state.get("epoch"))):
        raise UnreadableCheckpoint(f"{STATE_FILE} holds no training state with an epoch")
    return state


def _say(line: str) -> None:
    # A trial's stderr reaches the driver's output, prefixed with the trial's name and process.
    print(line, file=sys.stderr, flush=True)


def newest_readable_state(dirs: Iterable[str | Path], *, trial: str = "?",
                          say: Callable[[str], None] = _say) -> tuple[Path, dict[str, Any]] | None:
    """(folder, state) of the newest of the checkpoint folders `dirs` (by N in checkpoint_N) whose state loads;
    None when none does (the trial starts from scratch).

    Each folder skipped is reported once through `say`, one line naming the trial, the folder and why; the last
    such line also says where the trial resumes."""
    lines: list[str] = []
    found = None
    for d in sorted(map(Path, dirs), key=checkpoint_index, reverse=True):
        try:
            found = d, load_state(d)
            break
        except UnreadableCheckpoint as why:
            lines.append(f"warning: trial {trial}: checkpoint {d} is unreadable ({why}), skipped")
    if lines:
        lines[-1] += (f"; resuming from {found[0].name} (epoch {found[1]['epoch']})" if found is not None
                      else "; no readable checkpoint left, starting from epoch 1")
        for line in lines:
            say(line)
    return found


def older_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """The checkpoint_N folders beside `checkpoint_dir` (its trial's folder) with a smaller N.

    Only older ones: a newer folder is one a killed driver's snapshot never recorded, so its epochs may be missing
    from the logs, and Tune hands out its index again (overwriting it) as the trial goes on."""
    index = checkpoint_index(checkpoint_dir)
    try:
        siblings = list(checkpoint_dir.parent.iterdir())
    except OSError:
        return []
    return [p for p in siblings if p.is_dir() and 0 <= checkpoint_index(p) < index]


def _trial_id() -> str:
    try:
        from ray import tune

        with warnings.catch_warnings():  # outside Tune, Ray warns and returns None
            warnings.simplefilter("ignore")
            return tune.get_context().get_trial_id() or "?"
    except Exception:  # Ray missing or no Tune session
        return "?"


RESTORE_NOTES = "restore_notes"  # a result's lines about checkpoints a restore skipped (TuneReporter)


class TuneReporter:
    """Reports to Ray Tune with a checkpoint every epoch and restores from the trial's newest readable one.

    Inspection arrays, when given, go into the same checkpoint as `inspection.npz` (plain NumPy), so
    `analysis` can read what a trained model does without importing torch.

    A checkpoint whose state.pt is missing, empty, truncated or damaged (torch stores a CRC-32 per record, checked
    on restore) is skipped: the trial resumes from the newest older checkpoint in its folder that loads, or from
    scratch. Restoring never raises for a bad checkpoint: a retry that Tune starts from the same checkpoint falls
    back the same way instead of failing on it again. What was skipped travels as one line each in the first
    result after the restore (metric RESTORE_NOTES), which the driver prints (sweeps.console.RestoreNotes): a
    trial's own stderr reaches the driver through Ray's log forwarding, which drops what a short trial prints
    just before the sweep ends."""

    FILE = STATE_FILE
    ARRAYS = "inspection.npz"

    def __init__(self) -> None:
        self.notes: list[str] = []  # restore's lines, not yet sent with a result

    def restore(self) -> dict[str, Any] | None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            dirs = [Path(d)]
            # A local or shared folder (RUN_DIR/tune) is used in place, so the trial's older checkpoints sit next to
            # it; a download from remote storage brings this one only.
            if Path(d) == Path(checkpoint.path):
                dirs += older_checkpoints(Path(d))
            found = newest_readable_state(dirs, trial=_trial_id(), say=self.notes.append)
        return None if found is None else found[1]

    def report(self, metrics: dict[str, Any], state: dict[str, Any], arrays: dict[str, Any] | None = None) -> None:
        import numpy as np
        from ray import tune

        if not _is_epoch(state.get("epoch")):
            raise ValueError(f"state must carry its epoch (an int >= 1) for restore() to check it, "
                             f"got {state.get('epoch')!r}")
        with tempfile.TemporaryDirectory() as d:
            torch.save(state, Path(d) / self.FILE)
            if arrays is not None:
                np.savez_compressed(Path(d) / self.ARRAYS, **arrays)
            if self.notes:
                metrics = {**metrics, RESTORE_NOTES: "\n".join(self.notes)}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
        self.notes = []


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *, train: Split,
        tests: Mapping[str, Split], epochs: int, batch_size: int, seed: int, device: torch.device,
        reporter: Reporter, inspect: Callable[[nn.Module], dict[str, Any]] | None = None,
        compile: str = "off", val: Split | None = None, constants: Mapping[str, Any] | None = None) -> None:
    """Train for `epochs`, evaluating every test split (and the validation split `val`, when given: val_loss,
    val_acc) after each epoch, resuming from `reporter.restore()`. `constants` go into every epoch's metrics
    as they are (e.g. which cached features the trial trained on).

    The shuffling order of epoch e depends only on (seed, e) (`epoch_generator`), and the RNG state is
    checkpointed, so a trial resumed from epoch k continues as if it had never stopped. On CPU the order is the
    one the loop has always drawn; on CUDA it is drawn on the GPU from a CUDA generator with the same seed: a
    different order, equally reproducible. On CUDA the data stay on the GPU for the whole run, the step loop never
    waits for the device (an epoch syncs when its training sums, its test sums and its checkpoint come back), and
    cuDNN autotunes its algorithms (`torch.backends.cudnn.benchmark`, restored after).

    A non-finite training loss ends the run after reporting that epoch with stop_reason "diverged".
    `inspect(model)`, when given, runs after the last epoch and its arrays travel with that epoch's report (the
    trial's final checkpoint).

    `compile` ("off", "default", "reduce-overhead", "max-autotune") trains and tests through torch.compile
    (`compile_model`); on CUDA each compiled training step is then replayed as one CUDA graph
    (`use_cuda_graphs`). Compiling happens in a separate warm-up before the first epoch (`warm_up`, which leaves
    the training state as it was); its wall time is reported as `compile_seconds` in the first epoch this call runs
    and is not part of any `epoch_seconds`. Checkpoints and `inspect` use the uncompiled `model`.
    """
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile = {compile!r}: choose one of {', '.join(map(repr, COMPILE_MODES))}")
    prepare_model(model, device)
    start = 0
    state = reporter.restore()
    if state is not None:
        unexpected = model.load_state_dict(state["model"], strict=False).unexpected_keys
        if unexpected:
            raise RuntimeError(f"checkpoint does not match the model: unexpected keys {unexpected[:5]}")
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start = int(state["epoch"])
    if device.type == "cuda":  # small datasets live on the GPU for the whole trial
        train = tuple(t.to(device) for t in train)
        tests = {k: tuple(t.to(device) for t in v) for k, v in tests.items()}
        val = tuple(t.to(device) for t in val) if val is not None else None
    with _cudnn_benchmark(device):
        net = compile_model(model, compile, device)
        compile_seconds = None
        if net is not model and start < epochs:
            compile_seconds = warm_up(net, train, tests, batch_size=batch_size, device=device)
        steps = CudaGraphSteps(net, optimizer, *train) if use_cuda_graphs(device, optimizer, compile) else None
        for epoch in range(start + 1, epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            gen = epoch_generator(seed, epoch, device)
            try:
                tr = train_one_epoch(net, *train, optimizer, batch_size=batch_size, generator=gen, device=device,
                                     steps=steps)
            except GraphRecordingFailed as why:  # nothing trained yet this epoch: train it eagerly
                warnings.warn(f"training without CUDA graphs: {why}", RuntimeWarning, stacklevel=2)
                steps = None
                tr = train_one_epoch(net, *train, optimizer, batch_size=batch_size, generator=gen, device=device)
            te = evaluate_splits(net, tests, device=device, val=val)
            seconds = time.perf_counter() - t0
            if scheduler is not None:
                scheduler.step()
            metrics = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], **te,
                       "epoch_seconds": seconds, "lr": lr, **(constants or {})}
            if compile_seconds is not None and epoch == start + 1:
                metrics["compile_seconds"] = compile_seconds
            # A NaN or infinite loss never recovers: end the trial (it completes, the sweep goes on) and say why.
            diverged = not math.isfinite(tr["loss"])
            if diverged:
                metrics["stop_reason"] = "diverged"
            state = {"model": trainable_state(model), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "rng": torch.get_rng_state(), "epoch": epoch}
            arrays = None
            if inspect is not None and (epoch == epochs or diverged):
                arrays = inspect(model)
            reporter.report(metrics, state, arrays)
            if diverged:
                return
