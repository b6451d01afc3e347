"""Load the per-epoch Parquet logs that a sweep writes to RUN_DIR/logs/ (one file per trial).

    from analysis.logs import load_logs, group_columns
    df = load_logs("runs/stn_mnist")      # one row per (trial_id, epoch), sorted
    df.attrs["skipped"]                   # [{"file": ..., "reason": ...}] for unreadable files

A "group" is a configuration without its seed: every ``config/*`` column except ``config/seed``.
Nothing here imports ray or torch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CONFIG_PREFIX = "config/"
SEED_COLUMN = "config/seed"
# significant digits of sampled floats wherever a page or a figure names a configuration (the CSVs keep them exact)
SHOWN_DIGITS = 4
REQUIRED_COLUMNS = ("trial_id", "epoch", "test_acc", "test_loss")
PARALLEL_FILES = 4000  # below this, starting worker processes costs more than it saves
BATCH_FILES = 256  # files read before their tables are merged into one (see _read_many)


def _no_logs(run_dir: Path, detail: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"no logs in {run_dir} ({detail}): run a sweep first, e.g. python sweeps/stn_mnist.py --out {run_dir}"
    )


def _read_one(path: str) -> pa.Table:
    """Read one trial file; raise ValueError with a short reason when it is not a usable log."""
    # pre_buffer=False: for small files it skips a coalescing step that costs more than the read itself;
    # an OSFile skips pyarrow's filesystem lookup for the path, a per-file cost that adds up over 20,000 files
    with pa.OSFile(path) as source:
        table = pq.ParquetFile(source, pre_buffer=False).read(use_threads=False)
    names = set(table.schema.names)  # table.column_names builds a new list on every call
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"not a trial log: missing columns {', '.join(missing)}")
    if table.num_rows == 0 or table.column("trial_id").null_count == table.num_rows:
        raise ValueError("no rows")
    return table


def _read_many(paths: list[str]) -> tuple[list[pa.Table], list[tuple[str, str]], list[int]]:
    """Read files in order; (tables, [(path, reason)], rows per good file) with one corrupt, empty or foreign file
    never fatal. Every BATCH_FILES tables are concatenated into one: thousands of small tables cost more in
    per-table objects and allocations than the rows themselves."""
    tables, bad, counts, pending = [], [], [], []
    for path in paths:
        try:
            table = _read_one(path)
        except Exception as exc:  # one bad file must not hide the other trials
            # pyarrow repeats the absolute path in its messages; the file name is listed already.
            reason = str(exc).replace(path, Path(path).name).strip().split("\n")[0] or type(exc).__name__
            bad.append((path, reason[:200]))
            continue
        pending.append(table)
        counts.append(table.num_rows)
        if len(pending) == BATCH_FILES:
            tables += _merged(pending)
            pending = []
    return tables + _merged(pending), bad, counts


def _merged(tables: list[pa.Table]) -> list[pa.Table]:
    """The tables as one table with one chunk per column, or as they are when Arrow cannot unify their types."""
    if len(tables) < 2:
        return tables
    try:
        return [_concat(tables).combine_chunks()]
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return tables  # load_logs falls back to pandas for these


def _read_chunk(paths: list[str]) -> tuple[pa.Table | None, list[tuple[str, str]], list[int]]:
    """_read_many in a worker process, concatenated so that one table crosses the process boundary, with the
    row count of each good file."""
    tables, bad, counts = _read_many(paths)
    # one chunk per column: pickling costs per chunk, and a single chunk converts to pandas without a copy
    return (_concat(tables).combine_chunks() if tables else None), bad, counts


def _concat(tables: list[pa.Table]) -> pa.Table:
    try:
        return pa.concat_tables(tables)  # same schema everywhere: the common case, and much cheaper
    except pa.ArrowInvalid:
        # "permissive" unifies files written by different code versions (a new column, int vs null, int vs float)
        return pa.concat_tables(tables, promote_options="permissive")


def _list_files(logs: Path) -> list[tuple[str, int]]:
    """(path, mtime_ns) of the files pyarrow's dataset reader would see (names starting with "." or "_", e.g.
    temp files, are ignored), in name order: one file per trial named by its id, so the rows come out already
    sorted by trial and the sort in load_logs has nothing to move."""
    found = []
    stack = [logs]
    while stack:  # os.scandir hands back the stat results with the listing: no stat call per file
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.name.startswith((".", "_")):
                    continue
                if e.is_dir():
                    stack.append(Path(e.path))
                elif e.name.endswith(".parquet") and e.is_file():
                    found.append((e.path, e.stat().st_mtime_ns))
    return sorted(found)


def load_logs(run_dir: str | Path, workers: int | None = None) -> pd.DataFrame:
    """Read RUN_DIR/logs file by file, skipping bad files, with (trial_id, epoch) unique and sorted.

    ``workers``: processes reading files in parallel (default: one per CPU core when there are more than
    PARALLEL_FILES files; 1 reads in this process). Many small files are bound by the cost of opening each
    one and decoding its footer, which processes share out; a few large files are bound by decoding the rows.
    """
    run_dir = Path(run_dir)
    logs = run_dir / "logs"
    if not logs.is_dir():
        raise _no_logs(run_dir, f"{logs} does not exist")
    listed = _list_files(logs)
    files = [p for p, _ in listed]
    if workers is None:
        workers = (os.cpu_count() or 1) if len(files) > PARALLEL_FILES else 1
    if workers > 1:
        tables, bad, counts = _read_parallel(files, workers)
    else:
        tables, bad, counts = _read_many(files)
    skipped = [{"file": str(Path(p).relative_to(logs)), "reason": r} for p, r in bad]
    if not tables:
        detail = f"{len(skipped)} unreadable file(s) in {logs}" if skipped else f"{logs} has no .parquet files"
        raise _no_logs(run_dir, detail)
    bad_paths = {p for p, _ in bad}
    mtime = np.repeat([m for p, m in listed if p not in bad_paths], counts)  # each row's file's write time
    try:
        table = _concat(tables)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # types Arrow cannot unify (text in one file, numbers in another): pandas keeps both as objects
        df = pd.concat([t.to_pandas() for t in tables], ignore_index=True, sort=False)
        rows = _unique_sorted_rows(df["trial_id"], df["epoch"], mtime)
        df = df if rows is None else df.take(rows)
    else:
        del tables  # the table holds the same buffers; to_pandas below frees each column once converted
        rows = _unique_sorted_rows(table.column("trial_id").to_pandas(), table.column("epoch").to_pandas(), mtime)
        # select on the Arrow table, before conversion: one pass over the strings' bytes instead of two
        table = table if rows is None else table.take(rows)
        # self_destruct: each Arrow column is released once converted, so the rows are not held twice. Not
        # split_blocks: its zero-copy columns would be read-only, and callers may set values in the frame.
        df = table.to_pandas(self_destruct=True)
        del table
    df = df.reset_index(drop=True)
    if not pd.api.types.is_string_dtype(df["trial_id"]):
        df["trial_id"] = df["trial_id"].astype(str)
    if df["epoch"].dtype != "int64":
        df["epoch"] = df["epoch"].astype("int64")
    df.attrs["skipped"] = skipped
    return df


def _unique_sorted_rows(trial_id: pd.Series, epoch: pd.Series, mtime: np.ndarray) -> np.ndarray | None:
    """Positions of the rows to keep, in (trial_id, epoch) order, or None when that is all rows as they are.

    Rows without a trial id or epoch are dropped. Sorting by (trial_id, epoch, file write time) and keeping the
    last of each key: a trial restored from a checkpoint re-reports the epochs after it, and a row from a newer
    file wins over an older file's. numpy on integer codes: far cheaper than drop_duplicates + sort_values on
    the strings.
    """
    valid = (trial_id.notna() & epoch.notna()).to_numpy()
    positions = None
    if not valid.all():
        positions = np.flatnonzero(valid)
        trial_id, epoch, mtime = trial_id[valid], epoch[valid], mtime[valid]
    if not pd.api.types.is_string_dtype(trial_id):
        trial_id = trial_id.astype(str)  # ids written as numbers sort as the text they become
    codes, _ = pd.factorize(trial_id, sort=True)
    epoch = epoch.to_numpy().astype("int64")
    order = np.lexsort((mtime, epoch, codes))
    codes, epoch = codes[order], epoch[order]
    keep = np.ones(len(order), dtype=bool)
    keep[:-1] = (codes[:-1] != codes[1:]) | (epoch[:-1] != epoch[1:])
    if keep.all() and np.array_equal(order, np.arange(len(order))):
        return positions  # already sorted and unique (the usual case): no copy of the rows
    rows = order[keep]
    return rows if positions is None else positions[rows]


def _read_parallel(files: list[str], workers: int) -> tuple[list[pa.Table], list[tuple[str, str]], list[int]]:
    """_read_many split over this process and workers-1 others; contiguous chunks keep the name order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # This process takes a larger first share: each worker also concatenates and ships its tables (~10% extra).
    first = -(-len(files) * 11 // (10 * workers + 1))
    step = -(-(len(files) - first) // max(1, workers - 1))
    if step < 1:  # a handful of files: the first share holds them all
        return _read_many(files)
    chunks = [files[:first]] + [files[i:i + step] for i in range(first, len(files), step)]
    # fork: spawn and forkserver re-import the caller's __main__, which breaks scripts without a main guard;
    # the workers only read files with pyarrow, whose allocator and thread pool survive a fork.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(len(chunks) - 1, mp_context=ctx) as pool:
        pending = [pool.submit(_read_chunk, c) for c in chunks[1:]]
        # this process reads the first chunk meanwhile: its tables need no transfer
        tables, bad, counts = _read_many(chunks[0])
        for future in pending:
            table, more_bad, more_counts = future.result()
            if table is not None:
                tables.append(table)
                counts.extend(more_counts)
            bad += more_bad
    return tables, bad, counts


def config_columns(df: pd.DataFrame) -> list[str]:
    """All hyperparameter columns (``config/<name>``), in log order."""
    return [c for c in df.columns if c.startswith(CONFIG_PREFIX)]


def format_value(value, digits: int | None = None) -> str:
    """Exact text for a config value (nulls -> "None", 10.0 -> "10"); ``digits`` rounds floats for display."""
    if isinstance(value, np.ndarray):
        return str(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "None"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # ints become floats in Parquet when some trials have nulls
    if isinstance(value, float) and digits:
        return f"{value:.{digits}g}"
    return str(value)  # str(float) is the shortest text that round-trips, so distinct values stay distinct


def _formatted_codes(col: pd.Series, digits: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(code per cell, text per code): format_value computed once per distinct value."""
    try:
        codes, uniques = pd.factorize(col, use_na_sentinel=False)
    except TypeError:  # unhashable values (lists): format each cell
        return np.arange(len(col)), np.array([format_value(v, digits) for v in col], dtype=object)
    if not digits:
        return codes, np.array([format_value(v) for v in uniques], dtype=object)
    return codes, np.array(_rounded_apart(list(uniques), digits), dtype=object)


def _rounded_apart(values: list, digits: int) -> list[str]:
    """format_value of each distinct value with ``digits`` significant digits, or more where fewer would make two
    values read the same (0.0012341 and 0.0012349 -> 0.001234, 0.001235; 0.0123456 beside them stays 0.0123)."""
    places = [digits] * len(values)
    texts = [format_value(v, digits) for v in values]
    while True:
        seen: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            seen.setdefault(text, []).append(i)
        clashes = [i for same in seen.values() if len(same) > 1 for i in same if places[i] < 17]
        if not clashes:
            return texts
        for i in clashes:
            places[i] += 1
            texts[i] = format_value(values[i], places[i]) if places[i] < 17 else format_value(values[i])


def _formatted(col: pd.Series, digits: int | None = None) -> np.ndarray:
    """format_value of every cell, computed once per distinct value (20k trials have few distinct configs)."""
    codes, text = _formatted_codes(col, digits)
    return text[codes] if len(text) else np.array([], dtype=object)


def block_starts(values: pd.Series) -> np.ndarray:
    """True on every row whose value differs from the row before (and on the first row): where each trial's
    block starts in a frame sorted by trial_id."""
    new = np.ones(len(values), dtype=bool)
    if len(values) < 2:
        return new
    try:
        # Arrow compares the strings in place; to_numpy would first build a Python str object per row
        arr = pa.array(values) if not pd.api.types.is_object_dtype(values) else None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        arr = None
    if arr is not None and arr.null_count == 0:
        new[1:] = pc.not_equal(arr[1:], arr[:-1]).to_numpy(zero_copy_only=False)
    else:
        v = values.to_numpy()
        new[1:] = v[1:] != v[:-1]
    return new


def group_columns(df: pd.DataFrame) -> list[str]:
    """Config columns that define a group: all but the seed, and only those that vary in this run."""
    frame = df
    if "trial_id" in df.columns and len(df) > 10_000:
        # a trial's config is the same on all its rows: look at one row per trial
        frame = df[block_starts(df["trial_id"])]
    return [c for c in config_columns(frame) if c != SEED_COLUMN and len(set(_formatted(frame[c]))) > 1]


def group_labels(frame: pd.DataFrame, columns: list[str], digits: int | None = None) -> list[str]:
    """group_label for every row of ``frame`` at once (vectorized over distinct values)."""
    if not columns:
        return ["all trials"] * len(frame)
    # One label per distinct combination of values, then repeated: 20,000 trials have a few hundred groups.
    key = np.zeros(len(frame), dtype=np.int64)
    columns_codes, texts = [], []
    for c in columns:
        codes, text = _formatted_codes(frame[c], digits)
        columns_codes.append(codes)
        texts.append([f"{c.removeprefix(CONFIG_PREFIX)}={t}" for t in text])
        key, _ = pd.factorize(key * max(len(text), 1) + codes)  # renumbered at each step: cannot overflow
    _, first = np.unique(key, return_index=True)  # a row of each combination, indexed by the combination's key
    labels = np.array([", ".join(text[codes[i]] for text, codes in zip(texts, columns_codes)) for i in first],
                      dtype=object)
    return labels[key].tolist()


def group_label(row, columns: list[str] | None = None, digits: int | None = None) -> str:
    """Legend text such as "lr=0.01, batch_size=64" for one row (a Series or dict); "all trials" if empty.

    Without ``columns`` every config key of the row except the seed is used; pass ``group_columns(df)``
    to show only what varies. Labels are exact (they key the groups) unless ``digits`` rounds floats.
    """
    if columns is None:
        columns = [c for c in row.keys() if c.startswith(CONFIG_PREFIX) and c != SEED_COLUMN]
    parts = [f"{c.removeprefix(CONFIG_PREFIX)}={format_value(row[c], digits)}" for c in columns]
    return ", ".join(parts) or "all trials"
