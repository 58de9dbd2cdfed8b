"""Task data: the task registry, loading and validation, the BoolQ split, tokenisation."""

from fusionlab.data.loading import (
    DATA_DIR_ENV,
    DEV_SUBSET_SEED,
    SELECTION,
    CustomTask,
    DataFormatError,
    DataNotFoundError,
    carve_selection,
    load_split,
    read_task_file,
    resolve_data_dir,
    split_note,
    subsample,
    task_from_file,
)
from fusionlab.data.splits import BOOLQ_COMPARABILITY_NOTE, boolq_split, passage_title
from fusionlab.data.tasks import TASKS, TaskSpec, get_task, register_task
from fusionlab.data.tokenization import EncodedTexts, encode_texts, make_collator, tokenize_dataset

__all__ = [
    "BOOLQ_COMPARABILITY_NOTE",
    "DATA_DIR_ENV",
    "DEV_SUBSET_SEED",
    "SELECTION",
    "TASKS",
    "CustomTask",
    "DataFormatError",
    "DataNotFoundError",
    "EncodedTexts",
    "TaskSpec",
    "boolq_split",
    "carve_selection",
    "encode_texts",
    "get_task",
    "load_split",
    "make_collator",
    "passage_title",
    "read_task_file",
    "register_task",
    "resolve_data_dir",
    "split_note",
    "subsample",
    "task_from_file",
    "tokenize_dataset",
]
