"""The lmms-eval plugin: the real `lmms-eval` command on a local digit-world task gives tprl-eval's accuracy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoProcessor


pytest.importorskip("lmms_eval", reason="install the lmms extra and lmms-eval (README, 'Evaluating')")

from lmms_eval.models import get_model  # noqa: E402

from tprl_digit_world import EMBEDDED_BASE_PATH  # noqa: E402
from tprl_eval.cli import load_model  # noqa: E402
from tprl_eval.digit_world_eval import evaluate_methods  # noqa: E402
from tprl_eval.lmms_eval_model import TPRLLmms  # noqa: E402
from tprl_eval.lmms_eval_task import write_digit_world_task  # noqa: E402


NUM_QUESTIONS = 200


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    return write_digit_world_task(tmp_path_factory.mktemp("lmms_task"), num_examples=NUM_QUESTIONS, seed=0)


@pytest.fixture(scope="module")
def tprl_checkpoint(tprl_model, processor, tmp_path_factory):
    path = tmp_path_factory.mktemp("tprl_checkpoint")
    tprl_model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


def lmms_eval_accuracy(task_dir: Path, output_dir: Path, model_args: str) -> float:
    """Runs the `lmms-eval` command as a user would and reads the accuracy from its results file."""
    command = [
        str(Path(sys.executable).parent / "lmms-eval"),
        "--model", "tprl", "--model_args", model_args, "--tasks", "digit_world", "--include_path", str(task_dir),
        "--batch_size", "64", "--output_path", str(output_dir),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=output_dir.parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (results_file,) = output_dir.rglob("*_results.json")
    return json.loads(results_file.read_text())["results"]["digit_world"]["accuracy,none"]


def test_the_entry_point_registers_tprl():
    assert get_model("tprl") is TPRLLmms


@pytest.mark.parametrize(
    ("pretrained", "model_args", "method", "keep_ratio"),
    [
        ("embedded", "keep_ratio=1.0", "full", 1.0),
        ("embedded", "keep_ratio=0.222,pruning_method=cls_attention", "cls_attention", 0.222),
        ("tprl_checkpoint", "keep_ratio=0.222", "tprl", 0.222),
    ],
)
def test_lmms_eval_matches_tprl_eval(task_dir, tprl_checkpoint, tmp_path, pretrained, model_args, method, keep_ratio):
    path = EMBEDDED_BASE_PATH if pretrained == "embedded" else tprl_checkpoint
    accuracy = lmms_eval_accuracy(task_dir, tmp_path / "out", f"pretrained={path},{model_args}")
    model = load_model(path, [method]).eval()
    split = evaluate_methods(model, AutoProcessor.from_pretrained(path), [method], [keep_ratio], NUM_QUESTIONS)
    assert accuracy == pytest.approx(split["rows"][0]["accuracy"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_ratio": 0.5}, "without a trained pruner"),
        ({"keep_ratio": 0.5, "pruning_method": "magic"}, "Unknown pruning_method"),
        ({"keep_ratio": 1.5, "pruning_method": "fastv"}, "keep_ratio"),
        ({"temperature": 0.7}, "Unknown --model_args"),
    ],
)
def test_bad_model_args_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TPRLLmms(pretrained=EMBEDDED_BASE_PATH, **kwargs)


def test_lmms_eval_runs_a_qwen2_5_vl_base_with_a_training_free_method(task_dir, digit_world_qwen_dir, tmp_path):
    accuracy = lmms_eval_accuracy(
        task_dir, tmp_path / "out", f"pretrained={digit_world_qwen_dir},keep_ratio=0.25,pruning_method=uniform"
    )
    assert 0.0 <= accuracy <= 1.0  # a random tiny Qwen2.5-VL: the run, not the score, is what is tested
