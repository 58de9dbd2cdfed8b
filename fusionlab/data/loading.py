"""Reading task splits: local JSONL first, the Hugging Face Hub second, with errors a user can act on.

fusionlab has to work offline, so a split is read from ``<data_dir>/<task>/<file>.jsonl`` whenever that file
exists and the hub is only a fallback. Local files (built-in and user tasks alike) are validated row by row
while they are streamed, and every problem is reported as a :class:`DataFormatError` naming the file, the
1-based line and what is wrong, because "KeyError: 'label'" from deep inside a training loop is useless
when the fix is one line of a user's CSV.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import datasets
import numpy as np

from fusionlab.config import check_name
from fusionlab.data.splits import (
    BOOLQ_COMPARABILITY_NOTE,
    boolq_split,
    grouped_split,
    passage_title,
    selection_split,
)
from fusionlab.data.tasks import TaskSpec, get_task, register_task

DATA_DIR_ENV = "FUSIONLAB_DATA_DIR"

DEV_SUBSET_SEED = 0
"""Seed of every dev subset (``max_eval_samples``). Fixed per task, never the run's seed: runs that differ only
in their seed must be scored on the same dev examples, or seed-to-seed spread mixes model variance with the
luck of the draw, and an in-training metric could not be re-checked by a later ``fusionlab evaluate``."""

Row = dict[str, Any]


class DataFormatError(ValueError):
    """A local data file is malformed: ``path``, ``line`` (1-based; None for the whole file), ``problem``."""

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        super().__init__(f"{where}: {problem}")


class DataNotFoundError(FileNotFoundError):
    """A split is neither in the data directory nor loadable from the Hugging Face Hub."""


# -- where the data lives ----------------------------------------------------------------------------------


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The directory holding ``<task>/<split>.jsonl`` files, or None if there is none.

    Order: the argument, then ``$FUSIONLAB_DATA_DIR`` (both returned even if missing, so a typo surfaces as
    "not in the data directory <typo>" instead of silently using another directory), then ``../shared/data``
    next to the working directory, then next to the checkout this package was imported from.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    package_root = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / ".." / "shared" / "data", package_root.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def _split_path(root: Path, spec: TaskSpec, split: str) -> Path:
    return root / spec.name / f"{spec.splits[split]}.jsonl"


def _uses_boolq_fallback(spec: TaskSpec, root: Path | None) -> bool:
    """BoolQ with a local validation file but no train file: both splits come from :func:`boolq_split`."""
    return (
        spec.name == "boolq"
        and root is not None
        and not _split_path(root, spec, "train").is_file()
        and _split_path(root, spec, "validation").is_file()
    )


def split_note(task: str | TaskSpec, data_dir: str | os.PathLike | None = None) -> str | None:
    """A caveat to show next to this task's scores, or None; today only the carved-out BoolQ split has one."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    return BOOLQ_COMPARABILITY_NOTE if _uses_boolq_fallback(spec, resolve_data_dir(data_dir)) else None


# -- streaming readers ---------------------------------------------------------------------------------------


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` per physical line, decoding each line alone so a bad byte has a line number."""
    with path.open("rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                # utf-8-sig on the first line drops the byte-order mark that spreadsheet exports add.
                yield line_no, raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                problem = f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset {err.start} of the line)"
                raise DataFormatError(path, line_no, problem) from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` keeps the last of two equal keys silently; a data file that repeats one is refused."""
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _jsonl_records(path: Path) -> Iterator[tuple[int, Row]]:
    """JSON objects with their line numbers; blank lines are skipped."""
    for line_no, text in _decoded_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, line_no, f"invalid JSON: {err.msg} (column {err.colno})") from None
        except RecursionError:
            raise DataFormatError(path, line_no, "JSON nested too deeply (a record is one flat object)") from None
        except _DuplicateKey as err:
            raise DataFormatError(path, line_no, f"key {err.key!r} appears twice in one object") from None
        if not isinstance(record, dict):
            raise DataFormatError(path, line_no, f"expected a JSON object, got {type(record).__name__}")
        yield line_no, record


def _csv_records(path: Path) -> Iterator[tuple[int, Row]]:
    """CSV rows as dicts keyed by the header, numbered by the file line on which each row starts."""
    reader = csv.reader(text for _, text in _decoded_lines(path))
    header: list[str] | None = None
    header_line = next_line = 1
    try:
        for fields in reader:
            line_no, next_line = next_line, reader.line_num + 1
            if not fields:  # a blank line; a row of empty fields is reported by the checks instead
                continue
            if header is None:
                header_line = line_no
                header = [name.strip() for name in fields]
                _check_header(path, line_no, header)
                continue
            if [field.strip() for field in fields] == header:
                raise DataFormatError(path, line_no, f"repeats the header (line {header_line}); remove this line")
            if len(fields) != len(header):
                problem = f"has {len(fields)} fields but the header (line 1) has {len(header)}"
                raise DataFormatError(path, line_no, problem)
            yield line_no, dict(zip(header, fields))
    except csv.Error as err:
        raise DataFormatError(path, reader.line_num, f"malformed CSV: {err}") from None


def _check_header(path: Path, line_no: int, header: list[str]) -> None:
    """Every column named, and named once: ``csv.DictReader`` would keep the last of two equal names silently."""
    seen: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if not name:
            raise DataFormatError(path, line_no, f"header column {position} has no name")
        if name in seen:
            raise DataFormatError(
                path, line_no, f"header names column {name!r} twice (columns {seen[name]} and {position})"
            )
        seen[name] = position


def _records(path: Path) -> Iterator[tuple[int, Row]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _csv_records(path)
    if suffix in (".jsonl", ".json"):
        return _jsonl_records(path)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv or .jsonl (one JSON object per line)")


def _text(path: Path, line_no: int, record: Row, column: str) -> str:
    if column not in record:
        found = ", ".join(repr(k) for k in record)
        raise DataFormatError(path, line_no, f"missing column {column!r} (found {found})")
    value = record[column]
    if not isinstance(value, str):
        raise DataFormatError(path, line_no, f"column {column!r} must be text, got {type(value).__name__}")
    if not value.strip():
        raise DataFormatError(path, line_no, f"column {column!r} is empty or whitespace-only")
    return value


def _raw_label(path: Path, line_no: int, record: Row, column: str) -> Any:
    if column not in record:
        found = ", ".join(repr(k) for k in record)
        raise DataFormatError(path, line_no, f"missing label column {column!r} (found {found})")
    return record[column]


def _read_rows(path: Path, text_fields: Sequence[str], label_field: str) -> list[tuple[int, Row]]:
    """Validated ``(line, row)`` pairs with the text fields, the raw label (as ``label``) and ``idx``.

    ``idx`` is the record's own ``idx`` when it has an integer one (so a subset can be traced back to the
    source), else its 0-based position.
    """
    rows = []
    for position, (line_no, record) in enumerate(_records(path)):
        row = {field: _text(path, line_no, record, field) for field in text_fields}
        row["label"] = _raw_label(path, line_no, record, label_field)
        idx = record.get("idx")
        row["idx"] = idx if isinstance(idx, int) and not isinstance(idx, bool) else position
        rows.append((line_no, row))
    if not rows:
        problem = "file is empty" if path.stat().st_size == 0 else "file has no data rows"
        raise DataFormatError(path, None, problem)
    return rows


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _features(spec: TaskSpec) -> datasets.Features:
    columns = {field: datasets.Value("string") for field in spec.text_fields}
    columns["label"] = datasets.ClassLabel(names=spec.label_names)
    columns["idx"] = datasets.Value("int64")
    return datasets.Features(columns)


def _to_dataset(rows: Sequence[Row], spec: TaskSpec) -> datasets.Dataset:
    columns = [*spec.text_fields, "label", "idx"]
    data = {name: [row[name] for row in rows] for name in columns}
    return datasets.Dataset.from_dict(data, features=_features(spec))


def read_task_file(path: str | os.PathLike, spec: TaskSpec) -> list[Row]:
    """Validated rows of one local split file of ``spec``: integer labels in ``[0, num_labels)``."""
    path = Path(path)
    rows = []
    for line_no, row in _read_rows(path, spec.text_fields, spec.label_field):
        label = row["label"]
        if not _is_int(label):
            raise DataFormatError(path, line_no, f"label must be an integer, got {label!r}")
        if not 0 <= label < spec.num_labels:
            problem = f"label {label} is out of range [0, {spec.num_labels}) for task {spec.name!r}"
            raise DataFormatError(path, line_no, problem)
        rows.append(row)
    return rows


# -- load_split ----------------------------------------------------------------------------------------------


def _hub_name(hub_id: tuple[str, str | None]) -> str:
    path, config = hub_id
    return f"{path} ({config})" if config else path


def _load_from_hub(spec: TaskSpec, split: str, root: Path | None) -> datasets.Dataset:
    where = (
        f"not in the data directory {root} (expected {_split_path(root, spec, split)})"
        if root is not None
        else f"not available locally (no data directory: pass data_dir or set ${DATA_DIR_ENV})"
    )
    if spec.hub_id is None:
        raise DataNotFoundError(f"Task {spec.name!r} split {split!r} is {where}, and the task has no hub id.")
    path, config = spec.hub_id
    try:
        dataset = datasets.load_dataset(path, config, split=spec.splits[split])
    except Exception as err:
        raise DataNotFoundError(
            f"Task {spec.name!r} split {split!r} is {where}, and the Hugging Face Hub dataset "
            f"{_hub_name(spec.hub_id)} could not be loaded ({type(err).__name__}: {err})."
        ) from err
    if spec.label_field != "label":
        dataset = dataset.rename_column(spec.label_field, "label")
    missing = [c for c in (*spec.text_fields, "label") if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"Hub dataset {_hub_name(spec.hub_id)} has no column(s) {missing}; it has {dataset.column_names}"
        )
    if "idx" not in dataset.column_names:
        dataset = dataset.add_column("idx", list(range(len(dataset))))
    return dataset.select_columns([*spec.text_fields, "label", "idx"])


SELECTION = "selection"
"""The split every training choice is made on: carved out of ``train`` (see :func:`carve_selection`), which then
holds the rest. ``validation`` (dev) is only ever scored."""


def selection_keys(spec: TaskSpec):
    """What ties rows together for the selection carve: their texts (BoolQ: also the passage's article)."""
    if spec.name == "boolq":
        return lambda row: (passage_title(row["passage"]), row["question"], row["passage"])
    return lambda row: tuple(row[field] for field in spec.text_fields)


def carve_selection(pool: datasets.Dataset, spec: TaskSpec) -> tuple[datasets.Dataset, datasets.Dataset]:
    """``(train, selection)`` out of all of a task's training rows (built-in and user tasks alike)."""
    rows = pool.to_list()
    try:
        train, selection = selection_split(rows, selection_keys(spec))
    except ValueError as err:
        raise ValueError(
            f"task {spec.name!r}: cannot set examples aside to choose the training step from its {len(rows)} "
            f"training rows ({err}); it needs at least two rows that share no text"
        ) from None
    return (
        datasets.Dataset.from_list(train, features=pool.features),
        datasets.Dataset.from_list(selection, features=pool.features),
    )


def _load_full(spec: TaskSpec, split: str, root: Path | None) -> datasets.Dataset:
    if split in ("train", SELECTION):
        train, selection = _carved(spec, root, _pool_stamp(spec, root))
        return train if split == "train" else selection
    return _load_pool(spec, split, root)


def _pool_stamp(spec: TaskSpec, root: Path | None) -> tuple[int, int] | None:
    """Size and modification time of the file the training pool is read from (None: not a local file)."""
    if root is None:
        return None
    source = "validation" if _uses_boolq_fallback(spec, root) else "train"
    path = _split_path(root, spec, source)
    if not path.is_file():
        return None
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=8)
def _carved(
    spec: TaskSpec, root: Path | None, stamp: tuple[int, int] | None
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The carve of one task's training pool, done once per process: a run reads ``train`` and ``selection``
    one after the other, and carving SST-2's 67 k rows takes seconds. ``stamp`` keys it to the file as it is."""
    return carve_selection(_load_pool(spec, "train", root), spec)


def _load_pool(spec: TaskSpec, split: str, root: Path | None) -> datasets.Dataset:
    """A split as the data gives it (train: before the selection part is carved off)."""
    if root is not None and _uses_boolq_fallback(spec, root):
        rows = read_task_file(_split_path(root, spec, "validation"), spec)
        train, heldout = boolq_split(rows)
        return _to_dataset(train if split == "train" else heldout, spec)
    if spec.dev_from_train and split in ("train", "validation"):
        source = _load_file_or_hub(spec, "train", root)
        rows = source.to_list()
        train, heldout = grouped_split(rows, lambda row: row[spec.text_fields[0]], spec.dev_from_train)
        return datasets.Dataset.from_list(train if split == "train" else heldout, features=source.features)
    return _load_file_or_hub(spec, split, root)


def _load_file_or_hub(spec: TaskSpec, split: str, root: Path | None) -> datasets.Dataset:
    if root is not None and _split_path(root, spec, split).is_file():
        return _to_dataset(read_task_file(_split_path(root, spec, split), spec), spec)
    return _load_from_hub(spec, split, root)


def split_unreachable(spec: TaskSpec, split: str, data_dir: str | os.PathLike | None = None) -> str | None:
    """Why ``split`` of ``spec`` cannot be loaded here, or None if it can (without loading it).

    A local file is enough. Without one, the hub is the only source: offline (``HF_HUB_OFFLINE``/
    ``HF_DATASETS_OFFLINE``) that is a definite no, online it is assumed reachable.
    """
    root = resolve_data_dir(data_dir)
    split = "train" if split == SELECTION else split
    source = "validation" if _uses_boolq_fallback(spec, root) else split
    if spec.dev_from_train and split == "validation":
        source = "train"
    if root is not None and _split_path(root, spec, source).is_file():
        return None
    where = f"not in the data directory {root}" if root is not None else "no data directory is set"
    offline = any(os.environ.get(v, "").strip() not in ("", "0") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if spec.hub_id is None or offline:
        hub = "no hub copy is known" if spec.hub_id is None else "the Hugging Face Hub is switched off (offline)"
        return f"{spec.name} {split}: {where}, and {hub}"
    return None


def subsample(dataset: datasets.Dataset, max_samples: int | None, seed: int) -> datasets.Dataset:
    """A seeded random subset kept in source order (training shuffles anyway; evaluation reads in order)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), size=max_samples, replace=False))
    return dataset.select(chosen.tolist())


def load_split(
    task: str | TaskSpec,
    split: str,
    data_dir: str | os.PathLike | None = None,
    max_samples: int | None = None,
    seed: int = 42,
) -> datasets.Dataset:
    """One split of a task as a Dataset with the text fields, ``label`` (ClassLabel) and ``idx`` columns.

    Reads ``<data_dir>/<task>/<file>.jsonl`` when it exists, else the hub. ``train`` is the training rows less
    the fixed ``selection`` part carved out of them (:func:`carve_selection`). BoolQ without a local train file
    uses the grouped split of :mod:`fusionlab.data.splits` for both train and validation (see
    :func:`split_note`). ``max_samples`` draws a subset that depends only on ``seed``.
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if split not in spec.splits and split != SELECTION:
        raise ValueError(f"Task {spec.name!r} has no {split!r} split; it has {', '.join([*spec.splits, SELECTION])}.")
    if max_samples is not None and (not _is_int(max_samples) or max_samples <= 0):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    return subsample(_load_full(spec, split, resolve_data_dir(data_dir)), max_samples, seed)


# -- user tasks ----------------------------------------------------------------------------------------------

_INT_TEXT = re.compile(r"[+-]?\d{1,30}")
MAX_CLASSES = 100
"""The most classes a user's task may have: a classification head per class, and a label column with more
distinct values is far more likely a text column picked by mistake."""
MAX_LABEL_VALUE = 1_000_000


class CustomTask(NamedTuple):
    """What :func:`task_from_file` returns; unpacks as ``spec, train, validation``."""

    spec: TaskSpec
    train: datasets.Dataset
    validation: datasets.Dataset


def _as_int(value: Any) -> int | None:
    """Integer class ids may arrive as JSON numbers or, from CSV, as digit strings."""
    if _is_int(value):
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    return None


def _encode_labels(
    path: Path, rows: list[tuple[int, Row]], label_names: Sequence[str] | None
) -> tuple[list[int], list[str]]:
    """Map raw labels to class ids and return ``(ids, label_names)``.

    Given ``label_names``, a label is a name from it or an id into it. Otherwise each distinct integer label
    is a class (in numeric order, see :func:`_integer_classes`) and string labels are numbered in sorted
    order, which is reproducible whatever order the file lists them in.
    """
    for line_no, row in rows:
        label = row["label"]
        if not (_is_int(label) or (isinstance(label, str) and label.strip())):
            raise DataFormatError(path, line_no, f"label must be a non-empty string or an integer, got {label!r}")
    if label_names is not None:
        names = [str(n) for n in label_names]
        index = {name: i for i, name in enumerate(names)}
        ids = []
        for line_no, row in rows:
            label, as_int = row["label"], _as_int(row["label"])
            if isinstance(label, str) and label.strip() in index:
                ids.append(index[label.strip()])
            elif as_int is not None and 0 <= as_int < len(names):
                ids.append(as_int)
            else:
                raise DataFormatError(path, line_no, f"label {label!r} is not one of {names} or an id into them")
        return ids, names

    int_ids = [_as_int(row["label"]) for _, row in rows]
    if all(value is not None for value in int_ids):
        return _integer_classes(path, rows, [int(value) for value in int_ids if value is not None])
    for line_no, row in rows:
        if not isinstance(row["label"], str):
            problem = f"label {row['label']!r} is an integer but other labels are strings; use one kind"
            raise DataFormatError(path, line_no, problem)
    names = sorted({row["label"].strip() for _, row in rows})
    if len(names) > MAX_CLASSES:
        raise DataFormatError(
            path, None, f"{len(names):,} distinct labels; at most {MAX_CLASSES} classes (is the label column a text?)"
        )
    index = {name: i for i, name in enumerate(names)}
    return [index[row["label"].strip()] for _, row in rows], names


def _integer_classes(path: Path, rows: list[tuple[int, Row]], values: list[int]) -> tuple[list[int], list[str]]:
    """Integer labels as classes: one class per distinct value, in numeric order, named by the value.

    So ``1..5`` star ratings or ``-1/1`` polarities work as they are. Ids far outside the others' range are
    refused at their line (a typo such as ``50000`` among ``0``/``1`` would otherwise become a class of its
    own), as are values no class id could be and more than :data:`MAX_CLASSES` classes.
    """
    for (line_no, _), value in zip(rows, values):
        if abs(value) > MAX_LABEL_VALUE:
            raise DataFormatError(
                path, line_no, f"integer label {value} is not a plausible class id (|id| ≤ {MAX_LABEL_VALUE:,})"
            )
    distinct = sorted(set(values))
    if len(distinct) > MAX_CLASSES:
        raise DataFormatError(path, None, f"{len(distinct):,} distinct integer labels; at most {MAX_CLASSES} classes")
    span = distinct[-1] - distinct[0] + 1
    if span > max(10, 2 * len(distinct)):
        median = distinct[len(distinct) // 2]
        outlier = max(values, key=lambda v: abs(v - median))
        line_no = next(line for (line, _), v in zip(rows, values) if v == outlier)
        raise DataFormatError(
            path,
            line_no,
            f"label {outlier} is far outside the other labels (the {len(distinct)} distinct values span "
            f"{distinct[0]}..{distinct[-1]}); class ids should be consecutive, e.g. 0..{len(distinct) - 1}",
        )
    index = {value: i for i, value in enumerate(distinct)}
    return [index[value] for value in values], [str(value) for value in distinct]


def task_from_file(
    path: str | os.PathLike,
    text_columns: Sequence[str],
    label_column: str = "label",
    name: str | None = None,
    label_names: Sequence[str] | None = None,
    validation_fraction: float = 0.1,
    seed: int = 42,
) -> CustomTask:
    """Build, register and load a task from a user's CSV (with header) or JSONL file.

    ``text_columns`` names one column (single texts) or two (text pairs). The rows are split at random
    (seeded) into train and validation; both keep file order. The task is registered under ``name``
    (default: the file's stem), replacing an earlier custom task of that name, so re-reading an edited file
    just works; built-in task names are refused.
    """
    path = Path(path)
    check_name(name or path.stem, "task name" if name else f"task name (from the file name {path.name!r})")
    if not 1 <= len(text_columns) <= 2:
        raise ValueError(f"text_columns must name one or two columns, got {list(text_columns)!r}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    if not path.is_file():
        raise FileNotFoundError(f"No such data file: {path}")
    lined_rows = _read_rows(path, text_columns, label_column)
    ids, names = _encode_labels(path, lined_rows, label_names)
    if len(set(ids)) < 2:
        raise DataFormatError(
            path,
            None,
            f"needs at least two distinct labels, found only {[names[i] for i in sorted(set(ids))]}",
        )
    rows = [row | {"label": label} for (_, row), label in zip(lined_rows, ids)]

    binary = len(names) == 2
    spec = TaskSpec(
        name=name or path.stem,
        text_fields=tuple(text_columns),
        label_names=names,
        label_field=label_column,
        metrics=("accuracy", "f1" if binary else "macro_f1"),
        task_type="pair_classification" if len(text_columns) == 2 else "classification",
        description=f"custom task from {path.name}",
    )

    # At least one row on each side; two rows are guaranteed by the two-distinct-labels check.
    num_val = min(max(1, round(len(rows) * validation_fraction)), len(rows) - 1)
    is_val = np.zeros(len(rows), dtype=bool)
    is_val[np.random.default_rng(seed).choice(len(rows), size=num_val, replace=False)] = True
    train = _to_dataset([r for r, v in zip(rows, is_val) if not v], spec)
    validation = _to_dataset([r for r, v in zip(rows, is_val) if v], spec)
    register_task(spec, overwrite=True)
    return CustomTask(spec, train, validation)
