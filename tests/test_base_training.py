"""`tprl-train-base`: its token-drop augmentation and a short real run."""

import json

import numpy as np
import pytest
import torch

from tprl_digit_world import DigitWorld, build_llava_next_processor, build_processor
from tprl_digit_world.canvas import TILED_CANVAS_SHAPES, patch_indices
from tprl_digit_world.processor import canvas_token_grid
from tprl_digit_world.train_base import BaseTrainingArguments, content_first_indices, train, with_newlines


def test_content_first_indices_keep_every_digit_then_fill_with_background():
    world, rng = DigitWorld("train"), np.random.default_rng(0)
    examples = [world.sample(rng, num_digits=6) for _ in range(8)]
    kept = content_first_indices(examples, 16, build_processor(), rng)
    assert kept.shape == (8, 16)
    for row, example in zip(kept.tolist(), examples):
        assert row == sorted(set(row))
        for item in example["layout"]:  # at least one patch of every digit survives
            assert set(row) & set(patch_indices(item.box, 8))
    covered = {i for item in examples[0]["layout"] for i in patch_indices(item.box, 8)}
    everything = content_first_indices(examples[:1], 144, build_processor(), rng)[0].tolist()
    assert everything == list(range(144))
    assert len(covered) < 144


def test_a_tiled_base_drops_tokens_in_its_packed_order_with_each_newline_choice():
    processor, rng = build_llava_next_processor(), np.random.default_rng(0)
    world = DigitWorld("train", TILED_CANVAS_SHAPES)
    examples = [world.sample(rng, num_digits=4) for _ in range(6)]
    kept = content_first_indices(examples, 12, processor, rng)
    for row, example in zip(kept.tolist(), examples):
        tokens = canvas_token_grid(processor, example["image"].shape[:2])
        newlines = set((tokens[:, -1] + 1).tolist())
        assert not set(row) & newlines and max(row) <= int(tokens[-1, -1])
        for item in example["layout"]:  # each digit keeps its centre patch's token
            x0, y0 = item.box[:2]
            assert int(tokens[y0 // 8 + 1, x0 // 8 + 1]) in row
    for choice, expected in [("none", 0), ("all", None)]:
        completed = with_newlines(kept, examples, processor, choice)
        for row, example in zip(completed.tolist(), examples):
            rows = canvas_token_grid(processor, example["image"].shape[:2]).shape[0]
            picks = [i for i in row if i >= 0]
            assert len(picks) == 12 + (rows if expected is None else expected)
    rows_kept = with_newlines(kept, examples, processor, "rows")
    for picks, example in zip(rows_kept, examples):
        tokens = canvas_token_grid(processor, example["image"].shape[:2])
        with_token = torch.isin(tokens, picks).any(1)
        assert torch.equal(torch.isin(tokens[:, -1] + 1, picks), with_token)


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


def test_a_warm_started_tiled_run_writes_a_loadable_llava_next(tmp_path):
    from tprl_digit_world import EMBEDDED_BASE_PATH

    args = BaseTrainingArguments(
        output_dir=str(tmp_path), family="llava_next", init_from=EMBEDDED_BASE_PATH, aux_steps=2, max_steps=4,
        batch_size=4, eval_every=2, num_eval_examples=8, token_drop=0.5,
    )  # fmt: skip
    run = train(args)
    # Every weight of the tiny LLaVA starts it (the position table resized to 6x6 patches) but the row newline.
    assert run["warm_start"]["initialised"] == ["model.image_newline"]
    assert run["warm_start"]["resized"] == ["model.vision_tower.embeddings.position_embedding.weight"]
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    from tprl_digit_world.evaluation import answer_accuracy, fixed_examples

    saved_model = LlavaNextForConditionalGeneration.from_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert processor.image_processor.image_grid_pinpoints == [[96, 96], [48, 96]]
    validation = fixed_examples("validation", 8, seed=args.seed + 1, canvas_shapes=TILED_CANVAS_SHAPES)
    assert answer_accuracy(saved_model, processor, validation) == run["validation"]


def test_bad_family():
    with pytest.raises(ValueError, match="family must be one of"):
        BaseTrainingArguments(family="gemma3")
