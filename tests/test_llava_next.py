"""TPRL on LLaVA-NeXT: anyres tiles packed row by row with a newline token after each row, per-image token counts."""

import pytest
import torch
from transformers import AutoModelForImageTextToText, LlavaNextForConditionalGeneration, pipeline, set_seed

from modeling_tprl import TPRLForConditionalGeneration
from tests.conftest import assert_same_tokens
from tests.llava_next_fixtures import (
    CROP,
    PATCH,
    base_view_attentions,
    build_llava_next_processor,
    prompt,
    random_images,
    tiny_llava_next_config,
)


GREEDY = {"max_new_tokens": 4, "do_sample": False}
SHAPES = [(32, 16), (16, 40), (30, 30)]  # (width, height): tile grids 1x2, 2x1, 2x2, each unpadded differently
QUESTIONS = ["what color is the 7", "is there a 3", "how many are red"]


@pytest.fixture(scope="module")
def processor():
    return build_llava_next_processor()


@pytest.fixture(scope="module")
def next_base(processor):
    set_seed(0)
    base = LlavaNextForConditionalGeneration(tiny_llava_next_config(processor)).eval()
    base.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return base


@pytest.fixture(scope="module")
def next_model(next_base):
    set_seed(1)
    return TPRLForConditionalGeneration.from_base(next_base, policy_hidden_size=32).eval()


@pytest.fixture(scope="module")
def mixed(processor):
    """Three prompts, one image each, of three shapes: left-padded as the processor pads them."""
    return processor(
        images=random_images(SHAPES), text=[prompt(q) for q in QUESTIONS], return_tensors="pt", padding=True
    )


def layout_of(model, inputs) -> list[tuple[int, int, int]]:
    return [model.family.layout(model.config.base_config, size) for size in inputs["image_sizes"].tolist()]


def test_the_layout_is_the_processors_count(next_model, mixed):
    image_tokens = (mixed["input_ids"] == next_model.config.image_token_id).sum(1).tolist()
    counts = [base + rows * (columns + 1) for base, rows, columns in layout_of(next_model, mixed)]
    assert counts == image_tokens == [52, 56, 88]


def test_pruning_off_gives_the_bases_tokens_and_logits(next_base, next_model, mixed, processor):
    assert_same_tokens(next_model.generate(**mixed, **GREEDY, keep_ratio=1.0), next_base.generate(**mixed, **GREEDY))
    assert torch.equal(next_model(**mixed, keep_ratio=1.0).logits, next_base(**mixed).logits)
    two = processor(
        images=random_images([(40, 16), (16, 16)], seed=1), text=[prompt("is there a 3", 2)], return_tensors="pt"
    )
    assert_same_tokens(next_model.generate(**two, **GREEDY, keep_ratio=1.0), next_base.generate(**two, **GREEDY))


@pytest.mark.parametrize("layout_tokens", ["none", "rows", "all"])
def test_budgets_count_each_images_content_tokens_and_newlines_follow_the_choice(next_model, mixed, layout_tokens):
    next_model.config.layout_tokens = layout_tokens
    try:
        output = next_model(**mixed, keep_ratio=0.25, pruning_method="cls_attention")
    finally:
        next_model.config.layout_tokens = "rows"
    kept = output.kept_visual_indices
    for image, (base, rows, columns) in enumerate(layout_of(next_model, mixed)):
        picks = kept[image][kept[image] >= 0]
        assert torch.equal(picks, picks.sort().values) and len(set(picks.tolist())) == len(picks)
        newlines = base + columns + (columns + 1) * torch.arange(rows)
        is_newline = torch.isin(picks, newlines)
        content = base + rows * columns
        assert int((~is_newline).sum()) == round(content / 4)  # a quarter of its own content tokens
        tile_rows = set(((picks[(picks >= base) & ~is_newline] - base) // (columns + 1)).tolist())
        expected = {"none": set(), "all": set(range(rows)), "rows": tile_rows}[layout_tokens]
        assert set(((picks[is_newline] - base) // (columns + 1)).tolist()) == expected


@pytest.mark.parametrize("method", ["uniform", "fastv", "cls_attention", "tprl"])
def test_a_batch_answers_as_each_row_alone(next_model, mixed, processor, method):
    batch = next_model.generate(**mixed, **GREEDY, keep_ratio=0.25, pruning_method=method)
    for row, question in enumerate(QUESTIONS):
        images = random_images(SHAPES)[row : row + 1]
        alone = processor(images=images, text=[prompt(question)], return_tensors="pt")
        single = next_model.generate(**alone, **GREEDY, keep_ratio=0.25, pruning_method=method)
        assert_same_tokens(batch[row : row + 1, -GREEDY["max_new_tokens"] :], single[:, -GREEDY["max_new_tokens"] :])


def test_cls_attention_reads_each_crop_and_packs_it_as_the_features(next_base, next_model, mixed):
    scores = next_model.family.vision_attention_scores(
        next_base, next_model.encode_images(keep_vision_layer_input=True, **next_model.image_inputs(dict(mixed)))
    )
    # The base view comes first, unpacked: its [CLS] attention as the CLIP tower's eager attention weights give it.
    attentions = base_view_attentions(next_base, mixed["pixel_values"])
    side = CROP // PATCH
    torch.testing.assert_close(scores[:, : side * side], attentions.mean(1)[:, 0, 1:])
    for image, (base, rows, columns) in enumerate(layout_of(next_model, mixed)):
        newlines = base + columns + (columns + 1) * torch.arange(rows)
        assert (scores[image, newlines] == 0).all() and (scores[image, base : base + columns] > 0).all()


def test_the_learned_policy_reads_each_image_on_its_slots(next_model, mixed):
    # Slots: the base view's grid, then the largest tile grid of the pinpoints; each image's tiles top-left.
    side = CROP // PATCH
    (base_grid, (max_rows, max_columns)) = next_model.config.policy_grids
    assert base_grid == (side, side) and next_model.config.num_visual_tokens == side * side + max_rows * max_columns
    visual = next_model.encode_images(**next_model.image_inputs(dict(mixed)))
    features, present, slots = next_model.policy_inputs(visual)
    for image, (base, rows, columns) in enumerate(layout_of(next_model, mixed)):
        assert int(present[image].sum()) == base + rows * columns == int(visual.content_counts[image])
        tile = slots[image, side * side :].view(max_rows, max_columns)
        assert (
            tile[:rows, :columns] == base + torch.arange(rows)[:, None] * (columns + 1) + torch.arange(columns)
        ).all()
        assert (tile[rows:] == -1).all() and (tile[:, columns:] == -1).all()
        assert torch.equal(features[image][present[image]], visual.features[image][visual.selectable[image]])
    # The trainers' way back: the packed tokens from the slots' features, the newlines the base's image_newline.
    picks = torch.stack([row.nonzero()[:5, 0] for row in present])
    packed, kept = next_model.tokens_from_slots(visual.image_inputs, features, picks)
    assert torch.equal(packed.features, visual.features) and torch.equal(packed.counts, visual.counts)
    chosen = next_model.tokens_of_slots(picks, slots)
    assert (chosen >= 0).sum(1).tolist() == [5, 5, 5] and bool(visual.selectable.gather(1, chosen).all())
    config = next_model.config
    assert torch.equal(kept, next_model.family.complete_selection(config.base_config, chosen, visual, "rows"))
    with torch.no_grad():
        kept = next_model(**mixed, keep_ratio=0.25).kept_visual_indices
    budgets = [max(1, round(int(count) * 0.25)) for count in visual.content_counts]
    for image, budget in enumerate(budgets):
        picks = kept[image][kept[image] >= 0]
        assert int(visual.selectable[image][picks].sum()) == budget  # content tokens; the rest are newlines


def test_an_image_beyond_the_policys_tile_grid_gets_a_clear_error(next_base, mixed):
    model = TPRLForConditionalGeneration.from_base(next_base, policy_hidden_size=32, visual_grid=[2, 2]).eval()
    with pytest.raises(ValueError, match="reads tile grids of up to 2x2 tokens"):
        model(**mixed, keep_ratio=0.25)


def test_a_pruner_only_checkpoint_loads_with_the_auto_class_and_answers_through_pipeline(
    next_base, next_model, mixed, processor, tmp_path
):
    next_base.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    model = TPRLForConditionalGeneration.from_base(str(tmp_path / "base"), pruning_method="fastv", keep_ratio=0.25)
    model.save_pretrained(tmp_path / "tprl")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "tprl")
    assert isinstance(loaded, TPRLForConditionalGeneration) and loaded.config.base_config.model_type == "llava_next"
    assert_same_tokens(
        loaded.generate(**mixed, **GREEDY),
        next_model.generate(**mixed, **GREEDY, keep_ratio=0.25, pruning_method="fastv"),
    )
    pipe = pipeline("image-text-to-text", model=str(tmp_path / "tprl"))
    image = random_images([(40, 16)])[0]
    messages = [
        {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "is there a 3"}]}
    ]
    answer = pipe(text=messages, max_new_tokens=2, return_full_text=False)[0]["generated_text"]
    alone = processor(images=[image], text=[prompt("is there a 3")], return_tensors="pt")
    expected = next_model.generate(**alone, max_new_tokens=2, do_sample=False, keep_ratio=0.25, pruning_method="fastv")
    assert answer.strip() == processor.decode(expected[0, alone["input_ids"].shape[1] :], skip_special_tokens=True)


def test_image_sizes_is_in_the_forward_signature(next_base, next_model, mixed):
    """Callers (transformers' own tests among them) pass only the inputs the forward's signature names."""
    import inspect

    names = inspect.signature(next_model.forward).parameters
    inputs = {name: value for name, value in mixed.items() if name in names}
    assert set(inputs) == set(mixed)
    assert torch.equal(next_model(**inputs, keep_ratio=1.0).logits, next_base(**mixed).logits)


def test_the_newline_choices_are_measured_on_the_tiled_digit_world():
    from tprl_digit_world import build_llava_next_processor, build_tiny_llava_next
    from tprl_eval.layout_tokens import evaluate_layout_tokens

    digit_processor = build_llava_next_processor()
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(build_tiny_llava_next(digit_processor)).eval()
    results = evaluate_layout_tokens(model, digit_processor, ["oracle", "uniform"], [0.25], 8, batch_size=4)
    assert results["canvas_shapes"] == [[48, 96], [96, 96]]
    full, *rows = results["rows"]
    assert [(row["method"], row["layout_tokens"]) for row in rows] == [
        (method, choice) for method in ("oracle", "uniform") for choice in ("all", "rows", "none")
    ]
    assert full["retention"] == 1.0 and 6 < full["newline_tokens"] < 12  # a newline per row of 6 or 12 tile rows
    for row in rows:  # a quarter of each canvas's 180 or 108 content tokens, rounded
        assert 27 <= row["content_tokens"] <= 45
        expected = {"all": full["newline_tokens"], "none": 0}.get(row["layout_tokens"])
        if expected is None:
            assert 0 < row["newline_tokens"] <= full["newline_tokens"]
        else:
            assert row["newline_tokens"] == expected


def test_tprl_train_runs_every_stage_on_a_llava_next_base(tmp_path):
    import datasets
    import numpy as np

    from modeling_tprl.processing_tprl import load_processor
    from tprl_digit_world import prompt_for
    from tprl_train.train_pruner import main

    main(
        [
            *["--config", "train/configs/digit_world_llava_next.yaml"],
            *["--output_dir", str(tmp_path), "--train_size", "32", "--autoencoder_steps", "2"],
            *["--num_demonstrations", "8", "--imitation_steps", "2", "--max_steps", "4", "--save_steps", "4"],
            # The trained base (some episodes right, some wrong) and several minibatches: a minibatch's episodes may
            # keep fewer tokens than the rollout's largest image.
            *["--num_generations", "4", "--per_device_train_batch_size", "4", "--num_mini_batches", "4"],
            *["--eval_size", "8", "--disable_tqdm", "true"],
        ]
    )
    # The teacher kept each canvas's keep ratio of its own content tokens (180 or 108) on the policy's 180 slots.
    demonstrations = datasets.load_from_disk(str(tmp_path / "demonstrations"))
    for row in demonstrations:
        assert len(row["picks"][-1]) in {max(1, round(count * row["keep_ratio"])) for count in (180, 108)}
        assert all(0 <= pick < 180 for step in row["picks"] for pick in step)
    assert {len(row["picks"][-1]) for row in demonstrations if row["keep_ratio"] < 0.2} == {20, 12}
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| tprl (imitation only) |" in report and "| oracle |" in report and "| cls_attention |" in report
    # The trained checkpoint keeps each canvas's own budget: 20 of 180 and 12 of 108 content tokens at 1/9.
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "ppo" / "final").eval()
    processor = load_processor(tmp_path / "ppo" / "final")
    images = [np.zeros((96, 96, 3), np.uint8), np.zeros((48, 96, 3), np.uint8)]
    inputs = processor(images=images, text=[prompt_for("what color is the 7")] * 2, return_tensors="pt", padding=True)
    model.config.layout_tokens = "none"
    with torch.no_grad():
        assert model(**inputs, keep_ratio=1 / 9).num_visual_tokens_kept.tolist() == [20, 12]


def test_the_dry_run_runs_every_stage_of_the_7b_recipe_on_a_llava_next_base(tmp_path, capsys):
    """The LLaVA-NeXT-7B recipe's dry run on the tiny LLaVA-NeXT's config: a 2-layer copy with a LLaVA-NeXT processor
    of its crops and pinpoints, 672x672 fixture images (each a base view and 2x2 tiles)."""
    import json

    from PIL import Image

    from modeling_tprl.processing_tprl import load_processor
    from tprl_digit_world import EMBEDDED_LLAVA_NEXT_PATH
    from tprl_train.train_pruner import main

    recipe = ["--config", "train/configs/llava-next-7b.yaml", "--base_model_name_or_path", EMBEDDED_LLAVA_NEXT_PATH]
    main([*recipe, "--relevance_tokens", "4", "--dry_run", "--use_cpu", "true", "--output_dir", str(tmp_path)])
    dry = tmp_path / "dry_run"
    processor = load_processor(dry / "base")
    inputs = processor.image_processor(Image.new("RGB", (672, 672)), return_tensors="pt")
    assert inputs["image_sizes"].tolist() == [[672, 672]] and inputs["pixel_values"].shape[1] == 5  # base + 2x2
    config = LlavaNextForConditionalGeneration.config_class.from_pretrained(dry / "base")
    assert (config.text_config.num_hidden_layers, config.vision_config.num_hidden_layers) == (2, 2)
    rows = {row["stage"]: row for row in json.loads((dry / "dry_run.json").read_text())}
    assert set(rows) == {"autoencoder", "demonstrations", "imitation", "ppo"}
    assert all(row["dry_seconds"] > 0 and row["projected_hours_same_device"] > 0 for row in rows.values())
    assert rows["demonstrations"]["real_examples"] == 20000
    assert "Projected GPU time of the whole run" in capsys.readouterr().out
