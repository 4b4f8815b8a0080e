"""The shipped tiny LLaVA: plain transformers loads it, and it answers held-out questions."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration, pipeline

from tprl_digit_world import EMBEDDED_BASE_PATH
from tprl_digit_world.evaluation import answer_accuracy, fixed_examples


pytestmark = pytest.mark.skipif(
    not (Path(EMBEDDED_BASE_PATH) / "model.safetensors").exists(), reason="the embedded default is not shipped"
)


def test_pipeline_answers_a_test_canvas():
    pipe = pipeline("image-text-to-text", model=EMBEDDED_BASE_PATH)
    examples = fixed_examples("test", 8, seed=123)
    answers = []
    for example in examples:
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": Image.fromarray(example["image"])},
                    {"type": "text", "text": example["question"]},
                ],
            }
        ]
        output = pipe(text=messages, max_new_tokens=2, return_full_text=False)
        answers.append(output[0]["generated_text"].split()[0] == example["answer"])
    assert sum(answers) >= 6, answers  # ~95% accurate: a majority of 8 held-out questions right


def test_shipped_accuracy_matches_its_training_record():
    model = LlavaForConditionalGeneration.from_pretrained(EMBEDDED_BASE_PATH)
    processor = AutoProcessor.from_pretrained(EMBEDDED_BASE_PATH)
    record = json.loads((Path(EMBEDDED_BASE_PATH) / "training_run.json").read_text())
    torch.manual_seed(0)
    result = answer_accuracy(model, processor, fixed_examples("test", 2000, seed=0)[:256])
    assert result["accuracy"] >= record["test"]["accuracy"] - 0.06


def test_shipped_pruner_answers_as_its_evaluation_says():
    """The shipped pruner (its base named relative to itself) is the trained one of its results.json."""
    from modeling_tprl import TPRLForConditionalGeneration
    from tprl_digit_world import EMBEDDED_TPRL_PATH

    model = TPRLForConditionalGeneration.from_pretrained(EMBEDDED_TPRL_PATH)
    assert Path(model.config.base_model_name_or_path) == Path(EMBEDDED_BASE_PATH).resolve()
    processor = AutoProcessor.from_pretrained(EMBEDDED_TPRL_PATH)
    results = json.loads((Path(EMBEDDED_TPRL_PATH) / "results.json").read_text())
    (row,) = [row for row in results["rows"] if row["method"] == "tprl" and row["kept_tokens"] == 16]
    examples = fixed_examples("test", 2000, seed=0)[:256]
    result = answer_accuracy(model, processor, examples, num_kept_tokens=16)
    assert result["accuracy"] >= row["accuracy"] - 0.05, (result["accuracy"], row["accuracy"])
    torch.manual_seed(0)
    untrained = TPRLForConditionalGeneration.from_base(EMBEDDED_BASE_PATH)
    assert answer_accuracy(untrained, processor, examples, num_kept_tokens=16)["accuracy"] < row["accuracy"] - 0.1
