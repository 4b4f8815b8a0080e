import numpy as np
import pytest
import torch
from PIL import Image

from tprl_digit_world import (
    DigitWorld,
    build_llava_next_processor,
    build_processor,
    build_qwen2_5_vl_processor,
    pixel_values_of,
    prompt_for,
    relevant_placements,
    token_patch_size,
)
from tprl_digit_world.batching import DigitWorldCollator
from tprl_digit_world.builder import DigitWorldBuilder
from tprl_digit_world.canvas import TILED_CANVAS_SHAPES, patch_indices, split_digit_pool
from tprl_digit_world.evaluation import fixed_examples
from tprl_digit_world.model import build_tiny_llava_next
from tprl_digit_world.processor import canvas_shapes_of, canvas_token_count, canvas_token_grid
from tprl_eval.oracle import oracle_indices


def test_splits_use_disjoint_handwriting():
    pools = [split_digit_pool(split)[0].reshape(-1, 256) for split in ("train", "validation", "test")]
    keys = [{row.tobytes() for row in pool} for pool in pools]
    assert not keys[0] & keys[2] and not keys[0] & keys[1]


def test_examples_are_deterministic_and_consistent():
    a, b = fixed_examples("test", 40, seed=7), fixed_examples("test", 40, seed=7)
    for x, y in zip(a, b):
        assert x["question"] == y["question"] and np.array_equal(x["image"], y["image"])
    for example in a:
        layout = example["layout"]
        assert 3 <= len(layout) <= 6 and len({p.digit for p in layout}) == len(layout)
        relevant = relevant_placements(example["question"], layout)
        if example["question_type"] == "color":
            assert example["answer"] == relevant[0].color
        if example["question_type"] == "digit":
            assert len(relevant) == 1 and example["answer"] == str(relevant[0].digit)
        if example["question_type"] == "count":
            assert example["answer"] == str(len(relevant))
        if example["question_type"] == "presence":
            assert example["answer"] == ("yes" if relevant else "no")
        for item in layout:  # every digit is drawn in its box
            x0, y0, x1, y1 = item.box
            assert example["image"][y0:y1, x0:x1].any()


def test_presence_answers_are_balanced():
    answers = [e["answer"] for e in fixed_examples("train", 2000) if e["question_type"] == "presence"]
    assert 0.45 < answers.count("yes") / len(answers) < 0.55


def test_the_tiled_world_draws_both_shapes_and_keeps_digits_inside():
    examples = fixed_examples("test", 60, seed=5, canvas_shapes=TILED_CANVAS_SHAPES)
    shapes = [example["image"].shape[:2] for example in examples]
    assert set(shapes) == {(96, 96), (48, 96)} and 0.3 < shapes.count((48, 96)) / len(shapes) < 0.7
    for example, (height, width) in zip(examples, shapes):
        boxes = [item.box for item in example["layout"]]
        assert all(x1 <= width and y1 <= height for _, _, x1, y1 in boxes)
        cells = {i for box in boxes for i in patch_indices(box, 8, width)}
        assert len(cells) == 4 * len(boxes)  # no overlap
    with pytest.raises(ValueError, match="multiples of 8"):
        DigitWorld("test", ((96, 90),))


TINY_PROCESSORS = pytest.mark.parametrize(
    "build_tiny_processor", [build_processor, build_llava_next_processor, build_qwen2_5_vl_processor]
)


@TINY_PROCESSORS
def test_collator_matches_processor(build_tiny_processor):
    processor = build_tiny_processor()
    examples = fixed_examples("test", 4, canvas_shapes=canvas_shapes_of(processor))
    batch = DigitWorldCollator(processor)(examples)
    messages = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": e["question"]}]}] for e in examples
    ]
    reference = processor(
        images=[Image.fromarray(example["image"]) for example in examples],
        text=[processor.apply_chat_template(m, add_generation_prompt=True) for m in messages],
        padding=True,
        return_tensors="pt",
    )
    assert batch.keys() == reference.keys()  # LLaVA-NeXT's image_sizes, Qwen's image_grid_thw and mm_token_type_ids
    for name, value in reference.items():
        assert torch.equal(batch[name], value), name


@TINY_PROCESSORS
def test_follow_up_turns_match_the_chat_template(build_tiny_processor):
    processor = build_tiny_processor()
    world, rng = DigitWorld("train", canvas_shapes_of(processor)[-1:]), np.random.default_rng(3)
    example = world.sample(rng, question_type="color")
    example["follow_ups"] = [world.follow_up(rng, example["layout"], kind) for kind in ("presence", "count")]
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example["question"]}]},
        {"role": "assistant", "content": example["answer"]},
    ]
    for turn in example["follow_ups"]:
        messages += [{"role": "user", "content": turn["question"]}, {"role": "assistant", "content": turn["answer"]}]
    text = processor.apply_chat_template(messages)
    reference = processor(images=Image.fromarray(example["image"]), text=text, return_tensors="pt")
    batch = DigitWorldCollator(processor, with_answers=True)([example])
    assert torch.equal(batch["input_ids"], reference["input_ids"])
    scored = processor.tokenizer.convert_ids_to_tokens(batch["labels"][0][batch["labels"][0] != -100])
    assert scored == [example["answer"], "</s>"] + [
        t for turn in example["follow_ups"] for t in (turn["answer"], "</s>")
    ]


def test_follow_up_digit_questions_name_a_unique_colour():
    world, rng = DigitWorld("train"), np.random.default_rng(0)
    for _ in range(50):
        example = world.sample(rng, question_type="count")
        turn = world.follow_up(rng, example["layout"], "digit")
        if turn is not None:
            assert len(relevant_placements(turn["question"], example["layout"])) == 1


def test_both_tiny_bases_read_the_canvas_in_8_pixel_tokens():
    # The oracle, the coverage and the policy's 12x12 grid read the same patches of either base.
    assert token_patch_size(build_processor()) == token_patch_size(build_qwen2_5_vl_processor()) == 8
    image = np.zeros((96, 96, 3), np.uint8)
    assert build_qwen2_5_vl_processor().image_processor(image)["image_grid_thw"].tolist() == [[1, 12, 12]]


def test_the_tiny_llava_next_reads_each_canvas_patch_at_its_token():
    # The tiles are the canvas at its own resolution: the token canvas_token_grid names for a patch is that patch's
    # projected feature, in the order the base packs them (base view, then the tile rows, each closed by a newline).
    processor = build_llava_next_processor()
    torch.manual_seed(0)
    model = build_tiny_llava_next(processor).eval()
    examples = fixed_examples("test", 8, canvas_shapes=TILED_CANVAS_SHAPES)
    examples = [next(e for e in examples if e["image"].shape[0] == side) for side in (96, 48)]
    inputs = processor.image_processor([e["image"] for e in examples], return_tensors="pt")
    with torch.no_grad():
        packed = model.model.get_image_features(**inputs).pooler_output
        tower = model.model.vision_tower(inputs["pixel_values"].flatten(0, 1), output_hidden_states=True)
        crops = model.model.multi_modal_projector(tower.hidden_states[-1][:, 1:]).view(2, -1, 6, 6, 128)
    for image, example in enumerate(examples):
        shape = example["image"].shape[:2]
        grid = canvas_token_grid(processor, shape)
        assert len(packed[image]) == canvas_token_count(processor, shape)
        assert torch.allclose(packed[image][:36], crops[image, 0].flatten(0, 1), atol=1e-6)  # the base view
        tiles_wide = shape[1] // 48
        for row, column in [(0, 0), (5, 7), (grid.shape[0] - 1, grid.shape[1] - 1)]:
            crop = 1 + (row // 6) * tiles_wide + column // 6
            assert torch.allclose(packed[image][grid[row, column]], crops[image, crop, row % 6, column % 6], atol=1e-6)
        assert torch.equal(packed[image][grid[:, -1] + 1], model.model.image_newline.expand(grid.shape[0], -1))


def test_chat_template_gives_the_prompt(processor):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "which digit is red"}]}]
    assert processor.apply_chat_template(messages, add_generation_prompt=True) == prompt_for("which digit is red")


def test_oracle_keeps_the_named_digit_first():
    example = next(e for e in fixed_examples("test", 20) if e["question_type"] == "color")
    (item,) = relevant_placements(example["question"], example["layout"])
    col, row = item.box[0] // 8, item.box[1] // 8  # a 16x16 digit covers 2x2 patches of 8 px
    expected = sorted([row * 12 + col, row * 12 + col + 1, (row + 1) * 12 + col, (row + 1) * 12 + col + 1])
    assert oracle_indices([example], 4, build_processor()).tolist() == [expected]
    assert len(patch_indices(item.box, patch_size=4)) == 16


def test_builder_is_deterministic(tmp_path):
    def build(path):
        builder = DigitWorldBuilder(cache_dir=str(path), seed=3, train_size=4, validation_size=4, test_size=8)
        builder.download_and_prepare()
        return builder.as_dataset("test")

    dense = DigitWorldBuilder(
        cache_dir=str(tmp_path / "dense"), train_size=8, validation_size=1, test_size=1, min_digits=6
    )
    dense.download_and_prepare()
    assert {len(layout) for layout in dense.as_dataset("train")["layout"]} == {6}
    first, second = build(tmp_path / "a"), build(tmp_path / "b")
    assert first.num_rows == 8 and first["question"] == second["question"]
    assert set(first.column_names) == {"image", "question", "answer", "question_type", "layout"}
    assert first[0]["image"].size == (96, 96) and len(first[0]["layout"][0]["box"]) == 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: DigitWorld("dev"), "Unknown split 'dev'"),
        (lambda: DigitWorld("test").sample(np.random.default_rng(0), question_type="size"), "Unknown question type"),
        (lambda: DigitWorld("test").sample(np.random.default_rng(0), num_digits=9), r"num_digits must be in \[1, 6\]"),
        (lambda: fixed_examples("test", 0), "count must be positive"),
        (lambda: DigitWorldBuilder(seed=-1), r"seed must be in \[0, 2\*\*32\)"),
        (lambda: DigitWorldBuilder(test_size=0), r"test_size must be in"),
        (lambda: DigitWorldBuilder(min_digits=5, max_digits=4), "min_digits <= max_digits <= 6, got 5 and 4"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pixel_values_match_the_processor_bitwise(processor):
    canvases = [example["image"] for example in fixed_examples("test", 8)]
    images = [Image.fromarray(canvas) for canvas in canvases]
    reference = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    assert torch.equal(pixel_values_of(images, processor.image_processor), reference)
    assert torch.equal(pixel_values_of(canvases, processor.image_processor), reference)
    # Images the processor resizes, or converts to RGB, go through it.
    others = [Image.fromarray(canvases[0][:64, :80]), images[1].convert("L"), images[2].convert("RGBA")]
    for image in others:
        expected = processor.image_processor([image], return_tensors="pt")["pixel_values"]
        assert torch.equal(pixel_values_of([image], processor.image_processor), expected)


def test_dense_canvases_and_named_target_coverage(processor):
    from tprl_digit_world.evaluation import named_target_covered

    examples = fixed_examples("test", 40, seed=3, num_digits=6)
    assert all(len(example["layout"]) == 6 for example in examples)
    oracle = oracle_indices(examples, 16, processor)
    covered = named_target_covered(examples, oracle, processor)
    for example, value in zip(examples, covered):
        named = relevant_placements(example["question"], example["layout"])
        assert (value is None) == (not named)  # a presence question answered "no" names no digit on the canvas
        if named and len(named) <= 4:  # four named digits' 2x2 patches fit in 16 tokens: the oracle keeps them all
            assert value
    assert named_target_covered(examples, None, processor) == [v if v is None else True for v in covered]
    first = examples[next(i for i, v in enumerate(covered) if v)]
    patch = patch_indices(relevant_placements(first["question"], first["layout"])[0].box, processor.patch_size)[0]
    missing_one = torch.tensor([[i for i in range(144) if i != patch][:16]])
    assert named_target_covered([first], missing_one, processor) == [False]
