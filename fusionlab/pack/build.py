"""``fusionlab pack build``: train every adapter and fusion of the pack from scratch with its fixed recipe.

Each artifact is trained by the project's own :class:`~fusionlab.training.FusionTrainer` on the real task data,
then scored afresh: the saved checkpoint is loaded back and evaluated on the task's full dev split, and that
number, not the training loop's, goes on the card. Artifacts already built with the same recipe are kept
(``--force`` rebuilds), so an interrupted build resumes where it stopped and one artifact can be rebuilt alone.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
import transformers

import fusionlab
from fusionlab.checkpoint import read_meta
from fusionlab.data import resolve_data_dir, split_note
from fusionlab.data.tasks import TaskSpec, get_task
from fusionlab.devices import describe_device
from fusionlab.evaluation import EvaluationResult
from fusionlab.metrics import majority_baseline
from fusionlab.pack.card import CARD_FILE, ArtifactCard, DataRecord, DevScore
from fusionlab.pack.recipe import ADAPTERS, FUSIONS, AdapterRecipe, FusionRecipe
from fusionlab.pack.store import MANIFEST_FILE, PACK_DIR, PackError, PackManifest, entry_for, file_sha256, read_card
from fusionlab.runspec import SplitUse
from fusionlab.training import FusionTrainer
from fusionlab.training.loop import resolve_precision
from fusionlab.training.trainer import TrainResult
from fusionlab.workspace import Workspace

Recipe = AdapterRecipe | FusionRecipe


def _versions() -> dict[str, str]:
    return {
        "fusionlab": fusionlab.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def _data_record(spec: TaskSpec, data_dir: Path, train_examples: int) -> DataRecord:
    def source(split: str) -> Path:
        stem = spec.splits.get(split, spec.splits["validation"])
        path = data_dir / spec.name / f"{stem}.jsonl"
        if spec.name == "boolq" and not path.is_file():  # the carved split: both come from validation
            path = data_dir / spec.name / f"{spec.splits['validation']}.jsonl"
        return path

    train, dev = source("train"), source("validation")
    return DataRecord(
        train_file=f"{spec.name}/{train.name}",
        train_sha256=file_sha256(train),
        validation_file=f"{spec.name}/{dev.name}",
        validation_sha256=file_sha256(dev),
        train_examples=train_examples,
        split_note=split_note(spec, data_dir),
    )


def _curve(result: TrainResult) -> list[dict[str, float]]:
    return [row for row in result.history if any(k.startswith("eval_") for k in row)]


def _card(
    recipe: Recipe, result: TrainResult, trainer: FusionTrainer, data_dir: Path, seconds: float, device: str
) -> ArtifactCard:
    spec = get_task(result.task)
    metric = spec.main_metric
    fresh = trainer.evaluate(result.path)  # the saved weights, loaded back, on the full dev split
    baseline = majority_baseline(fresh.label_ids, spec)
    meta = read_meta(result.path)
    train_examples = len(trainer._split(spec, "train", recipe.max_train_samples, recipe.seed))
    hashes = {a["name"]: a["content_hash"] for a in meta.get("adapters", [])}
    own, difference = None, None
    if result.kind == "fusion" and spec.name in hashes:  # the target's own adapter alone, same dev examples
        alone = trainer.evaluate(result.path, adapter_names=[spec.name])
        own = DevScore.of(alone, metric, baseline)
        difference = fresh.difference(alone, metric)
    return ArtifactCard(
        name=result.name,
        kind=result.kind,
        task=spec.name,
        recipe=recipe.to_dict(),
        data=_data_record(spec, data_dir, train_examples),
        dev=DevScore.of(fresh, metric, baseline),
        best_step=result.best_step,
        steps=result.steps,
        in_training_best=result.selection_metrics,  # on the selection split: what chose the step
        in_training_eval_examples=result.selection.selection_examples if result.selection else 0,
        content_hash=meta.get("content_hash", ""),
        adapters=list(hashes),
        adapter_hashes=hashes,
        versions=_versions(),
        device=device,
        wall_seconds=round(seconds, 1),
        curve=_curve(result),
        own_adapter_dev=own,
        own_adapter_difference=difference,
        selection=_scored_by(result.selection, fresh),
        precision=resolve_precision(recipe.training_config().mixed_precision),
    )


def _scored_by(selection: SplitUse | None, fresh: EvaluationResult) -> SplitUse | None:
    """The run's split use with the examples that score the card: the run's own dev evaluations may have been
    capped (``max_eval_samples``), the card's score is a fresh evaluation on the full dev split."""
    if selection is None:
        return None
    return replace(selection, scored_on="validation", scored_examples=fresh.num_examples)


STORAGE_DTYPE = torch.float16
"""The pack stores weights in half precision (half the size; the attention fusions are 2.7 M parameters each).
Each artifact is rounded right after training, before anything is trained on top of it, so fusions learn on
exactly the adapter weights that ship, and every card scores the rounded weights; the card also records the
full-precision score (``dev_full_precision``) so the cost of rounding is measured, not assumed."""


def compact_checkpoint(directory: Path) -> None:
    """Round a checkpoint's floating-point tensors to :data:`STORAGE_DTYPE` in place, and re-hash an adapter.

    The recorded content hash is that of the weights as they load (rounded, then cast back to float32), which
    is what a fusion trained on them records and what loading checks.
    """
    from safetensors.torch import load_file, save_file

    from fusionlab.adapters.manager import tensors_hash
    from fusionlab.checkpoint import ADAPTER_WEIGHTS, FUSION_WEIGHTS, file_sha256
    from fusionlab.workspace import CHECKPOINT_MARKER

    file = directory / (ADAPTER_WEIGHTS if (directory / ADAPTER_WEIGHTS).is_file() else FUSION_WEIGHTS)
    tensors = {k: v.to(STORAGE_DTYPE) if v.is_floating_point() else v for k, v in load_file(str(file)).items()}
    save_file(tensors, str(file))
    meta_path = directory / CHECKPOINT_MARKER
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta["kind"] == "adapter":
        adapter = {k.removeprefix("adapter."): v.float() for k, v in tensors.items() if k.startswith("adapter.")}
        meta["content_hash"] = tensors_hash(adapter)
    meta.setdefault("extra", {})["storage_dtype"] = str(STORAGE_DTYPE).removeprefix("torch.")
    meta["weights_sha256"] = file_sha256(file)  # the rounded file is the one loading checks
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _train(trainer: FusionTrainer, recipe: Recipe) -> TrainResult:
    trainer.model_config = recipe.model_config()
    config = recipe.training_config()
    if isinstance(recipe, AdapterRecipe):
        return trainer.train_adapter(recipe.task, recipe.adapter_config(), training_config=config)
    return trainer.train_fusion(
        recipe.target, list(recipe.adapters), method=recipe.method, name=recipe.name, training_config=config
    )


def _kind(recipe: Recipe) -> str:
    return "adapter" if isinstance(recipe, AdapterRecipe) else "fusion"


def _up_to_date(workspace: Workspace, recipe: Recipe) -> bool:
    """Built with this recipe and, for a fusion, over the adapters as they are now (a rebuilt adapter has
    another content hash, and the fusion trained on the old one would no longer load)."""
    directory = workspace.root / f"{_kind(recipe)}s" / recipe.name
    card = read_card(directory) if directory.is_dir() else None
    if card is None or card.recipe != recipe.to_dict():
        return False
    for name, expected in card.adapter_hashes.items():
        adapter = workspace.adapter_dir(name)
        if not adapter.is_dir() or read_meta(adapter).get("content_hash") != expected:
            return False
    return True


def _record_predictions(
    workspace: Workspace, recipe: Recipe, trainer: FusionTrainer, log: Callable[[str], None]
) -> None:
    """Give a card written before predictions were recorded its dev predictions (and its own adapter's), from a
    fresh evaluation of the same saved weights, kept only if that evaluation gives the card's very metrics."""
    directory = workspace.root / f"{_kind(recipe)}s" / recipe.name
    card = read_card(directory)
    if card is None or card.dev.predictions is not None:
        return
    log(f"{_kind(recipe)} {recipe.name}: its card records no dev predictions; scoring its saved weights again")
    card.dev = _rescored(card.dev, trainer.evaluate(directory), recipe.name)
    if card.own_adapter_dev is not None:
        alone = trainer.evaluate(directory, adapter_names=[card.task])
        card.own_adapter_dev = _rescored(card.own_adapter_dev, alone, f"{recipe.name}'s own adapter alone")
    card.save(directory / CARD_FILE)


def _record_scored_count(workspace: Workspace, recipe: Recipe, log: Callable[[str], None]) -> None:
    """Correct a card whose selection block counts the training run's capped dev evaluation instead of the full
    dev split its score comes from (cards built before :func:`_scored_by`): a fact about the card, no scoring."""
    directory = workspace.root / f"{_kind(recipe)}s" / recipe.name
    card = read_card(directory)
    if card is None or card.selection is None or card.selection.scored_examples == card.dev.examples:
        return
    log(
        f"{_kind(recipe)} {recipe.name}: its card said it was scored on {card.selection.scored_examples:,} "
        f"examples; its score is on {card.dev.examples:,}"
    )
    card.selection = replace(card.selection, scored_examples=card.dev.examples)
    card.save(directory / CARD_FILE)


def _rescored(recorded: DevScore, fresh: EvaluationResult, what: str) -> DevScore:
    """``recorded`` with the predictions of ``fresh``, refused when ``fresh`` does not give its metrics."""
    if fresh.metrics != recorded.metrics:
        raise PackError(f"{what}: scored again, it gives {fresh.metrics}, its card {recorded.metrics}; rebuild it")
    return DevScore.of(fresh, recorded.main_metric, recorded.majority_baseline)


def build_pack(
    out: str | Path = PACK_DIR,
    only: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> PackManifest:
    """Build (or resume building) the pack into ``out``; returns the manifest written to ``out/pack.json``."""
    root = resolve_data_dir(data_dir)
    if root is None or not root.is_dir():
        raise FileNotFoundError(
            "building the pack needs the task data: pass --data-dir or set $FUSIONLAB_DATA_DIR "
            "(expected <dir>/<task>/<split>.jsonl)"
        )
    recipes: list[Recipe] = [*ADAPTERS, *FUSIONS]
    if only:
        unknown = sorted(set(only) - {r.name for r in recipes})
        if unknown:
            raise ValueError(f"the pack has no artifact {unknown}; it has {', '.join(r.name for r in recipes)}")
    workspace = Workspace(out)
    device = describe_device()
    trainer = FusionTrainer(workspace=workspace, data_dir=root)
    for recipe in recipes:
        if only and recipe.name not in only:
            continue
        if not force and _up_to_date(workspace, recipe):
            log(f"{_kind(recipe)} {recipe.name}: up to date")
            _record_predictions(workspace, recipe, trainer, log)
            _record_scored_count(workspace, recipe, log)
            continue
        shutil.rmtree(workspace.root / f"{_kind(recipe)}s" / recipe.name, ignore_errors=True)  # outdated or forced
        log(f"{_kind(recipe)} {recipe.name}: training {recipe.to_json(indent=None)}")
        start = time.perf_counter()
        result = _train(trainer, recipe)
        seconds = time.perf_counter() - start
        full_precision = trainer.evaluate(result.path).metrics
        compact_checkpoint(result.path)
        card = _card(recipe, result, trainer, root, seconds, device)
        card.dev_full_precision = full_precision
        card.save(result.path / CARD_FILE)
        log(
            f"{_kind(recipe)} {recipe.name}: dev {card.dev.main_metric} {card.dev.main:.4f} on {card.dev.examples} "
            f"examples (full precision: {full_precision}; in training, best step {card.best_step}: "
            f"{card.in_training_best}); {seconds:.0f} s"
        )
    for stray in (workspace.root / "logs", workspace.root / "runs.sqlite"):
        if stray.is_dir():
            shutil.rmtree(stray, ignore_errors=True)
    manifest = PackManifest([entry_for(workspace.root, _kind(r), r.name) for r in recipes if _up_to_date(workspace, r)])
    (workspace.root / MANIFEST_FILE).write_text(manifest.to_json() + "\n", encoding="utf-8")
    return manifest
