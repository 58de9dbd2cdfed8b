"""The dashboard's one error type, and the one translation of library messages into the words of its forms.

The bottom layer: imported by the logic modules and the widgets alike.
"""

from __future__ import annotations

import re

_FIELD = re.compile(r"^(?:[A-Z]\w*)\.(\w+): ")

FIELD_LABELS = {
    "max_steps": "Max steps",
    "steps": "Max steps",
    "per_device_train_batch_size": "Batch size",
    "batch_size": "Batch size",
    "learning_rate": "Learning rate",
    "max_train_samples": "Max train samples",
    "max_eval_samples": "Max dev samples",
    "max_length": "Max length (tokens)",
    "eval_steps": "Evaluate every N steps",
    "snapshot_steps": "Weight snapshots every N steps",
    "adapter_size": "Adapter size",
    "adapter_names": "Adapters",
    "adapters": "Adapters",
    "temperature": "Softmax temperature",
    "num_attention_heads": "Attention heads",
    "value_regularization": "Value regularisation",
    "name": "Name",
    "task": "Task",
    "target_task": "Target task",
}
"""A config field → the label of the form field that sets it (the Train page's)."""


class DashboardError(Exception):
    """Something the user can fix; its message is shown on the page as it is (never a traceback)."""


def in_user_words(err: BaseException | str) -> str:
    """A library message as a page shows it: ``FusionConfig.temperature: must be …`` becomes
    ``Softmax temperature: must be …`` — the label the user sees, not the class the code uses (the command
    line keeps the field names, which are its options' names)."""
    text = str(err)
    match = _FIELD.match(text)
    if match is None:
        return text
    field = match.group(1)
    return f"{FIELD_LABELS.get(field, field.replace('_', ' ').capitalize())}: {text[match.end() :]}"
