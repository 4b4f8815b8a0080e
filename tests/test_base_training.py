"""`tprl-train-base`: its token-drop augmentation and a short real run."""

import json

import numpy as np
import pytest

from tprl_digit_world import DigitWorld
from tprl_digit_world.canvas import patch_indices
from tprl_digit_world.train_base import BaseTrainingArguments, content_first_indices, train


def test_content_first_indices_keep_every_digit_then_fill_with_background():
    world, rng = DigitWorld("train"), np.random.default_rng(0)
    examples = [world.sample(rng, num_digits=6) for _ in range(8)]
    kept = content_first_indices(examples, 16, 8, rng)
    assert kept.shape == (8, 16)
    for row, example in zip(kept.tolist(), examples):
        assert row == sorted(set(row))
        for item in example["layout"]:  # at least one patch of every digit survives
            assert set(row) & set(patch_indices(item.box, 8))
    covered = {i for item in examples[0]["layout"] for i in patch_indices(item.box, 8)}
    everything = content_first_indices(examples[:1], 144, 8, rng)[0].tolist()
    assert everything == list(range(144))
    assert len(covered) < 144


def test_a_short_run_writes_a_loadable_llava_and_its_record(tmp_path):
    args = BaseTrainingArguments(
        output_dir=str(tmp_path), aux_steps=2, max_steps=4, batch_size=4, eval_every=2, log_every=3, num_eval_examples=8,
        token_drop=0.5,
    )  # fmt: skip
    run = train(args)
    saved = json.loads((tmp_path / "training_run.json").read_text())
    assert saved["arguments"]["token_drop"] == 0.5
    assert [r["step"] for r in saved["history"]] == [2, 3, 4]  # validation steps and every log_every-th
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from tprl_digit_world.evaluation import answer_accuracy, fixed_examples

    saved_model = LlavaForConditionalGeneration.from_pretrained(tmp_path)
    validation = fixed_examples("validation", 8, seed=args.seed + 1)
    assert answer_accuracy(saved_model, AutoProcessor.from_pretrained(tmp_path), validation) == run["validation"]


def test_bad_token_drop():
    with pytest.raises(ValueError, match="token_drop"):
        BaseTrainingArguments(token_drop=1.5)


def test_a_short_run_of_the_qwen2_5_vl_family_writes_a_loadable_qwen2_5_vl(tmp_path):
    args = BaseTrainingArguments(
        output_dir=str(tmp_path), family="qwen2_5_vl", aux_steps=2, max_steps=4, batch_size=4, eval_every=2,
        num_eval_examples=8,
    )  # fmt: skip
    run = train(args)
    from transformers import Qwen2_5_VLForConditionalGeneration

    from modeling_tprl.processing_tprl import load_processor
    from tprl_digit_world.evaluation import answer_accuracy, fixed_examples

    saved_model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tmp_path)
    assert saved_model.config.vision_config.spatial_merge_size == 1
    validation = fixed_examples("validation", 8, seed=args.seed + 1)
    assert answer_accuracy(saved_model, load_processor(tmp_path), validation) == run["validation"]


def test_bad_family():
    with pytest.raises(ValueError, match="family must be one of"):
        BaseTrainingArguments(family="gemma3")
