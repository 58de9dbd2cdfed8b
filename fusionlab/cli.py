"""The ``fusionlab`` command line.

Training commands do not train in the terminal's process: they queue a run in the workspace's run store, make
sure a worker is serving the queue, and follow the run with a progress bar. The run is therefore recorded
exactly like one started from the dashboard, survives a closed terminal, and Ctrl-C offers to cancel it.
``--inline`` trains in this process instead (no worker; still recorded nowhere but the checkpoint).

Only light modules are imported here: torch, transformers, pandas, the trainer, the pack's checkpoints and the
composition lab are imported inside the commands that use them, so ``fusionlab --help`` and every
``fusionlab COMMAND --help`` answer at once instead of loading a deep-learning stack first (a test checks that
importing this module loads no torch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import fusionlab
from fusionlab import config
from fusionlab.backends import DEFAULT_MAX_ATTEMPTS, RAY, BackendSettings, add_backend_flags
from fusionlab.budgets import (
    COMPARE,
    COMPARE_LATENCY_REPEATS,
    COMPARE_SEARCH_EVALUATIONS,
    MAX_LATENCY_REPEATS,
    PROFILES,
    resolve_budget,
)
from fusionlab.config import NON_LINEARITIES, AdapterConfig, FusionConfig
from fusionlab.curve import MAX_SIZE, CurvePlan
from fusionlab.dashboard.server_config import SERVER_FLAGS, add_server_flags
from fusionlab.devices import AUTO, device_argument
from fusionlab.reported import Reported
from fusionlab.runspec import (
    AdapterRun,
    Budget,
    CustomData,
    FusionRun,
    RunKind,
    RunSpec,
    fusion_name,
    run_record,
    run_result,
)
from fusionlab.runstore import TERMINAL_STATUSES, Run, RunStore
from fusionlab.worker import DEFAULT_IDLE_EXIT_SECONDS, DEFAULT_NICENESS
from fusionlab.workspace import Workspace

FOLLOW_POLL_S = 0.5
RESTART_WORKER_S = 10.0
"""With the Ray backend, the follower starts a dispatcher for a queued run at most this often (one that cannot
reach its cluster exits at once, saying why in the run's message: it is not restarted twice a second)."""

RUNS_ACTIONS = {
    "list": "the latest runs, newest first, with their status and main metric",
    "show": "one run (give its ID): its record, configuration and metric curves",
    "cancel": "stop a queued or running run (give its ID); a run that has ended stays as it was",
}
PACK_ACTIONS = {
    "list": "the pack's adapters and fusions with their dev scores, read from their cards",
    "install": "copy the pack into the workspace (a new workspace gets it anyway, unless FUSIONLAB_PACK=off)",
    "build": "retrain the pack from the task data (hours on a CPU; artifacts already up to date are kept)",
    "verify": "check the pack in use against its cards, here: its files against the manifest, each card's metrics "
    "against its recorded predictions, and the saved weights re-predicting a sample of dev examples as recorded "
    "(needs the task data; a minute or two)",
}
DEMO_PROFILES = {
    "classroom": "two fusions, imdb-live and rte-live, trained live over the pretrained pack's adapters "
    "(a few minutes on a CPU)",
    "tiny": "four adapters and two fusions of its own, a few steps each (tests, and machines without the pack)",
}
"""The demo's profiles as ``--help`` describes them; the plans themselves are :data:`fusionlab.demo.PROFILES`
(which loads the data layer, so it is read only when the demo runs; a test keeps the two lists equal)."""

MAX_VERIFY_EXAMPLES = 20_000
"""More dev examples than any shipped task has (MNLI: 9,815): ``verify --examples`` is bounded like every size."""


def bounded_int(low: int, high: int, flag: str):
    """An argparse type: an integer in [low, high], refused in the user's words otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{flag} must be between {low:,} and {high:,}, got {value:,}")
        return value

    return parse


# -- help -----------------------------------------------------------------------------------------------------
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's formatter, with each option's default shown where it has one and line breaks kept.

    The stock formatter reflows every text into one paragraph, which would run a list of choices (one a line,
    each with what it does) together; and ``ArgumentDefaultsHelpFormatter`` alone would print "(default:
    None)" after every option that is simply unset, or repeat a default its help already names.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if unset or "default" in text:
            return text
        return super()._get_help_string(action) or ""

    def _split_lines(self, text: str, width: int) -> list[str]:
        lines: list[str] = []
        for line in text.splitlines():  # a loop, not a comprehension: super() needs this frame
            lines += super()._split_lines(line, width) or [""]
        return lines

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Each line on its own; an indented line (a list item) wraps under itself, past its own indent."""
        filled = []
        for line in text.splitlines():
            own = indent + line[: len(line) - len(line.lstrip())]
            hanging = own + "    " if own != indent else own
            filled.append(textwrap.fill(line.strip(), width, initial_indent=own, subsequent_indent=hanging))
        return "\n".join(filled)


class CommandParser(argparse.ArgumentParser):
    """A command's parser whose epilog can be written when its help is shown rather than when the CLI starts.

    ``compare --help`` lists the composition lab's methods, read from its registry, which loads torch: written
    eagerly, every ``fusionlab`` call (``--help`` included) would wait for torch to list them.
    """

    def __init__(self, *args: Any, epilog_from: Callable[[], str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.epilog_from = epilog_from

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog, self.epilog_from = self.epilog_from(), None
        return super().format_help()


def choices_help(choices: Mapping[str, str]) -> str:
    """An argument's help that names each choice with what it does, one a line (see :class:`HelpFormatter`)."""
    return "\n".join(f"{name}: {text}" for name, text in choices.items())


def compare_methods_help() -> str:
    """``compare``'s epilog: every method it can run, with what it trains, read from the registry now (a fusion
    method registered at run time is among them)."""
    from fusionlab.composition.methods import FINETUNED, methods

    lines = ["methods (--methods picks some; default: all but the +ft ones, which --finetune adds):"]
    lines += [f"  {method.name}: {method.description}" for method in (*methods().values(), *FINETUNED.values())]
    return "\n".join(lines)


def ready_workspace(home: str | Path | None) -> Workspace:
    """:func:`fusionlab.pack.store.ready_workspace`, imported when a command needs a workspace: the pack's store
    reads checkpoints, which loads torch."""
    from fusionlab.pack.store import ready_workspace as ready

    return ready(home)


def own_name(workspace: Workspace, name: str, kind: str = "adapter") -> str:
    """:func:`fusionlab.pack.store.own_name`, imported when needed (see :func:`ready_workspace`)."""
    from fusionlab.pack.store import own_name as own

    return own(workspace, name, kind=kind)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide the "Loading weights" and "Tokenising" progress bars while fusionlab loads a model and its examples
    for a short answer (``predict``, ``pack verify``).

    transformers 5 draws a bar for every model it loads and datasets one for every map; around a prediction or a
    line per checked model they are noise. Only those libraries' own bars are switched off, and only for the
    duration, as they were before.
    """
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as hf_logging

    switches = [
        (hf_logging.is_progress_bar_enabled(), hf_logging.enable_progress_bar, hf_logging.disable_progress_bar),
        (
            datasets_logging.is_progress_bar_enabled(),
            datasets_logging.enable_progress_bar,
            datasets_logging.disable_progress_bar,
        ),
    ]
    for _, _, disable in switches:
        disable()
    try:
        yield
    finally:
        for was_enabled, enable, _ in switches:
            if was_enabled:
                enable()


# -- argument groups shared by the training commands ------------------------------------------------------
def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help="workspace directory (default: $FUSIONLAB_HOME or ./fusionlab-workspace)")
    parser.add_argument("--data-dir", help="task data directory (default: $FUSIONLAB_DATA_DIR or ../shared/data)")


def _add_custom_task(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("your own data (the task argument then names the new task)")
    group.add_argument("--file", help="CSV (with header) or JSONL file of labelled examples")
    group.add_argument("--text-columns", default="text", help="one column, or two comma-separated for pairs")
    group.add_argument("--label-column", default="label", help="the column holding each example's label")


def _custom_task(args: argparse.Namespace, task: str) -> CustomData | None:
    if not args.file:
        return None
    from pathlib import Path

    columns = [c.strip() for c in args.text_columns.split(",") if c.strip()]
    return CustomData(str(Path(args.file).resolve()), columns, args.label_column, task)


def _add_training(parser: argparse.ArgumentParser, stage: str) -> None:
    group = parser.add_argument_group(
        "training (options left out come from --profile: by default the pretrained pack's recipe for the task, "
        "where it has one; see `fusionlab pack list`)"
    )
    group.add_argument(
        "--profile",
        choices=list(PROFILES),
        default="recipe",
        help="where unset options come from: "
        + "; ".join(f"{name}: {text}" for name, text in PROFILES.items())
        + " (default: %(default)s)",
    )
    group.add_argument("--model", default=None, help="base model (hub name or path; default: bundled all-MiniLM-L6-v2)")
    group.add_argument("--max-length", type=int, default=None, help="tokens per example")
    group.add_argument("--max-steps", type=int, default=None, help="optimisation steps")
    group.add_argument("--epochs", type=float, default=None, help="train this many epochs instead of a step count")
    group.add_argument("--batch-size", type=int, default=None, help="per-device batch")
    group.add_argument("--lr", type=float, default=None, help="learning rate")
    group.add_argument("--max-train-samples", type=int, default=None, help="seeded subset of the train split")
    group.add_argument(
        "--max-eval-samples", type=int, default=None, help="at most this many selection and dev examples (fixed)"
    )
    group.add_argument(
        "--eval-steps", type=int, default=None, help="evaluate on the selection split (carved from train) every N steps"
    )
    group.add_argument("--early-stopping-patience", type=int, default=None, help="stop after N worse evaluations")
    group.add_argument("--seed", type=int, default=None, help="random seed (default 42)")
    group.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        default=None,
        help="recompute activations in the backward pass: less memory, about one more forward pass of time",
    )
    group.add_argument("--inline", action="store_true", help="train in this process instead of the worker")
    group.add_argument("--no-wait", action="store_true", help="queue the run and return at once")
    parser.set_defaults(stage=stage)


def _budget(args: argparse.Namespace, task: str) -> Budget:
    """The budget of the run the options describe: ``--profile``'s, with every option given on top of it."""
    return resolve_budget(
        task,
        args.stage,
        args.profile,
        steps=args.max_steps,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        eval_steps=args.eval_steps,
        snapshot_steps=getattr(args, "snapshot_steps", None),
        early_stopping_patience=args.early_stopping_patience,
        seed=args.seed,
        model=args.model,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def _check_run(run: RunSpec) -> None:
    """Fail in the terminal, not minutes later in the worker: the task must exist, the user's file be readable."""
    from fusionlab.base_model import check_max_length
    from fusionlab.data import get_task

    custom_task = getattr(run, "custom_task", None)
    if custom_task is not None:
        custom_task.load()  # reads and checks the file, registers the task here
    get_task(run.task_name)
    model_config = getattr(run, "model_config", None)
    if model_config is not None:
        check_max_length(model_config.max_length, model_config.model_name_or_path)


# -- commands -----------------------------------------------------------------------------------------------
def cmd_train_adapter(args: argparse.Namespace) -> int:
    return _launch(adapter_run(args), args)


def adapter_run(args: argparse.Namespace) -> AdapterRun:
    """The ``train_adapter`` run the command line describes (what ``train-adapter`` queues)."""
    budget = _budget(args, args.task)
    name = args.name
    if not name:
        name = own_name(ready_workspace(args.home), args.task)
        if name != args.task:
            print(f"{args.task!r} is the pretrained pack's adapter (read-only): saving this one as {name!r}")
    return AdapterRun(
        task=args.task,
        name=name,
        adapter_config=AdapterConfig(
            adapter_size=args.adapter_size, task_name=args.task, non_linearity=args.non_linearity
        ),
        training_config=budget.training_config(),
        model_config=budget.model_config(),
        data_dir=args.data_dir,
        custom_task=_custom_task(args, args.task),
    )


def cmd_train_fusion(args: argparse.Namespace) -> int:
    return _launch(fusion_run(args), args)


def fusion_run(args: argparse.Namespace) -> FusionRun:
    """The ``train_fusion`` run the command line describes (what ``train-fusion`` queues)."""
    budget = _budget(args, args.target)
    adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    name = args.name
    if not name:
        default = fusion_name(args.target, args.method)
        name = own_name(ready_workspace(args.home), default, kind="fusion")
        if name != default:
            print(f"{default!r} is the pretrained pack's fusion (read-only): saving this one as {name!r}")
    return FusionRun(
        target_task=args.target,
        adapters=adapters,
        name=name,
        fusion_config=FusionConfig(
            fusion_method=args.method,
            adapter_names=adapters,
            num_attention_heads=args.heads,
            temperature=args.temperature,
            value_regularization=args.value_regularization,
        ),
        training_config=budget.training_config(),
        model_config=budget.model_config(),
        data_dir=args.data_dir,
        custom_task=_custom_task(args, args.target),
    )


def _launch(run: RunSpec, args: argparse.Namespace) -> int:
    """Queue ``run`` for the workspace's worker and follow it (or return at once with ``--no-wait``); with
    ``--inline``, execute it in this process instead, still recorded in the run store."""
    _check_run(run)
    workspace = ready_workspace(args.home)
    if args.inline:
        from fusionlab.worker import run_inline

        ended = run_inline(workspace, run.kind, run.name, run.to_dict())
        _print_run_outcome(ended)
        return 0 if ended.status == "finished" else 1
    from fusionlab.worker import ensure_worker

    store = RunStore(workspace.runs_db)
    run_id = store.enqueue(run.kind, run.name, run.to_dict())
    ensure_worker(workspace)
    print(f"queued run {run_id} ({run.kind} {run.name}) in {workspace.root}")
    if args.no_wait:
        return 0
    return _follow(store, [run_id], workspace)


def _follow(store: RunStore, run_ids: Sequence[int], workspace: Workspace | None = None) -> int:
    """Show a progress bar per run until all have ended; Ctrl-C asks whether to cancel them.

    A worker that dies (SIGKILL, the OOM killer) cannot record its end: the follower notices within a poll,
    marks the run failed with the reason and, for the runs still queued behind it, starts a new worker.
    """
    from tqdm import tqdm

    from fusionlab.processes import pid_alive
    from fusionlab.runstore import QUEUED
    from fusionlab.worker import ensure_worker, worker_running

    failed = 0
    started_at = float("-inf")
    throttle = RESTART_WORKER_S if BackendSettings.from_environment().is_ray else 0.0
    try:
        for run_id in run_ids:
            run = store.get(run_id)
            with tqdm(total=100, desc=f"run {run_id} {run.name}", unit="%", leave=True) as bar:
                while run.status not in TERMINAL_STATUSES:
                    store.mark_dead_runs_failed(pid_alive)
                    waited = time.monotonic() - started_at >= throttle  # a dispatcher may exit at once
                    if run.status == QUEUED and workspace is not None and not worker_running(workspace) and waited:
                        started_at = time.monotonic() if ensure_worker(workspace) else started_at
                    bar.n = round(100 * (run.progress or 0))
                    position = store.queue_position(run_id)
                    bar.set_postfix_str(f"queued #{position}" if position else (run.message or run.status))
                    bar.refresh()
                    time.sleep(FOLLOW_POLL_S)
                    run = store.get(run_id)
                bar.n = 100 if run.status == "finished" else bar.n
                bar.set_postfix_str(run.status)
            failed += run.status != "finished"
            _print_run_outcome(run)
    except KeyboardInterrupt:
        answer = input("\ncancel the run(s)? [y/N] ") if sys.stdin.isatty() else "n"
        if answer.strip().lower().startswith("y"):
            for run_id in run_ids:
                store.request_cancel(run_id)
            print("cancel requested")
        else:
            print("the worker keeps going; follow with `fusionlab runs show ID`")
        return 130
    return 1 if failed else 0


def _print_run_outcome(run: Run) -> None:
    result = run_result(run)
    if run.status == "finished" and run.kind == RunKind.COMPARE:
        _print_comparison(Path(run.artifacts["comparison"]))
    elif run.status == "finished" and result is not None:
        print(f"run {run.id}: {result.kind} {run.name} on {result.task}")
        for line in Reported.from_result(result).lines(result.task):  # the main metric, with its interval
            print(f"  {line}")
        others = ", ".join(f"{k}={v:.3f}" for k, v in result.metrics.items() if k != result.main_metric)
        if others:  # the run recorded an interval for its main metric only: say so rather than print bare ranks
            print(f"  other metrics, no interval recorded (`fusionlab evaluate {run.name}` gives each one): {others}")
        print(f"saved to {result.checkpoint}")
    elif run.status == "failed":
        print(f"run {run.id} {run.name} failed: {(run.error or '').splitlines()[0] if run.error else 'unknown'}")
    else:
        print(f"run {run.id} {run.name}: {run.status}")


def _checkpoint_dir(workspace: Workspace, name: str) -> Path:
    from fusionlab.checkpoint import CheckpointError

    for candidate in (workspace.fusion_dir(name), workspace.adapter_dir(name)):
        if candidate.is_dir():
            return candidate
    raise CheckpointError(
        f"no adapter or fusion named {name!r} in {workspace.root} "
        f"(adapters: {workspace.list_adapters() or 'none'}; fusions: {workspace.list_fusions() or 'none'})"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fusionlab.checkpoint import read_meta
    from fusionlab.pack.store import reported_of
    from fusionlab.training import FusionTrainer

    workspace = ready_workspace(args.home)
    path = _checkpoint_dir(workspace, args.name)
    adapters = args.adapters.split(",") if args.adapters else None
    result = FusionTrainer(workspace=workspace, data_dir=args.data_dir).evaluate(
        path, adapter_names=adapters, task=args.task, max_samples=args.max_samples, split=args.split
    )
    where = "dev" if args.split == "validation" else "selection (carved from train)"
    print(f"{args.name} on {result.task} ({result.num_examples} {where} examples), adapters {result.adapter_names}")
    for key in result.metrics:
        print(f"  {key}: {result.score(key).text(4)}")  # with its 95 % bootstrap interval
    selection = reported_of(path, read_meta(path).get("extra", {})).selection_text()  # a pack artifact's card
    print(f"  checkpoint {selection}")
    print("  confusion matrix (rows: gold, columns: predicted):")
    for line in result.confusion_table().splitlines():
        print(f"    {line}")
    if result.fusion_stats:
        print("  mean fusion weight per layer: " + " | ".join(result.fusion_stats.adapter_names))
        for i, row in enumerate(result.fusion_stats.mean, 1):
            print(f"    layer {i}: " + "  ".join(f"{w:.3f}" for w in row))
    if args.json:
        print(json.dumps(result.to_dict() | {"predictions": None}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fusionlab.base_model import load_tokenizer
    from fusionlab.model import FusionModel
    from fusionlab.prediction import encode_input, predict

    workspace = ready_workspace(args.home)
    path = _checkpoint_dir(workspace, args.name)
    if not args.text.strip():
        raise ValueError("the text is empty")
    with quiet_loading():
        model = FusionModel.from_pretrained(path, adapters_dir=workspace.adapters_dir).eval()
        tokenizer = load_tokenizer(model.model_config.model_name_or_path)
    encoded = encode_input(tokenizer, args.text, args.text_pair, model.model_config.max_length)
    if encoded.truncated:
        print(f"note: the text was truncated to {encoded.kept_tokens} tokens (it had {encoded.original_tokens})")
    adapters = args.adapters.split(",") if args.adapters else None
    override = None
    if args.set_weight:
        from fusionlab.fusion.override import parse_setting

        override = parse_setting(args.set_weight, args.weight_layer)
    prediction, _ = predict(model, encoded, adapters, fusion_weight_override=override)
    print(f"prediction: {prediction.label}  (adapters: {', '.join(prediction.adapters)})")
    if override is not None:
        where = "every layer" if override.layer is None else f"layer {override.layer + 1}"
        shown = ", ".join(f"{name}={value:g}" for name, value in override.weights.items())
        print(f"  with fusion weights set by hand in {where}: {shown} (the others keep their learned proportions)")
    for label, p in zip(prediction.labels, prediction.probabilities):
        print(f"  {label:<16} {p:.4f}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore(Workspace(args.home).ensure().runs_db)
    if args.action == "show":
        run = store.get(args.id)
        if args.json:
            print(json.dumps(run_record(run) | {"config": run.config}, indent=2))
            return 0
        print(json.dumps({k: v for k, v in run.__dict__.items()}, indent=2, default=str))
        metrics = store.metrics(args.id)
        if len(metrics):
            print(metrics.pivot_table(index="step", columns="name", values="value").to_string())
        return 0
    if args.action == "cancel":
        status = store.request_cancel(args.id)
        print(f"run {args.id}: {status}")
        return 0
    runs = store.list_runs(status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([run_record(run) for run in runs], indent=2))
        return 0
    if not runs:
        print("no runs yet")
        return 0
    print(f"{'id':>4}  {'kind':<14}{'name':<28}{'status':<11}{'progress':>9}  dev score [95 %] (n)")
    for run in runs:
        result = run_result(run)
        main = result.summary_text() if result else ""
        print(
            f"{run.id:>4}  {run.kind:<14}{run.name[:27]:<28}{run.status:<11}{100 * (run.progress or 0):>8.0f}%  {main}"
        )
    return 0


def server_argv(args: argparse.Namespace) -> list[str]:
    """The server flags ``fusionlab serve`` was given, as the dashboard reads them after ``--``."""
    argv: list[str] = []
    for dest in SERVER_FLAGS:
        value = getattr(args, dest, None)
        flag = "--max-queued" if dest == "max_queued_per_visitor" else "--" + dest.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return argv


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the server's settings here, where the teacher sees the answer, then start the dashboard.

    A bad setting (a passphrase too short, a workspace root that does not exist) stops it before any visitor
    connects; ``streamlit run app.py`` alone would start and show every visitor the error instead.
    """
    import os
    import subprocess

    from fusionlab.dashboard.server_config import load_server_config

    argv = server_argv(args)
    try:
        config = load_server_config(argv)
    except (ValueError, OSError) as err:
        print(f"fusionlab serve: the server's settings are invalid, so it was not started: {err}", file=sys.stderr)
        return 2
    app = Path(__file__).resolve().parents[1] / "app.py"
    if not app.is_file():
        print(f"fusionlab serve: the dashboard's app.py is not at {app} (run from a source checkout)", file=sys.stderr)
        return 2
    mode = "classroom" if config.classroom else "single user"
    if config.backend == RAY:
        mode += f", runs on the Ray cluster at {config.ray_address}"
    print(f"settings checked ({mode}, workspace {config.home}); starting the dashboard on port {args.port}")
    if args.check:
        return 0
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port), "--", *argv]
    return subprocess.call(command, cwd=app.parent, env=os.environ)


def cmd_worker(args: argparse.Namespace) -> int:
    if args.backend == RAY:
        return _serve_ray(args)
    from fusionlab.worker import serve

    if serve(args.home, args.device, args.once, args.idle_exit, args.nice) is None:
        print("another worker already serves this workspace")
    return 0


def _serve_ray(args: argparse.Namespace) -> int:
    """``fusionlab worker --backend ray``: the workspace's dispatcher to a Ray cluster (fusionlab.ray_backend)."""
    import logging

    from fusionlab.ray_backend.dispatcher import ClusterUnreachable, serve_ray
    from fusionlab.worker import lower_priority

    try:
        settings = BackendSettings(
            backend=RAY,
            ray_address=args.ray_address,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
            max_attempts=args.max_attempts,
        )
    except ValueError as err:
        print(f"fusionlab worker: {err}", file=sys.stderr)
        return 2
    lower_priority(args.nice)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [dispatcher %(process)d] %(message)s")
    try:
        ended = serve_ray(args.home, settings, args.once, args.idle_exit)
    except ClusterUnreachable as err:
        print(f"fusionlab worker: {err}; the queued runs stay queued", file=sys.stderr)
        return 2
    if ended is None:
        print("another Ray dispatcher already serves this workspace")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from fusionlab.demo import missing_adapters, missing_data, workspace_plan

    workspace = ready_workspace(args.home)
    problems = missing_data(args.profile, args.data_dir)
    lacking = missing_adapters(args.profile, set(workspace.list_adapters()))
    if lacking:
        problems.append(f"adapters {', '.join(lacking)} are neither in {workspace.root} nor in the pretrained pack")
    if problems:
        print("fusionlab: the demo cannot run here; nothing was queued:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print("  (the pretrained pack's adapters and fusions are in the workspace and need no data)", file=sys.stderr)
        return 2
    store = RunStore(workspace.runs_db)
    plan = workspace_plan(workspace, args.profile, args.data_dir)  # the pack's adapters are used, not retrained
    started = time.monotonic()
    if args.inline:
        from fusionlab.worker import run_inline

        ended = [run_inline(workspace, run.kind, run.name, run.to_dict()) for run in plan]
        for run in ended:
            _print_run_outcome(run)
        code = 0 if all(run.status == "finished" for run in ended) else 1
    else:
        from fusionlab.worker import ensure_worker

        run_ids = [store.enqueue(run.kind, run.name, run.to_dict()) for run in plan]
        ensure_worker(workspace)
        print(f"queued {len(run_ids)} demo runs in {workspace.root}: {', '.join(run.name for run in plan)}")
        if args.no_wait:
            return 0
        code = _follow(store, run_ids, workspace)
    print(f"demo finished in {time.monotonic() - started:.0f} s")
    _print_fusion_comparison(workspace, [run.name for run in plan if isinstance(run, FusionRun)])
    return code


def _print_fusion_comparison(workspace: Workspace, fusions: Sequence[str]) -> None:
    """Each fusion's dev score beside its target's own adapter alone, on the same dev examples."""
    from fusionlab.checkpoint import CheckpointError, read_meta

    for name in fusions:
        try:
            extra = read_meta(workspace.fusion_dir(name)).get("extra", {})
        except CheckpointError:
            continue
        reported = Reported.from_extra(extra)
        if reported.value is None:
            continue
        print(f"  {name}:")
        for line in reported.lines(extra.get("task")):
            print(f"    {line}")


def cmd_tasks(args: argparse.Namespace) -> int:
    from fusionlab.data import TASKS, split_note

    for spec in TASKS.values():
        note = split_note(spec, args.data_dir)
        print(f"{spec.name:<7} {spec.description}  [{', '.join(spec.label_names)}; metric {spec.main_metric}]")
        if note:
            print(f"        note: {note}")
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    """Print the paper's Figure 5 as a table (or JSON), over the workspace's fusions and the pack's."""
    from fusionlab.usage import adapter_usage

    workspace = ready_workspace(args.home)
    if not workspace.list_fusions():
        print(f"no fusions in {workspace.root}; train one with `fusionlab train-fusion`")
        return 0
    usage = adapter_usage(workspace)
    print(json.dumps(usage.to_dict(), indent=2) if args.json else usage.format_table())
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from fusionlab.pack.store import PACK_DIR, install_pack, pack_dir, pack_summary
    from fusionlab.reported import DID_NOT_LEARN, LEARNED

    if args.action == "build":
        from fusionlab.pack.build import build_pack

        manifest = build_pack(
            args.out or PACK_DIR, only=_names(args.only) or None, data_dir=args.data_dir, force=args.force
        )
        print(f"pack written to {args.out or PACK_DIR}: {len(manifest.entries)} artifact(s)")
        return 0
    root = pack_dir()
    if root is None:
        print("no pack is in use (bundled pack missing, or $FUSIONLAB_PACK=off)")
        return 1
    if args.action == "install":
        workspace = Workspace(args.home).ensure()
        installed = install_pack(workspace, root)
        print(f"installed {len(installed)} artifact(s) into {workspace.root}: {', '.join(installed) or 'none needed'}")
        return 0
    if args.action == "verify":
        return _verify_pack(root, args)
    if args.markdown:
        from fusionlab.pack.table import markdown_table

        print(markdown_table(root))
        return 0
    print(f"pack at {root}")
    for row in pack_summary(root):
        over = f" over {','.join(row['adapters'])}" if row["adapters"] else ""
        print(
            f"  {row['kind']:<7} {row['name']:<16} {row['task']:<6} dev {row['metric']} {row['score_text']}; "
            f"best step {row['best_step']}/{row['steps']}{over}"
        )
        if row["learned"] not in (None, LEARNED):
            print(f"          {row['learned']}: {DID_NOT_LEARN}")
        if row["difference"]:
            print(f"          fusion − its adapter alone: {row['difference']}")
        print(f"          {row['selection']}")
    return 0


def _verify_pack(root: Path, args: argparse.Namespace) -> int:
    """``fusionlab pack verify``: 0 when every model was checked and reproduces its card; 1 when one does not, or
    could not be checked (each line says why); 2 without task data."""
    from fusionlab.data import resolve_data_dir
    from fusionlab.pack.verify import SPOT_EXAMPLES, summary, verify_pack

    data = resolve_data_dir(args.data_dir)
    if data is None or not data.is_dir():
        print("verifying the pack needs the task data: pass --data-dir or set $FUSIONLAB_DATA_DIR", file=sys.stderr)
        return 2
    examples = args.examples or SPOT_EXAMPLES
    print(f"pack at {root}: {examples} dev examples per model, against its card")
    with quiet_loading():
        checks = verify_pack(root, data, examples, _names(args.only) or None, log=lambda line: print(f"  {line}"))
    print(summary(checks))
    return 0 if checks and all(check.passed for check in checks) else 1


def cmd_delete(args: argparse.Namespace) -> int:
    from fusionlab.housekeeping import delete_artifact, prune_versions

    workspace = Workspace(args.home).ensure()
    if args.kind == "versions":
        removed = prune_versions(workspace)
    else:
        if not args.name:
            raise ValueError(f"`fusionlab delete {args.kind}` needs the {args.kind}'s name")
        removed = [delete_artifact(workspace, args.kind, args.name)]
    for removal in removed:
        print(f"deleted {removal.description}")
    if not removed:
        print("no earlier version is unused; nothing deleted")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Every composition method over the same adapters: a ``compare`` run, queued and followed like a training."""
    from fusionlab.composition.results import CompareOptions
    from fusionlab.composition.run import CompareRun

    options = CompareOptions(
        target=args.target,
        adapters=[a.strip() for a in args.adapters.split(",") if a.strip()],
        methods=[m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else [],
        seed=args.seed,
        max_steps=args.max_steps,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
        finetune=args.finetune,
        search_evaluations=args.search_evaluations,
        latency_repeats=args.latency_repeats,
        curves=not args.no_curves,
    )
    return _launch(CompareRun(options=options, data_dir=args.data_dir, model=args.model), args)


def _print_comparison(path: Path) -> None:
    """A finished comparison as the CLI shows it: the headline, the table, the curves, where it is saved."""
    from fusionlab.composition.compare import format_table
    from fusionlab.composition.results import Comparison

    comparison = Comparison.load(path)
    options = comparison.options
    print(
        f"{options.target}: {comparison.score_label} on "
        f"{comparison.dev_examples} examples (majority class {comparison.majority_baseline:.4f}); latency: one "
        f"batch of {options.latency_batch} dev inputs, relative to the encoder alone ({comparison.base_latency_ms:.1f} ms)"
    )
    print(format_table(comparison))
    for title, points in (("AdapterDrop", comparison.adapter_drop), ("pruning", comparison.pruning)):
        if points:
            print(f"{title} (attention fusion):")
            for point in points:  # each with its interval and, cut down, its paired difference from the full fusion
                print(f"  {point.text()} @ {comparison.latency_ratio(point):.2f}x")
    print(f"saved: {path}")


def cmd_sweep(args: argparse.Namespace) -> int:
    """Queue a sweep (every chosen subset of sources × methods × seeds, as ordinary fusion runs) and follow it."""
    from fusionlab.sweep.group import queue_sweep
    from fusionlab.sweep.spec import SweepSpec, plan_runs

    if args.inline:
        raise SystemExit("a sweep is a group of queued runs: it has no --inline (the worker trains them)")
    if args.seed is not None:
        raise SystemExit("a sweep trains every cell with each of --seeds: give --seeds, not --seed")
    spec = SweepSpec(
        target=args.target,
        sources=_names(args.sources),
        subsets=args.subsets,
        methods=_names(args.methods),
        seeds=[int(s) for s in _names(args.seeds)],
        budget=_budget(args, args.target),
        data_dir=args.data_dir,
    )
    workspace = ready_workspace(args.home)
    missing = [a for a in (spec.target, *spec.sources) if a not in workspace.list_adapters()]
    if missing:
        raise SystemExit(
            f"the sweep fuses adapters this workspace does not have: {', '.join(missing)} (it has "
            f"{', '.join(workspace.list_adapters()) or 'none'}); train them first with `fusionlab train-adapter`"
        )
    _check_run(plan_runs(spec, "check")[0][1])
    record = queue_sweep(workspace, spec, args.name)
    from fusionlab.worker import ensure_worker

    ensure_worker(workspace)
    print(f"queued sweep {record.name}: {len(record.runs)} fusion runs ({spec.subsets} subsets of "
          f"{', '.join(spec.sources)} × {', '.join(spec.methods)} × seeds {', '.join(map(str, spec.seeds))})")  # fmt: skip
    if args.no_wait:
        return 0
    return _follow_sweep(workspace, record.name)


def _names(text: str | None) -> list[str]:
    """A comma-separated option (``--only a,b``, ``--seeds 1,2``) as its names; an absent one as none."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _follow_sweep(workspace: Workspace, name: str) -> int:
    """One progress bar for the whole group (finished runs of all), until every run has ended; Ctrl-C asks
    whether to cancel the sweep. Prints the sweep's report at the end."""
    from tqdm import tqdm

    from fusionlab.processes import pid_alive
    from fusionlab.sweep.analysis import format_report, sweep_report
    from fusionlab.sweep.group import cancel_sweep, load_record, sweep_statuses
    from fusionlab.worker import ensure_worker, worker_running

    store = RunStore(workspace.runs_db)
    record = load_record(workspace, name)
    total = len(record.runs)
    try:
        with tqdm(total=total, desc=f"sweep {name}", unit="run") as bar:
            while True:
                store.mark_dead_runs_failed(pid_alive)
                counts = sweep_statuses(workspace, record)
                if (counts["queued"] or counts["running"]) and not worker_running(workspace):
                    ensure_worker(workspace)
                bar.n = sum(counts[s] for s in TERMINAL_STATUSES)
                bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
                bar.refresh()
                if bar.n >= total:
                    break
                time.sleep(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        answer = input("\ncancel the sweep? [y/N] ") if sys.stdin.isatty() else "n"
        if answer.strip().lower().startswith("y"):
            print(f"cancel requested for {cancel_sweep(workspace, record)} run(s)")
        else:
            print(f"the worker keeps going; follow with `fusionlab sweeps show {name}`")
        return 130
    print(format_report(sweep_report(workspace, record)))
    return 0 if counts["finished"] == total else 1


SWEEPS_ACTIONS = {
    "list": "the workspace's sweeps, with how many runs of each have finished",
    "show": "one sweep's grid, best subsets and each source's effect (--json: as a record)",
    "follow": "follow a sweep's runs until they end, then show it",
    "cancel": "stop every queued or running run of a sweep",
    "resume": "queue again every run of a sweep that failed or was cancelled",
}


def cmd_sweeps(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from fusionlab.sweep.analysis import format_report, sweep_report
    from fusionlab.sweep.group import SweepError, cancel_sweep, list_sweeps, load_record, resume_sweep, sweep_statuses

    workspace = Workspace(args.home).ensure()
    if args.action == "list":
        names = list_sweeps(workspace)
        for name in names:
            counts = sweep_statuses(workspace, load_record(workspace, name))
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if not names:
            print("no sweeps yet: start one with `fusionlab sweep TARGET --sources A,B,C`")
        return 0
    if not args.name:
        raise SystemExit(f"`fusionlab sweeps {args.action}` needs the sweep's name (see `fusionlab sweeps list`)")
    try:
        record = load_record(workspace, args.name)
    except SweepError as err:
        raise SystemExit(str(err)) from None
    if args.action == "show":
        report = sweep_report(workspace, record)
        print(json.dumps(asdict(report), indent=2) if args.json else format_report(report))
    elif args.action == "follow":
        return _follow_sweep(workspace, record.name)
    elif args.action == "cancel":
        print(f"sweep {record.name}: cancel requested for {cancel_sweep(workspace, record)} run(s)")
    elif args.action == "resume":
        queued = resume_sweep(workspace, record)
        if queued:
            from fusionlab.worker import ensure_worker

            ensure_worker(workspace)
        print(
            f"sweep {record.name}: {len(queued)} run(s) queued again"
            + (f" ({', '.join(map(str, queued))})" if queued else "")
        )
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    """The learning curve: adapter alone vs fusion at each training-set size, in this process, resumable."""
    from fusionlab.curve import CurvePlan, curve_path, format_summary, run_curve
    from fusionlab.pack.store import ready_workspace

    plan = CurvePlan(
        target=args.target,
        sources=[s.strip() for s in args.sources.split(",") if s.strip()],
        sizes=[int(k) for k in args.sizes.split(",") if k.strip()],
        seeds=[int(s) for s in args.seeds.split(",") if s.strip()],
        method=args.method,
        steps=args.steps,
        max_eval_samples=args.selection_examples,
    )
    workspace = ready_workspace(args.home)
    out = Path(args.out) if args.out else curve_path(workspace, plan)
    curve = run_curve(plan, workspace, args.data_dir, out, log=lambda m: print(m, flush=True))
    print(format_summary(curve))
    print(f"saved: {out}")
    return 0


def cmd_import_adapterhub(args: argparse.Namespace) -> int:
    """An AdapterHub ``adapters`` bottleneck adapter folder into the workspace, as a fusionlab adapter."""
    from fusionlab.interop.transfer import import_adapter

    workspace = Workspace(args.home).ensure()
    path = import_adapter(args.directory, workspace, args.name, args.task, args.model)
    print(f"imported {args.directory} as adapter {path.name} ({path}); its head is untrained")
    return 0


def cmd_export_adapterhub(args: argparse.Namespace) -> int:
    """A workspace adapter out to AdapterHub's format (``model.load_adapter(dir, use_safetensors=True)``)."""
    from fusionlab.interop.transfer import export_adapter

    path = export_adapter(Workspace(args.home).ensure(), args.name, args.directory)
    print(f"exported adapter {args.name} to {path} (adapter_config.json, adapter.safetensors; no head)")
    return 0


# -- parser ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusionlab", description="Adapter Fusion on transformer encoders.", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"fusionlab {fusionlab.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    p = sub.add_parser("train-adapter", help="train one task adapter (stage 1)")
    p.add_argument("task", help="task name, e.g. sst2 (see `fusionlab tasks`)")
    p.add_argument("--name", help="adapter name (default: the task)")
    p.add_argument("--adapter-size", type=int, default=64, help="bottleneck size (default: 64)")
    p.add_argument(
        "--non-linearity",
        default=AdapterConfig.non_linearity,
        choices=NON_LINEARITIES,
        help="activation between the adapter's down- and up-projection",
    )
    _add_common(p)
    _add_custom_task(p)
    _add_training(p, "adapter")
    p.set_defaults(func=cmd_train_adapter)

    p = sub.add_parser("train-fusion", help="train fusion over frozen adapters for a target task (stage 2)")
    p.add_argument("target", help="target task, e.g. rte")
    p.add_argument("--adapters", required=True, help="comma-separated adapter names, e.g. rte,sst2,mnli,boolq")
    p.add_argument(
        "--method",
        default=FusionConfig.fusion_method,
        choices=config.FUSION_METHODS,  # the registered methods: fusion.registry keeps it current, without torch
        help="how the adapters' outputs are combined",
    )
    p.add_argument("--name", help="fusion name (default: TARGET-METHOD, or TARGET-METHOD-2 beside the pack's)")
    p.add_argument("--heads", type=int, default=1, help="attention heads (attention fusion)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    p.add_argument("--value-regularization", type=float, default=0.0, help="weight of ||I - V||^2")
    p.add_argument("--snapshot-steps", type=int, default=10, help="record fusion weights every N steps")
    _add_common(p)
    _add_custom_task(p)
    _add_training(p, "fusion")
    p.set_defaults(func=cmd_train_fusion)

    p = sub.add_parser("evaluate", help="evaluate an adapter or fusion on its task's dev split")
    p.add_argument("name", help="adapter or fusion name in the workspace")
    p.add_argument("--adapters", help="comma-separated subset of the fusion's adapters (ablation)")
    p.add_argument("--task", help="evaluate on another task's dev split")
    p.add_argument("--max-samples", type=int, default=None, help="at most this many examples (a fixed subset)")
    p.add_argument(
        "--split",
        choices=("validation", "selection"),
        default="validation",
        help="validation: the dev split scores are reported on (default); selection: the examples carved from "
        "train that chose the training step (to check an in-training number against the saved weights)",
    )
    p.add_argument("--json", action="store_true", help="also print the result as JSON")
    _add_common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict the label of a text (or a text pair)")
    p.add_argument("name", help="adapter or fusion name in the workspace")
    p.add_argument("text", help="the text to classify")
    p.add_argument("text_pair", nargs="?", default=None, help="second text, for pair tasks")
    p.add_argument("--adapters", help="comma-separated adapters (one = single-task path)")
    p.add_argument(
        "--set-weight",
        action="append",
        metavar="ADAPTER=WEIGHT",
        help="what if: set an adapter's fusion weight by hand (repeatable; the others share the rest in their "
        "learned proportions), e.g. --set-weight sst2=0.7",
    )
    p.add_argument("--weight-layer", type=int, help="set the weights in this layer only (from 1; default: every layer)")
    _add_common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("runs", help="list, show or cancel runs")
    p.add_argument("action", nargs="?", choices=list(RUNS_ACTIONS), default="list", help=choices_help(RUNS_ACTIONS))
    p.add_argument("id", nargs="?", type=int, help="the run's id (show, cancel), as `fusionlab runs` lists it")
    p.add_argument(
        "--status", choices=["queued", "running", "finished", "failed", "cancelled"], help="list: only these"
    )
    p.add_argument("--limit", type=int, default=50, help="list: at most this many runs")
    p.add_argument("--json", action="store_true", help="print the run records as JSON (list, show)")
    _add_common(p)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "serve", help="check the dashboard server's settings, then start it (a classroom's teacher starts here)"
    )
    p.add_argument("--port", type=int, default=8501, help="port of the dashboard (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="only check the settings, start nothing")
    add_server_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="serve the run queue of a workspace (started automatically when needed)")
    p.add_argument(
        "--device",
        type=device_argument,
        default=AUTO,
        help="where the runs execute: auto (a GPU if there is one), cpu, or cuda:N; one worker per device",
    )
    p.add_argument("--once", action="store_true", help="execute at most one run")
    p.add_argument(
        "--idle-exit",
        type=float,
        default=DEFAULT_IDLE_EXIT_SECONDS,
        help="exit after the queue has been empty this many seconds (default: %(default)s)",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=DEFAULT_NICENESS,
        help="lower the worker's CPU priority, 0-19 (default: %(default)s)",
    )
    add_backend_flags(p)
    p.add_argument(
        "--max-attempts",
        type=int,
        default=DEFAULT_MAX_ATTEMPTS,
        help="with ray: start a run at most this often when nodes are lost under it (default: %(default)s)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="prepare a classroom-ready workspace (adapters + fusions) on CPU")
    p.add_argument("--profile", default="classroom", choices=list(DEMO_PROFILES), help=choices_help(DEMO_PROFILES))
    p.add_argument("--inline", action="store_true", help="train in this process instead of the worker")
    p.add_argument("--no-wait", action="store_true", help="queue the demo's runs and return at once")
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("pack", help="the pretrained adapter pack: list it, install it, or rebuild it")
    p.add_argument("action", choices=list(PACK_ACTIONS), help=choices_help(PACK_ACTIONS))
    p.add_argument("--only", help="build, verify: comma-separated artifact names (default: all)")
    p.add_argument("--out", help="build: where to write the pack (default: the bundled pack directory)")
    p.add_argument("--force", action="store_true", help="build: retrain artifacts that are up to date")
    p.add_argument("--markdown", action="store_true", help="list: as the Markdown table docs/pack.md shows")
    p.add_argument(
        "--examples",
        type=bounded_int(1, MAX_VERIFY_EXAMPLES, "--examples"),
        default=None,
        help=f"verify: dev examples re-predicted per model (1 to {MAX_VERIFY_EXAMPLES:,}; default 200)",
    )
    _add_common(p)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser(
        "delete",
        help="delete an adapter or a fusion (refused if anything still needs it), or the unused earlier versions",
    )
    p.add_argument("kind", choices=["adapter", "fusion", "versions"])
    p.add_argument("name", nargs="?", help="the adapter's or fusion's name (not for `versions`)")
    _add_common(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser(
        "usage",
        help="which adapters each fusion leans on: mean fusion weight per target and adapter (the paper's Figure 5)",
    )
    p.add_argument("--json", action="store_true", help="print the matrix as JSON instead of a table")
    _add_common(p)
    p.set_defaults(func=cmd_usage)

    p = sub.add_parser(
        "compare",
        help="fusion against merging, a gradient-free search, AdapterDrop and pruning, on the same adapters",
        description="A run like a training (minutes to hours on a CPU): queued for the workspace's worker, listed "
        "by `fusionlab runs`, cancellable; results go to <workspace>/comparisons/TARGET-sSEED/comparison.json.",
        epilog_from=compare_methods_help,
    )
    p.add_argument("target", help="target task, e.g. rte")
    p.add_argument("--adapters", required=True, help="comma-separated source adapters, e.g. rte,mnli,qnli,sick")
    p.add_argument(
        "--methods",
        help="comma-separated subset, e.g. fusion:attention,merge:ties,lorahub (default: all; listed below)",
    )
    p.add_argument("--max-steps", type=int, default=COMPARE.steps, help="training steps of every trained method")
    p.add_argument("--lr", type=float, default=COMPARE.learning_rate, help="learning rate")
    p.add_argument("--batch-size", type=int, default=COMPARE.batch_size, help="per-device batch")
    p.add_argument("--max-length", type=int, default=COMPARE.max_length, help="tokens per example")
    p.add_argument("--max-train-samples", type=int, default=None, help="seeded subset of the train split")
    p.add_argument("--max-eval-samples", type=int, default=None, help="the task's fixed dev subset of this size")
    p.add_argument("--seed", type=int, default=42, help="random seed")
    p.add_argument("--finetune", action="store_true", help="also fine-tune each merged adapter (rows …+ft)")
    p.add_argument(
        "--search-evaluations",
        type=int,
        default=COMPARE_SEARCH_EVALUATIONS,
        help="candidates the LoraHub search scores",
    )
    p.add_argument(
        "--latency-repeats",
        type=bounded_int(1, MAX_LATENCY_REPEATS, "--latency-repeats"),
        default=COMPARE_LATENCY_REPEATS,
        help="rounds of the latency timing (every method timed once per round; more rounds, steadier ratios)",
    )
    p.add_argument("--no-curves", action="store_true", help="skip the AdapterDrop and pruning curves")
    p.add_argument("--model", default=None, help="base model (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--inline", action="store_true", help="run in this process instead of the worker")
    p.add_argument("--no-wait", action="store_true", help="queue the comparison and return at once")
    _add_common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "sweep",
        help="which sources help this target? fuse every chosen subset of them (× methods × seeds) as queued runs",
        description="Queues one ordinary fusion run per subset of the sources × method × seed, each over the "
        "target's own adapter plus that subset, all with the same budget, and follows them as one group. The "
        "local worker runs them one after another. `fusionlab sweeps show NAME` then gives the grid of subsets "
        "× methods (mean and interval over seeds), the best subset, and each source's marginal effect beside "
        "how much weight the fusion gives it.",
    )
    p.add_argument("target", help="target task (its own adapter is in every fusion)")
    p.add_argument("--sources", required=True, help="comma-separated source adapters (at most 8)")
    p.add_argument(
        "--subsets",
        choices=["all", "singles", "leave-one-out"],
        default="all",
        help="which subsets of the sources: all: every non-empty subset; singles: each alone; leave-one-out: all "
        "of them, and all but one in turn (default: %(default)s)",
    )
    p.add_argument("--methods", default="attention", help="comma-separated fusion methods (default: %(default)s)")
    p.add_argument("--seeds", default="1", help="comma-separated seeds, at most 10 (default: %(default)s)")
    p.add_argument("--name", default=None, help="the sweep's name (default: TARGET-sweep, then -2, -3…)")
    _add_training(p, "fusion")
    _add_common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("sweeps", help="list, show, follow, cancel or resume sweeps")
    p.add_argument("action", nargs="?", choices=list(SWEEPS_ACTIONS), default="list", help=choices_help(SWEEPS_ACTIONS))
    p.add_argument("name", nargs="?", help="the sweep's name, as `fusionlab sweeps` lists it")
    p.add_argument("--json", action="store_true", help="show: the report as JSON")
    _add_common(p)
    p.set_defaults(func=cmd_sweeps)

    p = sub.add_parser(
        "curve",
        help="learning curve: the target's adapter alone vs fusion at each training-set size, several seeds",
        description="Does fusion help most when the target has little data? For each size k and seed (another "
        "random subset of k examples) the target's adapter and a fusion over it and the source adapters are trained "
        "on the same examples, selected on the carved selection split and scored on the whole dev split, with "
        "intervals and the paired gain. Runs in this process (hours on a CPU); resumable: points already in the "
        "output file are skipped.",
    )
    plan = CurvePlan()  # the defaults live on the plan, once
    p.add_argument("--target", default=plan.target, help="target task (default: %(default)s)")
    p.add_argument(
        "--sources", default=",".join(plan.sources), help="comma-separated source adapters (default: %(default)s)"
    )
    p.add_argument(
        "--sizes",
        default=",".join(map(str, plan.sizes)),
        help="comma-separated training-set sizes k (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        default=",".join(map(str, plan.seeds)),
        help="comma-separated seeds, each another subset (default: %(default)s)",
    )
    p.add_argument("--method", default=plan.method, choices=config.FUSION_METHODS, help="fusion method")
    p.add_argument(
        "--steps",
        type=bounded_int(1, config.MAX_STEPS, "--steps"),
        default=plan.steps,
        help="about this many optimisation steps per model (default: %(default)s)",
    )
    p.add_argument(
        "--selection-examples",
        type=bounded_int(1, MAX_SIZE, "--selection-examples"),
        default=plan.max_eval_samples,
        help="selection examples each evaluation during training reads; dev is always scored whole "
        "(default: %(default)s)",
    )
    p.add_argument("--out", default=None, help="JSON file (default: <workspace>/curves/TARGET-METHOD.json)")
    _add_common(p)
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("tasks", help="list the built-in tasks")
    _add_common(p)
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser(
        "import-adapterhub",
        help="import an AdapterHub `adapters` bottleneck adapter (seq_bn) folder as a workspace adapter",
        description="Reads adapter_config.json and adapter.safetensors (or pytorch_adapter.bin, tensors only) "
        "written by AdapterHub's save_adapter. Adapters placed elsewhere than after the feed-forward block are "
        "refused, naming the option. The head is not imported: the adapter gets an untrained head.",
    )
    p.add_argument("directory", help="the folder save_adapter wrote")
    p.add_argument("--name", default=None, help="the adapter's name in the workspace (default: its own)")
    p.add_argument("--task", default=None, help="registered task its head is for (labels), e.g. rte")
    p.add_argument("--model", default=None, help="base model (default: the one adapter_config.json names)")
    _add_common(p)
    p.set_defaults(func=cmd_import_adapterhub)

    p = sub.add_parser("export-adapterhub", help="write a workspace adapter in AdapterHub's format (no head)")
    p.add_argument("name", help="the workspace adapter")
    p.add_argument("directory", help="folder to write adapter_config.json and adapter.safetensors to")
    _add_common(p)
    p.set_defaults(func=cmd_export_adapterhub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "runs" and args.action in ("show", "cancel") and args.id is None:
        parser.error(f"`fusionlab runs {args.action}` needs a run id")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, LookupError) as err:
        # a bare KeyError's str() adds quotes; subclasses (RunNotFoundError) format themselves
        message = err.args[0] if type(err) is KeyError and err.args else err
        print(f"fusionlab: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
