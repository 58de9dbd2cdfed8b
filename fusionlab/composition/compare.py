"""Run the composition methods side by side over the same adapters, and score them the same way.

:func:`compare_methods` gives each method of :func:`~fusionlab.composition.methods.methods` the same training
budget, then loads every checkpoint it saved afresh and scores it on the target's fixed dev subset (the one every
fusionlab run of that task is scored on, whatever the seed), times a forward pass over one fixed batch of dev
inputs beside the plain encoder's, and counts parameters. On the attention fusion it also measures the
AdapterDrop and pruning curves. Everything is written to ``<workspace>/comparisons/<target>-s<seed>/``: a
workspace of its own (the source adapters copied in, so the comparison keeps the exact versions it used; the
checkpoints it trained) and ``comparison.json``.

The training loop evaluates only once, at its last step, so no method picks its weights on the dev set it is
scored on.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

from fusionlab.composition import dropping
from fusionlab.composition.dropping import CurvePoint
from fusionlab.composition.methods import FINETUNED, Method, MethodNotApplicable, Trained, methods
from fusionlab.composition.results import CompareOptions, Comparison, MethodResult
from fusionlab.composition.session import Session, comparison_dir
from fusionlab.config import ModelConfig
from fusionlab.devices import describe_device
from fusionlab.evaluation import EvaluationResult, evaluate_model
from fusionlab.metrics import majority_baseline
from fusionlab.model import FusionModel
from fusionlab.text_table import align_columns
from fusionlab.training.loop import Reporter
from fusionlab.workspace import Workspace

RESULT_FILE = "comparison.json"
Progress = Callable[[str], None]


class MethodsReporter(Reporter):
    """Follows a comparison: which method starts (of how many), what it says, and every training step through
    the :class:`~fusionlab.training.loop.Reporter` events (which may cancel it). The default ignores them all;
    the worker's (:class:`~fusionlab.composition.run.CompareReporter`) records them."""

    def method_started(self, index: int, total: int, method: str) -> None:
        """Method ``index`` (0-based) of ``total`` starts; raise to stop the comparison before it."""

    def say(self, message: str) -> None:
        """A line of progress (what the CLI printed when comparisons ran in the terminal)."""


def chosen_methods(options: CompareOptions) -> list[Method]:
    """The methods ``options`` names (all by default), with the fine-tuned merges when asked for."""
    registered = methods()
    known = registered | FINETUNED
    names = options.methods or list(registered) + ([*FINETUNED] if options.finetune else [])
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def score(session: Session, method: Method, trained: Trained) -> tuple[MethodResult, FusionModel, EvaluationResult]:
    """A fresh load of the saved checkpoint, scored on the dev subset (with its bootstrap interval); with the
    model, to time it later, and the evaluation, whose predictions pair it with the adapter's."""
    model = session.load(trained.path)
    evaluation = evaluate_model(
        model, session.dev, session.spec, session.collator, trained.adapters, keep_predictions=False
    )
    used = sum(model.adapter_manager.num_parameters(n) for n in trained.adapters)
    head = model.fusion_head if trained.kind == "fusion" else model.heads[trained.adapters[0]]
    head_params = sum(p.numel() for p in head.parameters())
    fusion_params = sum(p.numel() for p in model.get_fusion_parameters())
    sizes = {"adapter": used, "fusion": fusion_params, "head": head_params}
    trainable = sum(sizes[part] for part in trained.trained_parts)
    result = MethodResult(
        method=method.name,
        family=method.family,
        main_metric=session.spec.main_metric,
        value=float(evaluation.metrics[session.spec.main_metric]),
        metrics={k: float(v) for k, v in evaluation.metrics.items()},
        in_training_value=trained.in_training_value,
        inference_params=used + fusion_params + head_params,
        trained_params=trainable,
        latency_ms=0.0,  # timed with every other configuration at the end (see compare_methods)
        train_seconds=trained.seconds,
        checkpoint=str(trained.path.relative_to(session.root)),
        details=dict(trained.details),
        interval=evaluation.score(session.spec.main_metric),
    )
    return result, model, evaluation


def compare_methods(
    options: CompareOptions,
    workspace: Workspace,
    data_dir: str | None = None,
    model_name: str | None = None,
    progress: Progress | None = None,
    reporter: MethodsReporter | None = None,
) -> Comparison:
    """Run every chosen method for ``options.target`` over ``options.adapters``; save and return the comparison.

    Methods are trained and scored one after the other; then every configuration (each method, each point of the
    curves, the plain encoder) is timed round-robin on the same batch, so the latency ratios come from one run.
    ``reporter`` (the worker's) follows the methods and the training steps, and can cancel between and within.
    """

    def say(message: str) -> None:
        for listener in (progress, reporter.say if reporter else None):
            if listener is not None:
                listener(message)

    model_name = model_name or ModelConfig().model_name_or_path
    methods = chosen_methods(options)
    session = Session(options, workspace, data_dir, model_name, reporter=reporter)
    comparison = Comparison(
        options=options,
        model_name_or_path=model_name,
        dev_examples=len(session.dev),
        majority_baseline=majority_baseline(session.dev["labels"], session.spec)[session.spec.main_metric],
        base_latency_ms=1.0,  # replaced once timed
        device=describe_device(),
    )
    calls: dict[str, dropping.Call] = {}
    evaluations: dict[str, EvaluationResult] = {}
    for index, method in enumerate(methods):
        if reporter is not None:
            reporter.method_started(index, len(methods), method.name)
        measured = _measure(session, method, comparison, say)
        if measured is None:
            continue
        result, model, evaluations[method.name], curve_calls = measured
        comparison.results.append(result)
        calls[method.name] = dropping.model_call(model, session.latency_batch, adapter_names=measured_adapters(model))
        if "base" not in calls:
            calls["base"] = dropping.base_call(model, session.latency_batch)
        calls |= curve_calls
    _pair_with_adapter(comparison, evaluations)
    if calls:
        say(f"timing {len(calls)} configurations round-robin, {options.latency_repeats} rounds")
        _fill_latencies(comparison, dropping.time_interleaved(calls, options.latency_repeats))
    comparison.save(session.root / RESULT_FILE)
    return comparison


def _measure(
    session: Session, method: Method, comparison: Comparison, say: Progress
) -> tuple[MethodResult, FusionModel, EvaluationResult, dict[str, dropping.Call]] | None:
    """Train ``method`` and score its saved checkpoint (None if it does not apply to these adapters); on the
    attention fusion, also measure the AdapterDrop and pruning curves into ``comparison``, returning their
    configurations to time with the others."""
    say(f"{method.name}: {method.description}")
    try:
        trained = method.run(session)
    except MethodNotApplicable as err:
        say(f"{method.name}: skipped ({err})")
        return None
    result, model, evaluation = score(session, method, trained)
    say(f"{method.name}: dev {result.main_metric} {result.value:.4f}")
    curve_calls: dict[str, dropping.Call] = {}
    if method.name == "fusion:attention" and session.options.curves:
        say("AdapterDrop and pruning curves on the attention fusion")
        args = (session.spec, session.collator, session.latency_batch)
        comparison.adapter_drop, drop_calls = dropping.adapter_drop_curve(model, session.dev, *args)
        comparison.pruning, prune_calls = dropping.pruning_curve(model, session.dev, session.few_shot, *args)
        curve_calls = drop_calls | prune_calls
    return result, model, evaluation, curve_calls


def measured_adapters(model: FusionModel) -> list[str]:
    """The adapters a saved method's forward pass uses: its fusion's, else the one adapter it holds."""
    if model.fusion_config is not None:
        return list(model.fusion_config.adapter_names)
    return list(model.adapter_manager.names)


def remeasure(
    options: CompareOptions,
    workspace: Workspace,
    names: list[str],
    data_dir: str | None = None,
    progress: Progress | None = None,
) -> Comparison:
    """Train and score again the methods ``names`` of the finished comparison for ``options`` (every other row
    kept as it is), pair them afresh with the target's adapter, then time every configuration again; save it.

    For a method whose training changed after the comparison ran (weighted fusion's logits got their
    learning-rate scale): a whole comparison takes about an hour a seed on two cores, one fusion minutes. A
    method's training is seeded by the comparison's seed alone (the Trainer sets it at every start), so the row is
    what a full rerun would give it. The adapter alone is what every row is paired with: it is not remeasured.
    """
    say = progress or (lambda message: None)
    path = comparison_dir(workspace, options) / RESULT_FILE
    comparison = Comparison.load(path)
    if "adapter" in names:
        raise ValueError("the adapter alone is what every row is paired with: measure the whole comparison again")
    chosen = chosen_methods(dataclasses.replace(comparison.options, methods=list(names)))
    session = Session(comparison.options, workspace, data_dir, comparison.model_name_or_path, copy_adapters=False)
    evaluations: dict[str, EvaluationResult] = {}
    for method in chosen:
        measured = _measure(session, method, comparison, say)
        if measured is None:
            continue
        result, _model, evaluations[method.name], _curves = measured
        rows = [r.method for r in comparison.results]
        if method.name in rows:
            comparison.results[rows.index(method.name)] = result
        else:
            comparison.results.append(result)
    adapter = methods()["adapter"]
    with contextlib.suppress(MethodNotApplicable):
        evaluations["adapter"] = score(session, adapter, adapter.run(session))[2]
        _pair_with_adapter(comparison, evaluations, only=set(evaluations) - {"adapter"})
    comparison.save(path)
    say(f"timing every configuration again, {comparison.options.latency_repeats} rounds")
    return _retimed(session, comparison)


def _pair_with_adapter(
    comparison: Comparison, evaluations: dict[str, EvaluationResult], only: set[str] | None = None
) -> None:
    """Every row's paired difference from the target's own adapter, on the same dev examples: what says whether
    a method's gain is beyond noise (a paired interval that includes 0 is "within noise")."""
    alone = evaluations.get("adapter")
    if alone is None:
        return
    for result in comparison.results:
        if result.method != "adapter" and (only is None or result.method in only):
            result.vs_adapter = evaluations[result.method].difference(alone, result.main_metric)


def retime(
    workspace: Workspace, options: CompareOptions, data_dir: str | None = None, repeats: int | None = None
) -> Comparison:
    """Time a finished comparison again, from its saved checkpoints, on the same batch, round-robin; save it.

    Scores are left as they are (the checkpoints did not change); only the latencies are replaced. For a
    comparison whose timing overlapped other work on the machine: rerun this when the machine is quiet.
    """
    comparison = Comparison.load(comparison_dir(workspace, options) / RESULT_FILE)
    session = Session(comparison.options, workspace, data_dir, comparison.model_name_or_path, copy_adapters=False)
    return _retimed(session, comparison, repeats)


def _retimed(session: Session, comparison: Comparison, repeats: int | None = None) -> Comparison:
    """``comparison`` with every configuration timed again from its checkpoints in ``session``, saved: one
    session for a remeasure and its timing, so the encoder and the dev split are loaded once."""
    batch = session.latency_batch
    calls: dict[str, dropping.Call] = {}
    for result in comparison.results:
        model = session.load(session.root / result.checkpoint)
        calls[result.method] = dropping.model_call(model, batch, adapter_names=measured_adapters(model))
        calls.setdefault("base", dropping.base_call(model, batch))
        if result.method == "fusion:attention":
            for point in comparison.adapter_drop:
                calls[f"drop:{point.dropped_layers}"] = dropping.model_call(
                    model, batch, adapter_names=point.adapters, drop_first_layers=point.dropped_layers
                )
            for removed, point in enumerate(comparison.pruning):
                single = len(point.adapters) == 1
                calls[f"prune:{removed}"] = dropping.model_call(
                    model, batch, adapter_names=point.adapters, force_fusion=single
                )
    _fill_latencies(comparison, dropping.time_interleaved(calls, repeats or comparison.options.latency_repeats))
    comparison.save(session.root / RESULT_FILE)
    return comparison


def rescore_curves(
    workspace: Workspace, options: CompareOptions, data_dir: str | None = None, progress: Progress | None = None
) -> Comparison:
    """Score a finished comparison's AdapterDrop and pruning curves again from its saved attention fusion, so
    that every point gets its interval and its paired difference from the full fusion (comparisons saved before
    points recorded them); latencies are kept. Refused where a point scores otherwise than recorded: the
    checkpoint is then not the one that was measured."""
    path = comparison_dir(workspace, options) / RESULT_FILE
    comparison = Comparison.load(path)
    fusion = comparison.result("fusion:attention")
    if not (comparison.adapter_drop or comparison.pruning):
        return comparison
    if fusion is None:
        raise ValueError(f"{path}: it has curves but no attention fusion row to score them from again")
    (progress or (lambda message: None))("scoring the AdapterDrop and pruning curves again, with their intervals")
    session = Session(comparison.options, workspace, data_dir, comparison.model_name_or_path, copy_adapters=False)
    model = session.load(session.root / fusion.checkpoint)
    args = (session.spec, session.collator, session.latency_batch)
    dropped, _ = dropping.adapter_drop_curve(model, session.dev, *args)
    pruned, _ = dropping.pruning_curve(model, session.dev, session.few_shot, *args)
    comparison.adapter_drop = _same_points(comparison.adapter_drop, dropped, path)
    comparison.pruning = _same_points(comparison.pruning, pruned, path)
    comparison.save(path)
    return comparison


def _same_points(recorded: list[CurvePoint], fresh: list[CurvePoint], path: Path) -> list[CurvePoint]:
    """``fresh`` with ``recorded``'s latencies, refused unless both ran the same configurations to the same
    scores."""

    def what(points: list[CurvePoint]) -> list[tuple]:
        return [(p.label, p.adapters, p.dropped_layers, round(p.metric, 9)) for p in points]

    if what(recorded) != what(fresh):
        raise ValueError(
            f"{path}: its curves score otherwise from the saved attention fusion now ({what(fresh)} against "
            f"{what(recorded)}): the checkpoint is not the one measured; measure the comparison again"
        )
    for old, new in zip(recorded, fresh):
        new.latency_ms = old.latency_ms
    return fresh


def _fill_latencies(comparison: Comparison, timed: dict[str, float]) -> None:
    comparison.base_latency_ms = timed["base"]
    for result in comparison.results:
        result.latency_ms = timed[result.method]
    for k, point in enumerate(comparison.adapter_drop):
        point.latency_ms = timed[f"drop:{k}"]
    for removed, point in enumerate(comparison.pruning):
        point.latency_ms = timed[f"prune:{removed}"]


def format_table(comparison: Comparison) -> str:
    """The comparison as a plain-text table (the CLI's output): :meth:`Comparison.table`, each cell as text."""
    rows = comparison.table()
    if not rows:
        return "(no results)"
    header = list(rows[0])
    return "\n".join(align_columns(header, [[_cell(c, row[c]) for c in header] for row in rows], rule=True))


CELL_FORMATS = {"vs adapter alone": "{:+.4f}", "latency vs encoder": "{:.2f}×", "training (s)": "{:.1f}"}
"""How the CLI writes the columns that are not the score (4 decimals), counts (thousands) or names."""


def _cell(column: str, value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return CELL_FORMATS.get(column, "{:.4f}").format(value)
