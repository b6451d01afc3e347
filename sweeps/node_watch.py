"""A sweep on a cluster that can no longer run its trials ends, instead of waiting for ever: `NoNodeWatch`.

`check_fits` refuses, before anything starts, trials that no node of the cluster can hold. A node lost mid-sweep
(a crashed machine, a worker removed from a fixed cluster) can bring that about later: its trials fail over,
and Tune keeps them PENDING, waiting for a node that no one will add, and says nothing but `Trial status: 2
PENDING`. This Tune callback, on the driver, asks while trials wait whether an alive node, or a node type the
autoscaler can add, holds one (`sweeps.resources.check_fits`). When none has for `SWEEPS_NO_NODE_TIMEOUT_S`
seconds (300 by default: time for a restarted node to rejoin), it stops the run as a Ctrl-C does, through the
stop signal Tune listens for (SIGUSR1: the trials stop, the experiment is snapshotted, nothing is lost), and the
runner ends with one `error:` line and the command that continues the sweep once such a node is back. A cluster
whose autoscaler can add a node that holds a trial is left to wait for it. The transfer studies' feature pass,
which runs before any trial, polls the same check and raises `NoNodeLeft` (its chunks so far are kept).

    watch = NoNodeWatch({"cpu": 1, "gpu": 1})     # the trials' resources, as tune.with_resources takes them
    tune.RunConfig(callbacks=[..., watch])
    ...                                            # after Tuner.fit():
    if watch.reason:
        print(f"error: {watch.reason}")
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from typing import Any, Mapping

from ray import tune
from tqdm import tqdm

from sweeps.resources import (NoNodeLeft, autoscaler_node_types, check_fits, cluster_summary, current_nodes,
                              describe_request)
from trainables.errors import UserError

__all__ = ["NoNodeWatch", "NoNodeLeft", "timeout_s"]

TIMEOUT_ENV = "SWEEPS_NO_NODE_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
CHECK_EVERY_S = 10.0  # at most: asking the GCS for its nodes is cheap, but not free on a large cluster


def timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))


class NoNodeWatch(tune.Callback):
    """Stops the run once waiting trials have found no node to hold them for `timeout` seconds; `reason` then
    says why (None while the run goes on). `poll` is the check itself, for a driver that waits on other work
    (the feature pass, `what="feature task", kept="chunk"`); `clock`, `say` and `stop` can be replaced (tests,
    progress bars)."""

    def __init__(self, per_trial: Mapping[str, Any], timeout: float | None = None, what: str = "trial",
                 kept: str = "epoch"):
        self.per_trial, self.what, self.kept = dict(per_trial), what, kept  # kept: the unit of work that survives
        self.timeout = timeout_s() if timeout is None else float(timeout)
        self.every = min(CHECK_EVERY_S, self.timeout / 3)
        self.last_check = -math.inf
        self.since: float | None = None  # when no node held a waiting trial, as far as the checks saw
        self.reason: str | None = None
        self.node_types = None  # what the autoscaler can add: read once, on the first check that needs it

    def __getstate__(self):  # Tune pickles its callbacks with the experiment: a restored run starts afresh
        return {**self.__dict__, "last_check": -math.inf, "since": None, "reason": None, "node_types": None}

    def clock(self) -> float:
        return time.monotonic()

    def say(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)  # above the trials' progress bars, on a terminal

    def stop(self) -> None:
        """Tune's own stop: its SIGUSR1 handler ends the run loop after this step, snapshots, and returns. Where
        Tune could not install it (a run outside the main thread), the signal would kill the driver: stop as a
        second Ctrl-C does instead (the snapshot taken every 2 s is what --resume continues from)."""
        if callable(signal.getsignal(signal.SIGUSR1)):
            # Tune's handler announces a Ctrl-C nobody pressed: the runner's error line says why instead
            logging.getLogger("ray.tune.tune").addFilter(
                lambda record: "Stop signal received" not in record.getMessage())
            os.kill(os.getpid(), signal.SIGUSR1)
        else:
            raise KeyboardInterrupt

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self.poll(any(t.status == "PENDING" for t in trials)):
            self.stop()

    def poll(self, waiting: bool) -> bool:
        """Called while the driver waits (at most one check every `every` seconds): True once, when work has
        been `waiting` for `timeout` seconds with no node that can hold it; `reason` then says why."""
        now = self.clock()
        if self.reason is not None or now - self.last_check < self.every:
            return False
        self.last_check = now
        lacking = self.lacking() if waiting else None
        if lacking is None:
            self.since = None
            return False
        if self.since is None:
            self.since = now
            self.say(f"note: no node of the cluster can hold a waiting {self.what} "
                     f"({describe_request(self.per_trial)}) right now: {lacking}; the sweep stops in "
                     f"{self.timeout:.0f} s unless one joins")
            return False
        if now - self.since < self.timeout:
            return False
        self.reason = (f"the sweep stopped: for {self.timeout:.0f} s no node of the cluster could hold a waiting "
                       f"{self.what} ({describe_request(self.per_trial)}), as after a lost node: {lacking}. "
                       f"Every finished {self.kept} is kept; once the cluster has such a node again")
        return True

    def lacking(self) -> str | None:
        """What the cluster has, when no alive node and no node type holds a trial; None when one does, or when
        the cluster cannot tell (a Ray Client connection): then the trials wait, as Tune would have them."""
        nodes = current_nodes()
        if nodes is None:
            return None
        if self.node_types is None:
            self.node_types = autoscaler_node_types()
        try:
            check_fits(self.per_trial, nodes, self.node_types)
        except UserError:
            return cluster_summary(nodes, self.node_types)
        return None
