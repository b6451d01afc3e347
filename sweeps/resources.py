"""Preflight checks that turn Ray's silent waits into one `error:` line.

Two mistakes make a sweep wait forever without a word: an `--address` where no Ray cluster answers (`ray.init`
retries without end), and trials that ask for more CPUs or GPUs than any node can ever hold (Tune keeps them
PENDING and prints `Trial status: 2 PENDING` every 30 s). `check_address` catches the first before `ray.init`;
`check_fits` catches the second right after it. Both raise `UserError` with what was asked, what exists and
what to pass instead:

    check_address(args.address)          # before ray.init: HOST:PORT and ray://HOST:PORT answer, `auto` finds one
    start_ray(args.address)
    note = check_fits({"cpu": 2, "gpu": 1}, local=not args.address)   # after ray.init, before any trial or task
    if note:
        print(note)                      # the trials wait for the autoscaler to add a node that holds them

Ray places a trial's CPUs and GPUs on one node, so `check_fits` asks: does one alive node (`ray.nodes()`, total
resources) or one node type the autoscaler can add (`autoscaler_node_types`) hold the whole request? The
transfer sweep's feature-cache task asks for the same resources as a trial, so the same check covers it.
The node types come, in this order, from the cluster config the autoscaler reports to the GCS (KubeRay,
autoscaler v2), from the `--autoscaling-config` file of this cluster's monitor process when the driver runs on
the head (`ray up cluster.yaml`, README's on-premise setup), or from `~/ray_bootstrap_config.yaml` (the file
`ray up` puts on the head, which Tune also reads). When an autoscaler runs but its node types cannot be read
from here, nothing is ruled out. Tests pass their own `nodes` and `node_types` lists; no Ray is needed then.
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from trainables.errors import UserError

__all__ = ["NoNodeLeft", "Shape", "check_address", "check_fits", "cluster_summary", "describe_request", "current_nodes",
           "autoscaler_node_types", "node_types_from_config", "node_types_from_cluster_config",
           "config_file_from_cmdline", "monitor_args"]

BOOTSTRAP_CONFIG = Path("~/ray_bootstrap_config.yaml")  # `ray up` writes the cluster's config here on the head
RAY_CLIENT_PORT = 10001  # `ray start --head` serves Ray Client (ray://) here by default
GCS_PROBE_MAX_S = 10.0  # the GCS handshake after a TCP connect; Ray adds ~10 s of its own on failure
EPS = 1e-4  # Ray's resource granularity
FLAGS = {"CPU": "--cpus-per-trial", "GPU": "--gpus-per-trial"}


class NoNodeLeft(RuntimeError):
    """Work waited too long with no node of the cluster that can hold it (sweeps/node_watch.py): the sweep stops
    and can be resumed once the cluster has such a node again."""


@dataclass(frozen=True)
class Shape:
    """An alive node, or a node type the autoscaler can add. `resources` None: not known, so it may hold any
    trial (an autoscaler whose node types cannot be read, or a node type without a `resources` entry)."""
    name: str
    resources: Mapping[str, float] | None


# ---------------------------------------------------------------------------------------------- the address

def check_address(address: str | None, timeout_s: float = 30.0) -> None:
    """Before `ray.init(address=...)`: raise `UserError` (one line) unless a Ray cluster answers at `address`
    within `timeout_s`. None or "local" (a local Ray starts) checks RAY_ADDRESS instead, which `ray.init` would
    join; "auto" must find a cluster on this machine; HOST:PORT must accept a TCP connection and answer as a
    Ray GCS; ray://HOST[:PORT] (Ray Client) must accept a TCP connection."""
    label = f"--address {address}"
    if not address or address == "local":
        env = os.environ.get("RAY_ADDRESS", "").strip()
        if not env or env == "local":
            return
        address, label = env, f"RAY_ADDRESS={env}"
    if address.startswith(("http://", "https://")):
        raise UserError(f"{label}: that is a dashboard (Ray Jobs) address, for `ray job submit`; --address takes "
                        f"the head's GCS address HOST:PORT (port 6379 unless `ray start --port` says otherwise) "
                        f"or ray://HOST:{RAY_CLIENT_PORT} for Ray Client, or `auto` on the head itself")
    if address == "auto":
        resolved = _resolve_auto(label)
        if resolved is None:
            return  # this Ray has no auto-detection to ask: let ray.init try
        label = f"{label} (found {resolved})"
        address = resolved
    client = address.startswith("ray://")
    host, port = _split(address[len("ray://"):] if client else address, RAY_CLIENT_PORT if client else None, label)
    why = _tcp_probe(host, port, timeout_s)
    if why:
        raise UserError(f"{label}: no Ray cluster answers there ({why}; waited up to {timeout_s:g} s). Check that "
                        f"a cluster is running there (`ray status` on its head), that the port is right "
                        f"({'Ray Client: ' + str(RAY_CLIENT_PORT) if client else 'the GCS: 6379'} unless the head "
                        f"was started otherwise) and that no firewall is in between; or drop --address to start "
                        f"a local Ray")
    if not client:
        why = _gcs_probe(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", min(timeout_s, GCS_PROBE_MAX_S))
        if why:
            raise UserError(f"{label}: something listens there, but no Ray GCS answers ({why}). Pass the head's "
                            f"GCS address (`ray status` on the head prints it; port 6379 by default), or "
                            f"ray://HOST:{RAY_CLIENT_PORT} for Ray Client (not the dashboard's port, 8265)")


def _resolve_auto(label: str) -> str | None:
    """What `ray.init(address="auto")` would join: RAY_ADDRESS, else the cluster of the last `ray start` on this
    machine, else any Ray running here; `UserError` when there is none."""
    try:
        from ray._private import services
        find = services.get_ray_address_from_environment
    except (ImportError, AttributeError):
        return None
    try:
        return find("auto", None)
    except ConnectionError:
        raise UserError(f"{label}: no running Ray cluster found on this machine (auto joins the cluster of the "
                        f"last `ray start` here, or RAY_ADDRESS). Start one with `ray start --head` (or "
                        f"`ray up cluster.yaml` and run the sweep on its head), pass --address HOST:PORT of a "
                        f"running cluster, or drop --address to start a local Ray") from None


def _split(hostport: str, default_port: int | None, label: str) -> tuple[str, int]:
    """"host:port", "[v6]:port" or (with a default port) "host" → (host, port); `UserError` otherwise."""
    hostport = hostport.rstrip("/")
    if hostport.startswith("["):
        host, sep, rest = hostport[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None if not rest else "bad"
    else:
        host, sep, port_text = hostport.rpartition(":")
        if not sep:
            host, port_text = hostport, None
    if port_text is None and default_port is not None:
        port_text = str(default_port)
    if not host or not port_text or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UserError(f"{label}: expected HOST:PORT (the head's GCS, e.g. 10.0.0.5:6379), "
                        f"ray://HOST:{RAY_CLIENT_PORT} (Ray Client) or auto")
    return host, int(port_text)


def _tcp_probe(host: str, port: int, timeout_s: float) -> str | None:
    """None when HOST:PORT accepts a TCP connection within `timeout_s`, else why not, in a few words."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"cannot resolve host {host!r}"
    except ConnectionRefusedError:
        return "connection refused"
    except (TimeoutError, socket.timeout):
        return "no answer"
    except OSError as err:
        return err.strerror or type(err).__name__


def _gcs_probe(address: str, timeout_s: float) -> str | None:
    """None when a Ray GCS answers at `address` (the handshake `ray.init` starts with), else Ray's reason. Also
    None when this Ray has no standalone GCS client to ask (then `ray.init` finds out by itself)."""
    try:
        from ray._raylet import InnerGcsClient
        connect = InnerGcsClient.standalone
    except (ImportError, AttributeError):
        return None
    try:
        with _quiet_stderr():  # Ray's C++ client logs each retry; the UserError says it once
            connect(address, None, int(timeout_s * 1000))
        return None
    except Exception as err:  # RpcError: timed out, or a server that is not a GCS (e.g. HTTP 404)
        why = " ".join(str(err).split()) or type(err).__name__
        # A GCS that wants a token is a GCS: ray.init loads the token (~/.ray/auth_token) and reports itself.
        return None if "auth" in why.lower() else why


@contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for a moment (C++ logging bypasses sys.stderr)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# ---------------------------------------------------------------------------------------------- the resources

def check_fits(per_trial: Mapping[str, Any], nodes: Sequence[Shape] | None = None,
               node_types: Sequence[Shape] | None = None, *, local: bool = False) -> str | None:
    """Raise `UserError` (one line) when neither an alive node nor a node type the autoscaler can add holds one
    trial's request (Tune's `with_resources` dict: cpu, gpu, and optionally memory, custom_resources).
    `nodes`/`node_types` default to the connected cluster's (`current_nodes`, `autoscaler_node_types`); `local`:
    the cluster is a local Ray this process started (its GPUs are the ones CUDA shows here). Returns a note to
    print when only a node type the autoscaler has yet to add holds the trial, else None."""
    want = _request(per_trial)
    if nodes is None:
        nodes = current_nodes()
        if nodes is None:  # Ray could not list its nodes (e.g. an old Ray Client): nothing to check against
            return None
    if node_types is None:
        node_types = autoscaler_node_types()
    if any(_holds(node, want) for node in nodes):
        return None
    adders = [t for t in node_types if _holds(t, want)]
    if adders:
        known = [t for t in adders if t.resources is not None]
        which = ", ".join(f"{t.name} ({_describe(t.resources)})" for t in known) or "a node type"
        return (f"note: no node of the cluster holds a trial ({_describe(want)}) right now; the autoscaler can "
                f"add {which}, so the trials wait for it (minutes on a cloud)")
    raise UserError(_no_fit_message(want, nodes, node_types, local))


def describe_request(per_trial: Mapping[str, Any]) -> str:
    """One trial's request in words: "1 CPU, 1 GPU"."""
    return _describe(_request(per_trial))


def _request(per_trial: Mapping[str, Any]) -> dict[str, float]:
    """Tune's resource dict ({"cpu": 2, "gpu": 0.5, "memory": ..., "custom_resources": {...}}) → Ray's names."""
    want: dict[str, float] = {}
    for key, value in per_trial.items():
        if key == "custom_resources":
            want.update({k: float(v) for k, v in (value or {}).items()})
        elif value is not None:
            want[{"cpu": "CPU", "gpu": "GPU"}.get(key, key)] = float(value)
    want.setdefault("CPU", 0.0)
    want.setdefault("GPU", 0.0)
    return want


def _holds(shape: Shape, want: Mapping[str, float]) -> bool:
    if shape.resources is None:
        return True
    return all(float(shape.resources.get(k, 0)) + EPS >= v for k, v in want.items() if v > 0)


def _describe(resources: Mapping[str, float]) -> str:
    parts = [f"{float(resources.get('CPU', 0)):g} CPU", f"{float(resources.get('GPU', 0)):g} GPU"]
    return ", ".join(parts + [f"{float(v):g} {k}" for k, v in resources.items() if k not in ("CPU", "GPU")])


def _no_fit_message(want: dict[str, float], nodes: Sequence[Shape], node_types: Sequence[Shape], local: bool) -> str:
    shapes = [*nodes, *node_types]  # all with known resources here: an unknown one would have held the trial
    # The request that fits: the GPUs first (the scarcer), then as many CPUs as a node with those GPUs has.
    gpu = min(want["GPU"], _most("GPU", shapes))
    cpu = min(want["CPU"], _most("CPU", [s for s in shapes if _holds(s, {"GPU": gpu})]))
    fixes = [f"{FLAGS['CPU']} {cpu:g}"] if 0 < cpu < want["CPU"] else []
    fixes += [f"{FLAGS['GPU']} {gpu:g}"] if gpu < want["GPU"] else []
    other = {k: v for k, v in want.items() if k not in ("CPU", "GPU")}

    asked = f"{FLAGS['CPU']} {want['CPU']:g} {FLAGS['GPU']} {want['GPU']:g}"
    if other:
        asked += " (" + ", ".join(f"{v:g} {k}" for k, v in other.items()) + ")"
    has = cluster_summary(nodes, node_types)
    if fixes and cpu > 0:
        todo = "pass " + " ".join(fixes)
    elif cpu <= 0 < want["CPU"]:
        todo = "no node offers CPUs to trials: add worker nodes with CPUs, or drop --address to run on a local Ray"
    else:
        todo = "lower the request"
    if gpu < want["GPU"] and local:
        todo += (" (a local Ray counts the GPUs that CUDA shows on this machine: check nvidia-smi and "
                 "CUDA_VISIBLE_DEVICES)")
    elif gpu < want["GPU"] and gpu == 0:
        todo += ", or join a cluster whose nodes have GPUs"
    return (f"{asked}: no node of this cluster can ever hold one trial (its CPUs and GPUs must fit on one node): "
            f"{has}; {todo}")


def _most(key: str, among: Sequence[Shape]) -> float:
    """The most of resource `key` any of `among` has (all with known resources)."""
    return max((float(s.resources.get(key, 0)) for s in among), default=0.0)


def cluster_summary(nodes: Sequence[Shape], node_types: Sequence[Shape]) -> str:
    """What the cluster offers trials, in words: its nodes' largest and total CPUs and GPUs, and what the
    autoscaler can add (all shapes with known resources)."""
    n = len(nodes)
    has = (f"its nodes have at most {_most('CPU', nodes):g} CPU and {_most('GPU', nodes):g} GPU each "
           f"({sum(float(s.resources.get('CPU', 0)) for s in nodes):g} CPU, "
           f"{sum(float(s.resources.get('GPU', 0)) for s in nodes):g} GPU in total on {n} node{'s' * (n != 1)})")
    if node_types:
        return has + "; the autoscaler can add " + ", ".join(f"{t.name} ({_describe(t.resources)})"
                                                            for t in node_types)
    return has + " and no autoscaler that adds nodes was found"


def current_nodes() -> list[Shape] | None:
    """The alive nodes of the connected cluster with their total resources; None if Ray cannot list them."""
    import ray

    try:
        listed = ray.nodes()
    except Exception:
        return None
    return [Shape(str(n.get("NodeManagerAddress") or n.get("NodeID", "?")), dict(n.get("Resources") or {}))
            for n in listed if n.get("Alive")]


def autoscaler_node_types() -> list[Shape]:
    """The node types the connected cluster's autoscaler can add; [] when there is none (a local Ray, a
    `ray.cluster_utils.Cluster`, a fixed cluster). Never raises: an autoscaler that runs but whose node types
    cannot be read from here comes back as one Shape with unknown resources (it may hold anything)."""
    try:
        import ray._private.state as state
        proto = state.state.get_cluster_config()  # the GCS's copy (KubeRay, autoscaler v2); None otherwise
        if proto is not None and proto.node_group_configs:
            return node_types_from_cluster_config(proto)
    except Exception:
        pass
    config_file = None
    try:
        import ray

        config_file = _monitor_config_file(ray.get_runtime_context().gcs_address)
    except Exception:
        pass
    bootstrap = BOOTSTRAP_CONFIG.expanduser()
    if config_file is None and bootstrap.is_file():
        config_file = bootstrap
    if config_file is not None:
        try:
            import yaml

            return node_types_from_config(yaml.safe_load(config_file.read_text()))
        except Exception:
            return [Shape(f"node types of {config_file} (unreadable)", None)]
    if _autoscaler_in_status(_read_status()):
        return [Shape("node types of the autoscaler (not readable from here)", None)]
    return []


def node_types_from_config(config: Mapping[str, Any]) -> list[Shape]:
    """The worker node types a `ray up`-style config lets the autoscaler add (cluster.yaml's format): those
    with max_workers > 0 (the head type only then), none when the top-level max_workers is 0."""
    types = config.get("available_node_types") or {}
    if config.get("max_workers") == 0:
        return []
    head = config.get("head_node_type")
    out = []
    for name, spec in types.items():
        spec = spec or {}
        limit = spec.get("max_workers", 0 if name == head else config.get("max_workers", 1))
        if not limit:
            continue
        resources = spec.get("resources")
        out.append(Shape(str(name), {k: float(v) for k, v in resources.items()} if resources else None))
    return out


def node_types_from_cluster_config(proto) -> list[Shape]:
    """The node groups of the GCS's `autoscaler_pb2.ClusterConfig` that can have nodes (max_count -1: no limit),
    each resource capped by the cluster's max_resources."""
    caps = dict(proto.max_resources)
    return [Shape(group.name or "node group",
                  {k: float(min(v, caps.get(k, v))) for k, v in group.resources.items()} or None)
            for group in proto.node_group_configs if group.max_count != 0]


def _monitor_config_file(gcs_address: str) -> Path | None:
    """The --autoscaling-config of this cluster's monitor process (v1 or v2), when it runs on this machine."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            path = config_file_from_cmdline(proc.info["cmdline"] or [], gcs_address)
        except (psutil.Error, TypeError):
            continue
        if path is not None:
            return path
    return None


def config_file_from_cmdline(cmdline: Sequence[str], gcs_address: str) -> Path | None:
    """The --autoscaling-config path in a Ray monitor's command line for the cluster at `gcs_address`."""
    for arg in monitor_args(cmdline, gcs_address) or []:
        if arg.startswith("--autoscaling-config="):
            value = arg.split("=", 1)[1]
            return Path(value).expanduser() if value else None
    return None


def monitor_args(cmdline: Sequence[str], gcs_address: str) -> list[str] | None:
    """A command line's arguments when it is the Ray monitor (autoscaler) of the cluster at `gcs_address`."""
    args = " ".join(cmdline).split()  # a process may have its whole command line in one string
    if any(a.endswith("monitor.py") and "autoscaler" in a for a in args) and f"--gcs-address={gcs_address}" in args:
        return args
    return None


def _read_status() -> str | None:
    """The v1 monitor's status report (what `ray status` prints), as JSON text; None if absent."""
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get("__autoscaling_status")
        return raw.decode() if raw else None
    except Exception:
        return None


def _autoscaler_in_status(status_json: str | None) -> bool:
    """True when the v1 monitor's report names node types of a real autoscaler. Without one (a local Ray, a
    fixed cluster) the monitor names each node's type `node_<node id>`."""
    try:
        report = json.loads(status_json or "null")["autoscaler_report"] or {}
    except (ValueError, KeyError, TypeError):
        return False
    names = set(report.get("active_nodes") or {}) | set(report.get("pending_launches") or {})
    names |= set((report.get("node_type_mapping") or {}).values())
    names |= {entry[-1] for entry in report.get("failed_nodes") or [] if entry}
    names |= {entry[1] for entry in report.get("pending_nodes") or [] if len(entry) > 1}
    return any(not (str(name).startswith("node_") and all(c in "0123456789abcdef" for c in str(name)[5:]))
               for name in names)
