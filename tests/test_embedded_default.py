"""The shipped tiny bases (LLaVA, LLaVA-NeXT, Qwen2.5-VL): plain transformers loads them, they answer held-out
questions, and their shipped pruners answer as their evaluations say."""

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, pipeline

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.processing_tprl import load_processor
from tprl_digit_world import (
    EMBEDDED_BASE_PATH,
    EMBEDDED_LLAVA_NEXT_PATH,
    EMBEDDED_LLAVA_NEXT_TPRL_PATH,
    EMBEDDED_QWEN2_5_VL_PATH,
    EMBEDDED_QWEN2_5_VL_TPRL_PATH,
    EMBEDDED_TPRL_PATH,
)
from tprl_digit_world.evaluation import answer_accuracy, fixed_examples
from tprl_digit_world.processor import canvas_shapes_of


EMBEDDED_BASES = pytest.mark.parametrize(
    "base", [EMBEDDED_BASE_PATH, EMBEDDED_LLAVA_NEXT_PATH, EMBEDDED_QWEN2_5_VL_PATH], ids=["llava", "next", "qwen"]
)
SHIPPED_PRUNERS = pytest.mark.parametrize(
    "pruner, base",
    [
        (EMBEDDED_TPRL_PATH, EMBEDDED_BASE_PATH),
        (EMBEDDED_LLAVA_NEXT_TPRL_PATH, EMBEDDED_LLAVA_NEXT_PATH),
        (EMBEDDED_QWEN2_5_VL_TPRL_PATH, EMBEDDED_QWEN2_5_VL_PATH),
    ],
    ids=["llava", "next", "qwen"],
)


@EMBEDDED_BASES
def test_pipeline_answers_a_test_canvas(base):
    # The processor as load_processor gives it: Qwen's full one needs torchvision for its video processor.
    processor = load_processor(base)
    pipe = pipeline("image-text-to-text", model=base, processor=processor)
    examples = fixed_examples("test", 8, seed=123, canvas_shapes=canvas_shapes_of(processor))
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


@EMBEDDED_BASES
def test_shipped_accuracy_matches_its_training_record(base):
    model = AutoModelForImageTextToText.from_pretrained(base)
    record = json.loads((Path(base) / "training_run.json").read_text())
    torch.manual_seed(0)
    processor = load_processor(base)
    examples = fixed_examples("test", 2000, seed=0, canvas_shapes=canvas_shapes_of(processor))[:256]
    result = answer_accuracy(model, processor, examples)
    assert result["accuracy"] >= record["test"]["accuracy"] - 0.06


@SHIPPED_PRUNERS
def test_shipped_pruner_answers_as_its_evaluation_says(pruner, base):
    """The shipped pruner (its base named relative to itself) is the trained one of its results.json."""
    model = TPRLForConditionalGeneration.from_pretrained(pruner)
    assert Path(model.config.base_model_name_or_path) == Path(base).resolve()
    processor = load_processor(pruner)
    results = json.loads((Path(pruner) / "results.json").read_text())
    (row,) = [row for row in results["rows"] if row["method"] == "tprl" and row["keep_ratio"] < 0.2]  # 11% kept
    examples = fixed_examples("test", 2000, seed=0, canvas_shapes=canvas_shapes_of(processor))[:256]
    result = answer_accuracy(model, processor, examples, keep_ratio=row["keep_ratio"])
    assert result["accuracy"] >= row["accuracy"] - 0.05, (result["accuracy"], row["accuracy"])
    torch.manual_seed(0)
    untrained = TPRLForConditionalGeneration.from_base(base, visual_grid=model.config.visual_grid)
    untrained_accuracy = answer_accuracy(untrained, processor, examples, keep_ratio=row["keep_ratio"])["accuracy"]
    assert untrained_accuracy < row["accuracy"] - 0.1
