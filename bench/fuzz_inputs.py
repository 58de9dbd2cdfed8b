"""Bad input, tried the way a careless user would: does every case end in a clear error, and is nothing lost?

Generates broken data files, checkpoints, configs, names and sizes, hands each to the real code path that would
meet it (``task_from_file`` for a ``--file``, the run contracts the CLI and the Train page build, checkpoint
loading and the workspace listing behind Home/Playground/Efficiency, the encoder loader), and sorts the outcome:

* **clear error** — fusionlab's own error, whose message names the file and line or the field (what to fix);
* **unclear error** — fusionlab's error type, but the message does not say where;
* **traceback** — any other exception (what a user would see as a crash report);
* **silently accepted** — no error at all;
* **crash** — ``MemoryError``/``RecursionError`` (the process runs under a 12 GiB address-space limit, so a huge
  allocation fails here instead of taking the machine down).

Checkpoint cases run on a fresh copy of a workspace holding the pretrained pack; after each, the workspace must
be intact: every artifact the case did not break still lists as ready, and no file was removed.
Prints a Markdown table and writes JSON; ``--quick`` skips the cases that load the encoder more than once.

Usage: ``python bench/fuzz_inputs.py [--quick] [--out bench/results/fuzz_inputs.json]``
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from report import write_report

ADDRESS_SPACE_LIMIT = 12 << 30


@dataclass
class Outcome:
    group: str
    case: str
    outcome: str
    message: str
    workspace_intact: bool | None = None


def classify(action: Callable[[], object], where: str) -> tuple[str, str]:
    """Run ``action``; ``where`` is the text a clear message must contain (file and line, or the field)."""
    from fusionlab.checkpoint import CheckpointError
    from fusionlab.data import DataFormatError

    try:
        action()
    except (MemoryError, RecursionError) as err:
        return "crash", f"{type(err).__name__}: {err}"[:300]
    except (DataFormatError, CheckpointError, ValueError, FileNotFoundError) as err:
        message = str(err)
        return ("clear error" if where in message else "unclear error"), message[:300]
    except Exception as err:  # anything else is what a user would see as a traceback
        return "traceback", f"{type(err).__name__}: {err}"[:300]
    return "silently accepted", ""


# -- data files ---------------------------------------------------------------------------------------------
def _jsonl(rows: list[str]) -> str:
    return "\n".join(rows) + "\n"


GOOD = [json.dumps({"text": f"review number {i}", "label": i % 2}) for i in range(8)]
DATA_CASES: dict[str, tuple[str, bytes, str]] = {
    # name: (file name, content, what the message must name)
    "huge integer label": (
        "huge.jsonl",
        _jsonl([*GOOD[:2], '{"text": "x", "label": 99999999999999999999}', *GOOD[2:]]).encode(),
        "line 3",
    ),
    "sparse label 50000 among 0/1": (
        "sparse.jsonl",
        _jsonl([*GOOD[:4], '{"text": "x", "label": 50000}', *GOOD[4:]]).encode(),
        "line 5",
    ),
    "header repeated mid-file": ("repeat.csv", b"text,label\na,0\nb,1\ntext,label\nc,0\n", "line 4"),
    "duplicate column names": ("dupcols.csv", b"text,label,text\na,0,b\nc,1,d\n", "line 1"),
    "duplicate JSON keys": (
        "dupkeys.jsonl",
        _jsonl([GOOD[0], '{"text": "a", "text": "b", "label": 1}']).encode(),
        "line 2",
    ),
    "deeply nested JSON": ("deep.jsonl", (GOOD[0] + "\n" + "[" * 200_000 + "]" * 200_000 + "\n").encode(), "line 2"),
    "empty file": ("empty.csv", b"", "empty.csv"),
    "header only": ("header.csv", b"text,label\n", "header.csv"),
    "invalid UTF-8": ("bytes.csv", b"text,label\na,0\n\xff\xfe,1\n", "line 3"),
    "missing label column": ("nolabel.csv", b"text,verdict\na,0\nb,1\n", "line 2"),
    "one class only": ("oneclass.csv", b"text,label\na,0\nb,0\n", "oneclass.csv"),
    "600 distinct labels (a text column)": (
        "manylabels.csv",
        ("text,label\n" + "".join(f"t{i},name{i}\n" for i in range(600))).encode(),
        "at most 100 classes",
    ),
    "fractional label": ("float.jsonl", _jsonl([GOOD[0], '{"text": "a", "label": 0.5}']).encode(), "line 2"),
    "boolean label": ("bool.jsonl", _jsonl([GOOD[0], '{"text": "a", "label": true}']).encode(), "line 2"),
    "number as text": ("numtext.jsonl", _jsonl([GOOD[0], '{"text": 12, "label": 1}']).encode(), "line 2"),
    "blank text": ("blank.csv", b"text,label\na,0\n   ,1\n", "line 3"),
    "JSON array line": ("array.jsonl", _jsonl([GOOD[0], "[1, 2]"]).encode(), "line 2"),
    "file name that is no task name": ("my reviews!.csv", b"text,label\na,0\nb,1\n", "task name"),
}


def data_cases(tmp: Path) -> list[Outcome]:
    from fusionlab.data import task_from_file

    results = []
    for case, (name, content, where) in DATA_CASES.items():
        path = tmp / name
        path.write_bytes(content)
        outcome, message = classify(lambda path=path: task_from_file(path, ["text"], "label"), where)
        results.append(Outcome("data file", case, outcome, message))
    return results


# -- names and sizes ---------------------------------------------------------------------------------------
def config_cases() -> list[Outcome]:
    from fusionlab.base_model import check_max_length
    from fusionlab.config import AdapterConfig, FusionConfig
    from fusionlab.runspec import AdapterRun, Budget, FusionRun

    names = {
        "name of 300 characters": "x" * 300,
        "name with a path": "../../etc/x",
        "name with a slash": "a/b",
        "hidden name": ".hidden",
        "reserved name": "nul",
        "name with a newline": "ab\ncd",
        "name with spaces": "my adapter",
        "markdown image as a name": "![t](http:127.0.0.1:9988?md_img)",
    }
    cases: dict[str, tuple[Callable[[], object], str]] = {}
    for case, name in names.items():
        cases[f"adapter {case}"] = (lambda name=name: AdapterRun(task="rte", name=name), "AdapterRun.name")
        cases[f"fusion {case}"] = (
            lambda name=name: FusionRun(target_task="rte", adapters=["rte", "mnli"], name=name),
            "FusionRun.name",
        )
    cases["fused adapter named ../x"] = (
        lambda: FusionRun(target_task="rte", adapters=["rte", "../x"]),
        "FusionRun.adapters",
    )
    sizes = {
        "adapter_size 200000": (lambda: AdapterConfig(adapter_size=200_000), "adapter_size: must be at most 4,096"),
        "batch 1000000": (lambda: Budget(batch_size=1_000_000).training_config(), "at most 4,096"),
        "max_length 100000": (lambda: Budget(max_length=100_000).model_config(), "max_length: must be at most 8,192"),
        "max_length 1000 > the model's 512": (lambda: check_max_length(1000, None), "512 positions"),
        "steps 10**9": (lambda: Budget(steps=10**9).training_config(), "max_steps: must be at most"),
        "learning rate -1": (lambda: Budget(learning_rate=-1.0).training_config(), "learning_rate"),
        "learning rate NaN": (lambda: Budget(learning_rate=float("nan")).training_config(), "learning_rate"),
        "learning rate inf": (lambda: Budget(learning_rate=float("inf")).training_config(), "learning_rate"),
        "epochs 1e9": (lambda: Budget(steps=-1, epochs=1e9).training_config(), "num_train_epochs"),
        "max_train_samples 10**12": (
            lambda: Budget(max_train_samples=10**12).training_config(),
            "max_train_samples: must be at most",
        ),
        "temperature 0": (lambda: FusionConfig(adapter_names=["a", "b"], temperature=0.0), "temperature"),
        "1000 attention heads": (
            lambda: FusionConfig(adapter_names=["a", "b"], num_attention_heads=1000),
            "num_attention_heads: must be at most",
        ),
        "fusion over 100 adapters": (
            lambda: FusionConfig(adapter_names=[f"a{i}" for i in range(100)]),
            "fuses at most 32 adapters",
        ),
        "stored run of another type": (lambda: AdapterRun.from_dict([1, 2]), "must be a JSON object"),  # type: ignore[arg-type]
        "stored run with a string budget": (
            lambda: AdapterRun.from_dict({"task": "rte", "training_config": {"max_steps": "9"}}),
            "max_steps",
        ),
    }
    cases.update({f"size: {k}": v for k, v in sizes.items()})
    results = []
    for case, (action, where) in cases.items():
        group = "size" if case.startswith("size: ") else "name"
        outcome, message = classify(action, where)
        results.append(Outcome(group, case.removeprefix("size: "), outcome, message))
    return results


# -- checkpoints ----------------------------------------------------------------------------------------------
def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_meta(path: Path, edit: Callable[[dict], object]) -> None:
    """Change a checkpoint's metadata in place (``edit`` mutates the parsed object)."""
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


CHECKPOINT_CASES: dict[str, tuple[str, Callable[[Path], None], str, str]] = {
    # name: (artifact broken, how, what loading it must name, kind of the artifact loaded)
    "adapter weights: a flipped byte in the middle": (
        "adapters/rte",
        lambda ws: _flip(
            ws / "adapters/rte/adapter.safetensors", (ws / "adapters/rte/adapter.safetensors").stat().st_size // 2
        ),
        "adapter.safetensors",
        "adapter",
    ),
    "adapter head: a flipped last byte": (
        "adapters/rte",
        lambda ws: _flip(ws / "adapters/rte/adapter.safetensors", -1),
        "adapter.safetensors",
        "adapter",
    ),
    "fusion weights: a flipped byte": (
        "fusions/rte-attention",
        lambda ws: _flip(ws / "fusions/rte-attention/fusion.safetensors", -3),
        "fusion.safetensors",
        "fusion",
    ),
    "fusion metadata without fusion_method": (
        "fusions/rte-attention",
        lambda ws: _edit_meta(
            ws / "fusions/rte-attention/fusionlab.json", lambda m: m["fusion_config"].pop("fusion_method")
        ),
        "fusion_method",
        "fusion",
    ),
    "fusion metadata holding a list": (
        "fusions/rte-attention",
        lambda ws: (ws / "fusions/rte-attention/fusionlab.json").write_text(
            "[" + (ws / "fusions/rte-attention/fusionlab.json").read_text() + "]"
        ),
        "fusionlab.json",
        "fusion",
    ),
    "fusion_config of the wrong type": (
        "fusions/rte-attention",
        lambda ws: _edit_meta(
            ws / "fusions/rte-attention/fusionlab.json", lambda m: m.update(fusion_config="attention")
        ),
        "fusion_config",
        "fusion",
    ),
    "num_layers as a string": (
        "fusions/rte-attention",
        lambda ws: _edit_meta(ws / "fusions/rte-attention/fusionlab.json", lambda m: m.update(num_layers="6")),
        "num_layers",
        "fusion",
    ),
    "truncated metadata": (
        "fusions/rte-attention",
        lambda ws: (ws / "fusions/rte-attention/fusionlab.json").write_text('{"kind": "fusion", "fusion_co'),
        "fusionlab.json",
        "fusion",
    ),
    "fused adapter entry without its hash": (
        "fusions/rte-attention",
        lambda ws: _edit_meta(
            ws / "fusions/rte-attention/fusionlab.json", lambda m: m["adapters"][0].pop("content_hash")
        ),
        "content_hash",
        "fusion",
    ),
    "adapters with different non-linearities": (
        "fusions/rte-attention",
        lambda ws: _edit_meta(
            ws / "adapters/mnli/fusionlab.json", lambda m: m["adapter_config"].update(non_linearity="gelu")
        ),
        "non-linearity",
        "fusion",
    ),
}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".tmp-" not in str(p)}


def checkpoint_cases(pristine: Path, tmp: Path, quick: bool) -> list[Outcome]:
    from fusionlab.dashboard.workspace_view import summarize_workspace
    from fusionlab.model import FusionModel
    from fusionlab.workspace import Workspace

    results = []
    pristine_workspace = Workspace(pristine)
    listed = len(pristine_workspace.list_adapters()) + len(pristine_workspace.list_fusions())  # every one still listed
    cases = list(CHECKPOINT_CASES.items())
    if quick:
        cases = [c for c in cases if c[1][3] == "fusion" and "weights" not in c[0]]
    for i, (case, (artifact, breakage, where, kind)) in enumerate(cases):
        root = tmp / f"ws{i}"
        shutil.copytree(pristine, root)
        breakage(root)
        before = _files(root)
        workspace = Workspace(root)
        directory = root / artifact
        adapters = root / "adapters"
        outcome, message = classify(
            lambda d=directory, a=adapters: FusionModel.from_pretrained(d, adapters_dir=a), where
        )
        try:  # the listing behind Home, Playground and Efficiency must survive one broken entry
            summary = summarize_workspace(workspace)
        except Exception as err:
            results.append(
                Outcome("checkpoint", case, outcome, f"{message} [listing: {type(err).__name__}: {err}]", False)
            )
            continue
        rows = {row.name: row for row in (*summary.adapters, *summary.fusions)}
        broken = {artifact.split("/")[1], "rte-attention"} if kind == "adapter" else {artifact.split("/")[1]}
        if case == "adapters with different non-linearities":
            broken |= {"imdb-attention"}  # imdb-attention fuses mnli too
        others_ready = all(row.problem is None for name, row in rows.items() if name not in broken)
        intact = others_ready and _files(root) >= before and len(rows) == listed
        results.append(Outcome("checkpoint", case, outcome, message, intact))
    return results


def model_path_cases(tmp: Path) -> list[Outcome]:
    from fusionlab.base_model import default_model_path, load_encoder

    pickled = tmp / "pickled-model"
    pickled.mkdir()
    shutil.copy(default_model_path() / "config.json", pickled / "config.json")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04\x95 not really a pickle")
    outcome, message = classify(lambda: load_encoder(str(pickled)), str(pickled))
    return [Outcome("model path", "a pytorch_model.bin pickle and no safetensors", outcome, message)]


def leftover_cases(pristine: Path, tmp: Path) -> list[Outcome]:
    from fusionlab.pack.store import ready_workspace

    root = tmp / "leftovers"
    shutil.copytree(pristine, root)
    dead = root / "adapters" / ".tmp-999999999-sst2-abc"  # no such pid: its writer is gone
    dead.mkdir()
    (dead / "adapter.safetensors").write_bytes(b"half")

    def reopen() -> None:
        ready_workspace(root)
        if dead.exists():
            raise AssertionError("the abandoned directory is still there")

    outcome, message = classify(reopen, "")
    outcome = "cleaned up" if outcome == "silently accepted" else outcome
    return [
        Outcome(
            "workspace", "half-written directory of a killed run", outcome, message, _files(root) >= _files(pristine)
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="bench/results/fuzz_inputs.json")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fusionlab.pack import PACK_DIR
    from fusionlab.pack.store import install_pack
    from fusionlab.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="fusionlab-fuzz-") as name:
        tmp = Path(name)
        pristine = tmp / "pristine"
        install_pack(Workspace(pristine).ensure(), PACK_DIR)  # the bundled pack, whatever $FUSIONLAB_PACK says
        results = data_cases(tmp) + config_cases() + model_path_cases(tmp)
        results += checkpoint_cases(pristine, tmp, args.quick) + leftover_cases(pristine, tmp)
    print("| input | case | outcome | workspace intact | message |")
    print("|---|---|---|---|---|")
    for r in results:
        intact = "–" if r.workspace_intact is None else ("yes" if r.workspace_intact else "**no**")
        shown = r.message.replace("|", "\\|").replace("\n", " ")[:110]
        print(f"| {r.group} | {r.case} | {r.outcome} | {intact} | {shown} |")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
    print("\n" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" ({len(results)} cases)")
    write_report(args.out, {"results": [asdict(r) for r in results], "counts": counts})


if __name__ == "__main__":
    main()
