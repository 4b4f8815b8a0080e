"""The local `evaluate` metric modules against hand-computed values."""

import pytest

from tprl_eval.metrics import load_metric


@pytest.fixture(scope="module")
def vqa():
    return load_metric("vqa_accuracy")


def test_vqa_accuracy_averages_the_ten_leave_one_out_subsets(vqa):
    # 3 of 10 annotators said "2": leaving out one of them leaves 2 matches (2/3), leaving out another leaves 3 (1).
    assert vqa.compute(predictions=["2"], references=[["2"] * 3 + ["3"] * 7])["vqa_accuracy"] == pytest.approx(0.9)
    assert vqa.compute(predictions=["2"], references=[["2"] * 2 + ["3"] * 8])["vqa_accuracy"] == pytest.approx(
        (2 * 1 / 3 + 8 * 2 / 3) / 10
    )
    assert vqa.compute(predictions=["4"], references=[["2"] * 10])["vqa_accuracy"] == 0.0


def test_vqa_needs_reference_answers(vqa):
    with pytest.raises(ValueError, match="at least one reference"):
        vqa.compute(predictions=["yes"], references=[[]])


def test_exact_match():
    metric = load_metric("exact_match")
    result = metric.compute(
        predictions=["Left.", " yes", "the table", "Red"], references=["left", "yes", "table", "red"]
    )
    assert result["exact_match"] == 0.75  # "the table" is not "table": GQA does not drop articles


def test_pope_counts():
    predictions = ["Yes", "No, there is not.", "yes", "There is no dog.", "Yes.", "no"]
    references = ["yes", "yes", "no", "no", "yes", "no"]
    # parsed: yes no yes no yes no -> TP 2, FN 1, FP 1, TN 2
    result = load_metric("pope").compute(predictions=predictions, references=references)
    assert result == pytest.approx(
        {"accuracy": 4 / 6, "precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "yes_ratio": 0.5}
    )
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        load_metric("pope").compute(predictions=["yes"], references=["maybe"])


def metric_module(name: str):
    """A metric's script as a module, for its answer parsing alone."""
    import importlib.util

    from tprl_eval.metrics import METRICS_DIR

    spec = importlib.util.spec_from_file_location(f"{name}_script", METRICS_DIR / name / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mme_leaves_out_an_image_without_its_pair():
    result = load_metric("mme").compute(
        predictions=["Yes", "No", "Yes"],
        references=["Yes", "No", "Yes"],
        question_ids=["a", "a", "b"],
        categories=["color"] * 3,
    )
    assert result["per_subtask"]["color"] == {"acc": 100.0, "acc_plus": 100.0, "score": 200.0}
    assert result["images_dropped"] == 1


def test_mme_scores_pairs_and_sums_the_groups():
    metric = load_metric("mme")
    result = metric.compute(
        predictions=["Yes", "No", "yes.", "Yes", "No", "no", "maybe", "No"],
        references=["Yes", "No", "Yes", "No", "No", "Yes", "Yes", "No"],
        question_ids=["a", "a", "b", "b", "c", "c", "d", "d"],
        categories=["color", "color", "color", "color", "OCR", "OCR", "code_reasoning", "code_reasoning"],
    )
    # color: 3 of 4 right (75) and 1 of 2 images fully right (50); OCR: 1 of 2 (50), 0 of 1 (0); code: "maybe" is
    # "other", so 1 of 2 (50) and 0 (0).
    assert result["per_subtask"]["color"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0}
    assert result["perception"] == 125.0 + 50.0
    assert result["cognition"] == 50.0
    assert result["total"] == 225.0
    with pytest.raises(ValueError, match="Unknown MME subtask"):
        metric.compute(predictions=["Yes"], references=["Yes"], question_ids=["a"], categories=["colour"])


def test_mmbench_circular_eval_needs_every_copy_right():
    metric = load_metric("mmbench")
    options = [["red", "blue"], ["blue", "red"], ["cat", "dog"], ["dog", "cat"], ["x", "y"]]
    result = metric.compute(
        predictions=["B", "A", "A", "A", "gibberish"],  # question 1 right twice; 2 right, then wrong; 3 unreadable
        references=["B", "A", "A", "B", "A"],
        options=options,
        indices=[1, 1_000_001, 2, 1_000_002, 3],
    )
    assert result == {"accuracy": 1 / 3, "single_pass_accuracy": 2 / 3, "num_questions": 3, "unmatched": 1}
    with pytest.raises(ValueError, match="first copy"):
        metric.compute(predictions=["A"], references=["A"], options=[["x", "y"]], indices=[1_000_001])


def test_vqa_accuracy_refuses_an_unknown_config():
    with pytest.raises(ValueError, match="Unknown vqa_accuracy config"):
        load_metric("vqa_accuracy", "okvqa")


def test_token_efficiency():
    result = load_metric("token_efficiency").compute(
        kept_tokens=[192, 64], total_tokens=[576, 576], flops=[3.0, 1.0], full_flops=[9.0, 10.0]
    )
    assert result == pytest.approx(
        {
            "kept_tokens": 128.0,
            "keep_ratio": 128 / 576,
            "flops_ratio": (1 / 3 + 0.1) / 2,
            "flops_reduction": 1 - (1 / 3 + 0.1) / 2,
        }
    )
    with pytest.raises(ValueError, match="must not exceed"):
        load_metric("token_efficiency").compute(kept_tokens=[600], total_tokens=[576], flops=[1.0], full_flops=[1.0])


def test_unknown_metric():
    with pytest.raises(ValueError, match="Unknown metric"):
        load_metric("bleu")
