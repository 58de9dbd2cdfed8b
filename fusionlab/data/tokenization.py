"""Turning task rows into model inputs, for training (datasets) and for inference (raw texts).

Training data is tokenised once, truncated but not padded: the collator pads each batch to its own longest
sequence, which on GLUE-style data (most sentences far below ``max_length``) saves most of the compute that
padding everything to ``max_length`` would waste. Pair tasks are encoded as one sequence
``[CLS] a [SEP] b [SEP]`` with ``token_type_ids``, as BERT-style encoders were pre-trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
from transformers import BatchEncoding, DataCollatorWithPadding, PreTrainedTokenizerBase

from fusionlab.data.tasks import TaskSpec


def tokenize_dataset(
    dataset: datasets.Dataset,
    task_spec: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
) -> datasets.Dataset:
    """Tokenise ``task_spec.text_fields`` (one text or a pair), truncating to ``max_length`` tokens.

    The result holds only the tokeniser's outputs and ``labels`` (renamed from ``label``, the name
    transformers models take), so a collated batch can go straight into ``model(**batch)``; ``idx`` and
    the texts are dropped for the same reason. Pairs are truncated longest-first, so a short question
    keeps its tokens and a long passage gives them up.
    """
    missing = [f for f in task_spec.text_fields if f not in dataset.column_names]
    if missing:
        raise ValueError(f"Dataset has no column(s) {missing} for task {task_spec.name!r}: {dataset.column_names}")

    def encode(batch: dict[str, list[Any]]) -> BatchEncoding:
        texts = [batch[field] for field in task_spec.text_fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    dropped = [c for c in dataset.column_names if c != "label"]
    tokenized = dataset.map(encode, batched=True, remove_columns=dropped, desc=f"Tokenising {task_spec.name}")
    if "label" in tokenized.column_names:
        tokenized = tokenized.rename_column("label", "labels")
    return tokenized


def make_collator(tokenizer: PreTrainedTokenizerBase, pad_to_multiple_of: int | None = None) -> DataCollatorWithPadding:
    """Pads each batch to its longest sequence (``pad_to_multiple_of=8`` helps tensor cores on GPU)."""
    return DataCollatorWithPadding(tokenizer=tokenizer, pad_to_multiple_of=pad_to_multiple_of)


@dataclass
class EncodedTexts:
    """Padded tensors for a batch of raw texts, plus what truncation cut off.

    ``lengths`` are the token counts (special tokens included) before truncation, so a UI can say
    "your text was truncated to ``max_length`` tokens (it had ``lengths[i]``)".
    """

    inputs: BatchEncoding
    lengths: list[int]
    max_length: int

    @property
    def truncated(self) -> list[bool]:
        return [length > self.max_length for length in self.lengths]

    @property
    def any_truncated(self) -> bool:
        return any(self.truncated)


def encode_texts(
    tokenizer: PreTrainedTokenizerBase,
    texts: str | Sequence[str],
    text_pairs: str | Sequence[str] | None = None,
    max_length: int = 128,
) -> EncodedTexts:
    """Encode raw texts (and optional second texts of a pair) for inference, as PyTorch tensors."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    pairs = [text_pairs] if isinstance(text_pairs, str) else (list(text_pairs) if text_pairs is not None else None)
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(pairs)} text_pairs")
    # A second, untruncated pass only to measure; verbose=False silences the over-long-sequence warning.
    full = tokenizer(texts, pairs, truncation=False, verbose=False)
    lengths = [len(ids) for ids in full["input_ids"]]
    inputs = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return EncodedTexts(inputs=inputs, lengths=lengths, max_length=max_length)
