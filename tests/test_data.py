"""The task-data layer against the real offline files in ../shared/data, plus small synthetic files.

Real data is read in place, never copied. Malformed and custom files are written into ``tmp_path`` with
made-up sentences.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from fusionlab.base_model import load_tokenizer
from fusionlab.data import (
    BOOLQ_COMPARABILITY_NOTE,
    DATA_DIR_ENV,
    TASKS,
    DataFormatError,
    DataNotFoundError,
    TaskSpec,
    boolq_split,
    encode_texts,
    get_task,
    load_split,
    make_collator,
    passage_title,
    read_task_file,
    register_task,
    resolve_data_dir,
    split_note,
    task_from_file,
    tokenize_dataset,
)

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
requires_data = pytest.mark.skipif(
    not DATA_DIR.is_dir(), reason=f"the offline task data is not at {DATA_DIR} (expected ../shared/data)"
)
BUILTIN = sorted(TASKS)


@pytest.fixture(autouse=True)
def _restore_registry():
    """Custom tasks registered by a test must not leak into the next one."""
    saved = dict(TASKS)
    yield
    TASKS.clear()
    TASKS.update(saved)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _sst2_rows(n: int) -> list[dict]:
    return [{"sentence": f"made-up sentence number {i}", "label": i % 2, "idx": i} for i in range(n)]


# -- registry vs the real files ------------------------------------------------------------------------------


def test_registry_has_the_expected_tasks():
    assert set(BUILTIN) == {"sst2", "imdb", "mnli", "rte", "cb", "sick", "boolq", "mrpc", "cola", "qnli"}
    assert get_task("mrpc").main_metric == "f1"
    assert get_task("cola").main_metric == "matthews_corrcoef"
    assert "macro_f1" in get_task("cb").metrics
    assert get_task("boolq").text_fields == ("question", "passage")
    with pytest.raises(ValueError, match=r"Unknown task 'sts'.*boolq.*sst2"):
        get_task("sts")


@requires_data
@pytest.mark.parametrize("name", BUILTIN)
def test_registry_matches_real_files(name):
    spec = get_task(name)
    for split, stem in spec.splits.items():
        path = DATA_DIR / name / f"{stem}.jsonl"
        if name == "boolq" and split == "train":
            assert not path.exists(), "boolq train appeared: the grouped fallback split is no longer needed"
            continue
        with path.open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
        assert {*spec.text_fields, spec.label_field, "idx"} <= set(first), f"{path}: {sorted(first)}"
    # Every label id the validation file uses has a name (imdb has no validation; its test file is large).
    check_split = "validation" if "validation" in spec.splits else None
    if check_split:
        rows = read_task_file(DATA_DIR / name / f"{spec.splits[check_split]}.jsonl", spec)
        assert {r["label"] for r in rows} == set(range(spec.num_labels))


@requires_data
def test_mnli_validation_is_the_matched_file():
    assert get_task("mnli").splits["validation"] == "validation_matched"
    assert not (DATA_DIR / "mnli" / "validation.jsonl").exists()
    assert len(load_split("mnli", "validation", data_dir=DATA_DIR)) == 9815


@requires_data
def test_max_samples_is_a_deterministic_subset():
    first = load_split("sst2", "validation", data_dir=DATA_DIR, max_samples=100, seed=7)
    again = load_split("sst2", "validation", data_dir=DATA_DIR, max_samples=100, seed=7)
    other = load_split("sst2", "validation", data_dir=DATA_DIR, max_samples=100, seed=8)
    assert len(first) == 100
    assert first.column_names == ["sentence", "label", "idx"]
    assert list(first["idx"]) == list(again["idx"]) != list(other["idx"])
    assert list(first["idx"]) == sorted(first["idx"])
    assert len(load_split("sst2", "validation", data_dir=DATA_DIR, max_samples=10**6)) == 872
    with pytest.raises(ValueError, match="max_samples"):
        load_split("sst2", "validation", data_dir=DATA_DIR, max_samples=0)


@requires_data
def test_extra_columns_are_dropped_and_labels_are_classlabels():
    sick = load_split("sick", "test", data_dir=DATA_DIR, max_samples=5)
    assert sick.column_names == ["sentence_A", "sentence_B", "label", "idx"]
    assert sick.features["label"].names == ["entailment", "neutral", "contradiction"]


def test_unknown_split_lists_the_available_ones():
    with pytest.raises(ValueError, match="has no 'test' split; it has train, validation, selection"):
        load_split("rte", "test")


@requires_data
def test_imdb_dev_is_a_fixed_part_held_out_of_train_with_no_text_on_both_sides():
    train = load_split("imdb", "train", data_dir=DATA_DIR)
    selection = load_split("imdb", "selection", data_dir=DATA_DIR)
    dev = load_split("imdb", "validation", data_dir=DATA_DIR)
    assert 2000 <= len(dev) < 2010 and len(train) + len(selection) + len(dev) == 25_000
    assert not set(train["text"]) & set(dev["text"])  # exact duplicate reviews stay on one side
    assert not set(train["idx"]) & set(dev["idx"])
    assert 0.4 < sum(dev["label"]) / len(dev) < 0.6
    again = load_split("imdb", "validation", data_dir=DATA_DIR)
    assert list(again["idx"]) == list(dev["idx"])  # fixed: no seed of a run enters it
    assert len(load_split("imdb", "test", data_dir=DATA_DIR, max_samples=3)) == 3


@requires_data
def test_training_scores_every_seed_on_the_same_dev_subset():
    from fusionlab import FusionTrainer, TrainingConfig

    picked = []
    for seed in (1, 2):
        trainer = FusionTrainer(training_config=TrainingConfig(max_eval_samples=50, seed=seed), data_dir=DATA_DIR)
        _, selection, dev = trainer._datasets(get_task("rte"), trainer.training_config)
        picked.append((selection["input_ids"], dev["input_ids"]))
    assert picked[0] == picked[1]


# -- data directory and hub fallback -------------------------------------------------------------------------


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "shared" / "data").mkdir(parents=True)
    monkeypatch.chdir(repo)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    assert resolve_data_dir() == (tmp_path / "shared" / "data").resolve()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"


def test_missing_local_file_and_unreachable_hub(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataNotFoundError) as info:
        load_split("sst2", "train", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "sst2" / "train.jsonl") in message
    assert "nyu-mll/glue (sst2)" in message and "could not be loaded" in message


def test_hub_datasets_get_the_same_columns(tmp_path, monkeypatch):
    calls = []

    def fake_hub(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict({"text": ["made-up review", "another one"], "label": [0, 1]})

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    dataset = load_split("imdb", "test", data_dir=tmp_path)
    assert calls == [("stanfordnlp/imdb", None, "test")]
    assert dataset.column_names == ["text", "label", "idx"] and list(dataset["idx"]) == [0, 1]


# -- boolq ---------------------------------------------------------------------------------------------------


@requires_data
def test_boolq_split_is_grouped_by_title_and_reproducible():
    train = load_split("boolq", "train", data_dir=DATA_DIR)
    selection = load_split("boolq", "selection", data_dir=DATA_DIR)
    heldout = load_split("boolq", "validation", data_dir=DATA_DIR)
    assert len(train) > 0 and len(heldout) > 0
    assert len(train) + len(selection) + len(heldout) == 3270
    assert abs(len(heldout) / 3270 - 0.3) < 0.02
    train_titles = {passage_title(p) for p in [*train["passage"], *selection["passage"]]}
    heldout_titles = {passage_title(p) for p in heldout["passage"]}
    assert not train_titles & heldout_titles
    assert list(load_split("boolq", "validation", data_dir=DATA_DIR)["idx"]) == list(heldout["idx"])
    # The split does not follow the sampling seed, so subsets of train never reach into held-out rows.
    sampled = load_split("boolq", "train", data_dir=DATA_DIR, max_samples=200, seed=123)
    assert set(sampled["idx"]) <= set(train["idx"])
    assert split_note("boolq", DATA_DIR) == BOOLQ_COMPARABILITY_NOTE
    assert "not comparable" in BOOLQ_COMPARABILITY_NOTE
    assert split_note("sst2", DATA_DIR) is None


@requires_data
def test_boolq_split_reproduces_the_readme_proposal():
    rows = read_task_file(DATA_DIR / "boolq" / "validation.jsonl", get_task("boolq"))
    train, heldout = boolq_split(rows, heldout_fraction=1000 / 3270)
    assert (len(train), len(heldout)) == (2270, 1000)
    assert sum(r["label"] for r in heldout) == 627


def test_boolq_split_on_synthetic_rows():
    rows = [{"question": f"q{i}", "passage": f"Title {i % 17} -- passage text {i}", "label": i % 2} for i in range(100)]
    train, heldout = boolq_split(rows, heldout_fraction=0.3, seed=5)
    assert boolq_split(rows, heldout_fraction=0.3, seed=5) == (train, heldout)
    assert boolq_split(rows, heldout_fraction=0.3, seed=6) != (train, heldout)
    assert len(heldout) >= 30 and train
    assert not {passage_title(r["passage"]) for r in train} & {passage_title(r["passage"]) for r in heldout}


def test_a_real_boolq_train_file_disables_the_fallback(tmp_path):
    row = {"question": "is it made up", "passage": "Made Up -- a made-up passage", "label": 1, "idx": 0}
    other = {"question": "is it another", "passage": "Another -- a second made-up passage", "label": 0, "idx": 1}
    _write_jsonl(tmp_path / "boolq" / "train.jsonl", [row, other])
    _write_jsonl(tmp_path / "boolq" / "validation.jsonl", [row])
    assert split_note("boolq", tmp_path) is None
    assert len(load_split("boolq", "train", data_dir=tmp_path)) + len(load_split("boolq", "selection", tmp_path)) == 2
    assert len(load_split("boolq", "validation", data_dir=tmp_path)) == 1


# -- malformed files -----------------------------------------------------------------------------------------

_GOOD = '{"sentence": "a made-up sentence", "label": 1, "idx": 0}\n'

MALFORMED = {
    "bad_json_line_3": ((_GOOD * 2 + '{"sentence": "oops", "label": 1\n').encode(), 3, "invalid JSON"),
    "not_an_object_line_2": ((_GOOD + "[1, 2]\n").encode(), 2, "expected a JSON object"),
    "missing_column_line_2": (
        (_GOOD + '{"text": "wrong key", "label": 0}\n').encode(),
        2,
        "missing column 'sentence'",
    ),
    "label_out_of_range_line_4": (
        (_GOOD * 3 + '{"sentence": "x", "label": 2}\n').encode(),
        4,
        "out of range",
    ),
    "label_not_int_line_1": (b'{"sentence": "x", "label": "1"}\n', 1, "must be an integer"),
    "empty_text_line_2": (
        (_GOOD + '{"sentence": "  ", "label": 0}\n').encode(),
        2,
        "empty or whitespace-only",
    ),
    "non_utf8_line_2": (_GOOD.encode() + b'{"sentence": "caf\xe9", "label": 0}\n', 2, "not valid UTF-8"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_name_file_and_line(tmp_path, case):
    content, line, problem = MALFORMED[case]
    path = tmp_path / "sst2" / "train.jsonl"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as info:
        load_split("sst2", "train", data_dir=tmp_path)
    message = str(info.value)
    assert "train.jsonl" in message and f"line {line}:" in message and problem in message
    assert info.value.line == line


def test_empty_file(tmp_path):
    path = tmp_path / "sst2" / "validation.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"validation\.jsonl: file is empty"):
        load_split("sst2", "validation", data_dir=tmp_path)


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path):
    path = tmp_path / "sst2" / "train.jsonl"
    path.parent.mkdir()
    path.write_text(_GOOD + "\n\n" + '{"sentence": "", "label": 0}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 4:"):
        load_split("sst2", "train", data_dir=tmp_path)


# -- custom tasks --------------------------------------------------------------------------------------------


def test_custom_csv_task_with_string_labels(tmp_path):
    moods = ["happy", "sad", "calm"]
    lines = ["review,mood"] + [f'"made-up review {i}, with a comma",{moods[i % 3]}' for i in range(30)]
    path = tmp_path / "moods.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec, train, validation = task_from_file(path, text_columns=["review"], label_column="mood", seed=1)
    assert spec.name == "moods" and get_task("moods") is spec
    assert spec.label_names == ["calm", "happy", "sad"]
    assert spec.metrics == ("accuracy", "macro_f1") and spec.task_type == "classification"
    assert (len(train), len(validation)) == (27, 3)
    assert not set(train["idx"]) & set(validation["idx"])
    row = train[0]
    assert row["review"] == "made-up review 0, with a comma" and row["label"] == spec.label_names.index("happy")
    # Same seed, same split; re-reading the file replaces the registered task without complaint.
    assert list(task_from_file(path, ["review"], "mood", seed=1).validation["idx"]) == list(validation["idx"])


def test_custom_jsonl_pair_task(tmp_path):
    rows = [{"a": f"first text {i}", "b": f"second text {i}", "label": ["no", "yes"][i % 2]} for i in range(20)]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    spec, train, validation = task_from_file(path, ["a", "b"], name="my-pairs", validation_fraction=0.25)
    assert spec.is_pair and spec.task_type == "pair_classification"
    assert spec.label_names == ["no", "yes"] and spec.metrics == ("accuracy", "f1")
    assert (len(train), len(validation)) == (15, 5)
    assert train.column_names == ["a", "b", "label", "idx"]
    assert TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert hash(spec) == hash(TaskSpec.from_dict(spec.to_dict()))


def test_custom_integer_labels_and_given_names(tmp_path):
    path = tmp_path / "ints.csv"
    path.write_text("text,label\n" + "".join(f"made-up {i},{i % 2}\n" for i in range(10)), encoding="utf-8")
    spec, _, _ = task_from_file(path, ["text"])
    assert spec.label_names == ["0", "1"]
    named, train, _ = task_from_file(path, ["text"], name="ints-named", label_names=["bad", "good"])
    assert named.label_names == ["bad", "good"] and train.features["label"].names == ["bad", "good"]


def test_custom_csv_errors_use_file_lines(tmp_path):
    path = tmp_path / "broken.csv"
    # The quoted field spans lines 2-3, so the row with the empty text starts on line 5.
    path.write_text('text,label\n"two\nlines",pos\nfine,neg\n"   ",pos\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"broken\.csv, line 5: column 'text' is empty"):
        task_from_file(path, ["text"])
    path.write_text("text,label\nfine,pos\nshort\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 3: has 1 fields but the header"):
        task_from_file(path, ["text"])
    path.write_bytes(b"text,label\nfine,pos\nna\xefve,neg\n")
    with pytest.raises(DataFormatError, match="line 3: not valid UTF-8"):
        task_from_file(path, ["text"])
    path.write_text("words,label\nfine,pos\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="line 2: missing column 'text'"):
        task_from_file(path, ["text"])


def test_custom_label_errors(tmp_path):
    mixed = _write_jsonl(tmp_path / "mixed.jsonl", [{"t": "x", "label": "pos"}, {"t": "y", "label": 1}])
    with pytest.raises(DataFormatError, match="line 2: label 1 is an integer but other labels are strings"):
        task_from_file(mixed, ["t"])
    single = _write_jsonl(tmp_path / "single.jsonl", [{"t": "x", "label": "pos"}, {"t": "y", "label": "pos"}])
    with pytest.raises(DataFormatError, match="at least two distinct labels"):
        task_from_file(single, ["t"])
    unknown = _write_jsonl(tmp_path / "unknown.jsonl", [{"t": "x", "label": "pos"}, {"t": "y", "label": "meh"}])
    with pytest.raises(DataFormatError, match="line 2: label 'meh' is not one of"):
        task_from_file(unknown, ["t"], label_names=["neg", "pos"])


def test_builtin_tasks_cannot_be_replaced(tmp_path):
    path = _write_jsonl(tmp_path / "sst2.jsonl", [{"t": "x", "label": 0}, {"t": "y", "label": 1}])
    with pytest.raises(ValueError, match="built-in task"):
        task_from_file(path, ["t"])
    spec = TaskSpec(name="mine", text_fields=("t",), label_names=["a", "b"])
    assert register_task(spec) is spec and register_task(spec) is spec
    with pytest.raises(ValueError, match="overwrite=True"):
        register_task(TaskSpec(name="mine", text_fields=("u",), label_names=["a", "b"]))


def test_taskspec_validation():
    with pytest.raises(ValueError, match="main_metric"):
        TaskSpec(name="x", text_fields=("t",), label_names=["a", "b"], main_metric="f1")
    with pytest.raises(ValueError, match="text_fields"):
        TaskSpec(name="x", text_fields=("a", "b", "c"), label_names=["a", "b"])


# -- tokenisation --------------------------------------------------------------------------------------------


@requires_data
def test_tokenize_pair_task(tokenizer):
    spec = get_task("rte")
    dataset = load_split(spec, "validation", data_dir=DATA_DIR, max_samples=32)
    tokenized = tokenize_dataset(dataset, spec, tokenizer, max_length=48)
    assert set(tokenized.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert max(lengths) == 48 and min(lengths) < 48  # truncated, and not padded
    assert all(1 in types for types in tokenized["token_type_ids"])
    assert list(tokenized["labels"]) == list(dataset["label"])

    batch = make_collator(tokenizer)([tokenized[i] for i in range(4)])
    assert batch["input_ids"].shape == (4, max(lengths[:4]))
    assert batch["labels"].tolist() == list(dataset["label"][:4])


def test_tokenize_single_text_task(tokenizer):
    spec = get_task("sst2")
    dataset = datasets.Dataset.from_list(_sst2_rows(3))
    tokenized = tokenize_dataset(dataset, spec, tokenizer, max_length=4)
    assert "sentence" not in tokenized.column_names and "labels" in tokenized.column_names
    assert all(len(ids) == 4 for ids in tokenized["input_ids"])


def test_encode_texts_reports_truncation(tokenizer):
    short, long = "a short text", " ".join(["word"] * 200)
    encoded = encode_texts(tokenizer, [short, long], max_length=32)
    assert encoded.inputs["input_ids"].shape == (2, 32)
    assert encoded.truncated == [False, True] and encoded.any_truncated
    assert encoded.lengths[1] == 202  # 200 words + [CLS] + [SEP]
    pair = encode_texts(tokenizer, "is it short", "it is short", max_length=32)
    assert not pair.any_truncated and 1 in pair.inputs["token_type_ids"][0].tolist()
