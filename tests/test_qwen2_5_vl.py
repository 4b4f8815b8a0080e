"""TPRL on Qwen2.5-VL: the family of variable token counts, window attention and 3-D (mRoPE) positions."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AttentionInterface,
    AutoModelForImageTextToText,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    pipeline,
    set_seed,
)
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import eager_attention_forward, get_vision_window_index

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.processing_tprl import load_processor
from tests.conftest import assert_same_tokens
from tests.qwen_fixtures import IMAGE, MERGE, PAD, PATCH, TEMPORAL, VISION_END, VISION_START, tiny_qwen_config


GREEDY = {"max_new_tokens": 5, "do_sample": False}


@pytest.fixture(scope="module")
def qwen_base():
    set_seed(0)
    base = Qwen2_5_VLForConditionalGeneration(tiny_qwen_config()).eval()
    base.generation_config.pad_token_id, base.generation_config.eos_token_id = PAD, None
    return base


@pytest.fixture(scope="module")
def qwen_model(qwen_base):
    set_seed(1)
    return TPRLForConditionalGeneration.from_base(qwen_base, policy_hidden_size=32, visual_grid=[4, 4]).eval()


def qwen_inputs(rows: list[list], seed: int = 0) -> dict:
    """
    Left-padded inputs as Qwen2.5-VL's processor builds them. Each row is a list of text lengths (ints) and images
    (`(h, w)` patch grids, even sides): an image becomes `<|vision_start|>`, one `<|image_pad|>` per merged token,
    `<|vision_end|>`.
    """
    generator = torch.Generator().manual_seed(seed)
    sequences, grids = [], []
    for row in rows:
        sequence = []
        for part in row:
            if isinstance(part, int):
                sequence += torch.randint(6, 64, (part,), generator=generator).tolist()
            else:
                sequence += [VISION_START] + [IMAGE] * (part[0] * part[1] // MERGE**2) + [VISION_END]
                grids.append([1, *part])
        sequences.append(sequence)
    length = max(len(sequence) for sequence in sequences)
    input_ids = torch.full((len(rows), length), PAD)
    attention_mask = torch.zeros_like(input_ids)
    for index, sequence in enumerate(sequences):
        input_ids[index, length - len(sequence) :] = torch.tensor(sequence)
        attention_mask[index, length - len(sequence) :] = 1
    inputs = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "mm_token_type_ids": (input_ids == IMAGE).int(),
    }
    if grids:
        grid_thw = torch.tensor(grids)
        inputs["pixel_values"] = torch.randn(
            int(grid_thw.prod(-1).sum()), 3 * TEMPORAL * PATCH * PATCH, generator=generator
        )
        inputs["image_grid_thw"] = grid_thw
    return inputs


def unpad(inputs: dict, row: int, rows: list[list]) -> dict:
    """Row `row` of `qwen_inputs(rows)` alone."""
    start = int(inputs["attention_mask"][row].nonzero().min())
    alone = {
        name: inputs[name][row : row + 1, start:] for name in ("input_ids", "attention_mask", "mm_token_type_ids")
    }
    images_before = sum(1 for part in sum(rows[:row], []) if not isinstance(part, int))
    images = sum(1 for part in rows[row] if not isinstance(part, int))
    if images:
        grid_thw = inputs["image_grid_thw"]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), grid_thw.prod(-1).cumsum(0)])
        alone["image_grid_thw"] = grid_thw[images_before : images_before + images]
        alone["pixel_values"] = inputs["pixel_values"][offsets[images_before] : offsets[images_before + images]]
    return alone


MIXED = [[3, (8, 8), 4], [(4, 6), 6], [2, (6, 4), 3, (4, 4), 2]]  # sizes differ, a row with two images


@pytest.mark.parametrize(
    "rows",
    [MIXED, [[7], [3, 4]], [[2, (8, 8), 5]]],
    ids=["images-of-different-sizes-left-padded", "text-only", "one-image"],
)
def test_pruning_off_gives_the_bases_tokens(qwen_base, qwen_model, rows):
    inputs = qwen_inputs(rows)
    expected = qwen_base.generate(**inputs, **GREEDY)
    assert_same_tokens(qwen_model.generate(**inputs, **GREEDY, keep_ratio=1.0), expected)
    logits = qwen_model(**inputs, keep_ratio=1.0).logits
    assert torch.equal(logits, qwen_base(**inputs).logits)


def test_pruning_off_beams_and_return_sequences_give_the_bases(qwen_base, qwen_model):
    inputs = qwen_inputs(MIXED)
    settings = {"max_new_tokens": 4, "num_beams": 2, "num_return_sequences": 2, "do_sample": False}
    assert_same_tokens(
        qwen_model.generate(**inputs, **settings, keep_ratio=1.0), qwen_base.generate(**inputs, **settings)
    )


def test_budgets_apply_to_each_images_own_tokens(qwen_model):
    inputs = qwen_inputs(MIXED)  # images of 16, 6, 6 and 4 merged tokens
    output = qwen_model(**inputs, keep_ratio=0.5, pruning_method="uniform")
    assert output.num_visual_tokens_kept.tolist() == [8, 3, 3, 2]
    kept = output.kept_visual_indices
    assert kept.shape == (4, 8) and (kept[1:, 3:] == -1).all() and (kept[0] >= 0).all()
    capped = qwen_model(**inputs, num_kept_tokens=5, pruning_method="uniform").num_visual_tokens_kept
    assert capped.tolist() == [5, 5, 5, 4]  # capped by each image's own count
    real = inputs["attention_mask"].sum(1) - (inputs["input_ids"] == IMAGE).sum(1)
    assert output.attention_mask.sum(1).tolist() == (real + torch.tensor([8, 3, 5])).tolist()


@pytest.mark.parametrize("method", ["random", "uniform", "fastv", "vision_attention"])
def test_a_batch_answers_as_each_row_alone(qwen_model, method):
    inputs = qwen_inputs(MIXED)
    torch.manual_seed(0)
    batch = qwen_model.generate(**inputs, **GREEDY, keep_ratio=0.5, pruning_method=method)
    if method == "random":
        return  # its draws depend on the batch
    for row in range(len(MIXED)):
        alone = qwen_model.generate(**unpad(inputs, row, MIXED), **GREEDY, keep_ratio=0.5, pruning_method=method)
        assert_same_tokens(batch[row : row + 1, -GREEDY["max_new_tokens"] :], alone[:, -GREEDY["max_new_tokens"] :])


def test_the_language_model_gets_the_bases_positions_of_the_kept_tokens(qwen_base, qwen_model):
    inputs = qwen_inputs(MIXED)
    full_positions, _ = qwen_base.model.get_rope_index(
        inputs["input_ids"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        image_grid_thw=inputs["image_grid_thw"],
        attention_mask=inputs["attention_mask"],
    )
    seen = []
    handle = qwen_base.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs["position_ids"], kwargs["attention_mask"])), with_kwargs=True
    )
    try:
        output = qwen_model.generate(
            **inputs, **GREEDY, keep_ratio=0.5, pruning_method="uniform", return_dict_in_generate=True
        )
    finally:
        handle.remove()
    kept = qwen_model(**inputs, keep_ratio=0.5, pruning_method="uniform").kept_visual_indices
    prefill, _ = seen[0]
    image_rows = [0, 1, 2, 2]
    for row in range(len(MIXED)):
        real = inputs["attention_mask"][row].bool()
        is_image = inputs["input_ids"][row] == IMAGE
        keep = real & ~is_image
        image_columns = is_image.nonzero().flatten()
        images = [index for index, image_row in enumerate(image_rows) if image_row == row]
        offset = 0
        for image in images:
            count = int(inputs["image_grid_thw"][image].prod()) // MERGE**2
            picks = kept[image][kept[image] >= 0]
            keep[image_columns[offset + picks]] = True
            offset += count
        expected = full_positions[:, row, keep]
        got = prefill[1:, row, -int(keep.sum()) :]
        assert torch.equal(got, expected), row
        assert prefill[0, row, -int(keep.sum()) :].tolist() == list(range(int(keep.sum())))
        # Each decoding step continues where the unpruned prompt would: its largest position + 1 + step.
        for step, (positions, _) in enumerate(seen[1:]):
            assert positions[1:, row, -1].tolist() == [int(full_positions[:, row, real].max()) + 1 + step] * 3
    assert output.sequences.shape[1] == inputs["input_ids"].shape[1] + GREEDY["max_new_tokens"]


def test_beams_sampling_and_return_sequences_work_with_pruning(qwen_model):
    inputs = qwen_inputs(MIXED)
    beams = {"max_new_tokens": 3, "num_beams": 2, "num_return_sequences": 2, "do_sample": False}
    pruned = qwen_model.generate(**inputs, **beams, keep_ratio=0.5, pruning_method="uniform")
    for row in range(len(MIXED)):
        alone = qwen_model.generate(**unpad(inputs, row, MIXED), **beams, keep_ratio=0.5, pruning_method="uniform")
        assert_same_tokens(pruned[2 * row : 2 * row + 2, -3:], alone[:, -3:])
    torch.manual_seed(0)
    sampled = qwen_model.generate(
        **inputs, max_new_tokens=3, do_sample=True, num_return_sequences=3, keep_ratio=0.5, pruning_method="fastv"
    )
    assert sampled.shape == (9, inputs["input_ids"].shape[1] + 3)


def test_generation_without_a_cache_keeps_the_selection_and_positions(qwen_model):
    inputs = qwen_inputs(MIXED)
    cached = qwen_model.generate(**inputs, **GREEDY, keep_ratio=0.5, pruning_method="uniform")
    uncached = qwen_model.generate(**inputs, **GREEDY, keep_ratio=0.5, pruning_method="uniform", use_cache=False)
    assert_same_tokens(uncached, cached)


def test_the_learned_policy_reads_images_of_its_grid(qwen_model):
    inputs = qwen_inputs([[3, (8, 8), 4], [2, (8, 8), 6]])  # 4x4 merged tokens: the policy's grid
    output = qwen_model(**inputs, keep_ratio=0.25)
    assert output.num_visual_tokens_kept == 4
    with pytest.raises(ValueError, match=r"reads images of a 4x4 visual-token grid.*training-free"):
        qwen_model(**qwen_inputs(MIXED), keep_ratio=0.25)


def test_cls_attention_is_refused_and_vision_attention_reads_the_full_attention_block(qwen_model):
    inputs = qwen_inputs(MIXED)
    with pytest.raises(ValueError, match=r"'cls_attention'.*qwen2_5_vl has none: use 'vision_attention'"):
        qwen_model(**inputs, keep_ratio=0.5, pruning_method="cls_attention")
    # The score of a token is the attention its 2x2 patches receive in the full-attention block, averaged, in raster
    # order: recomputed here from the weights of the tower's own eager attention.
    base, tower = qwen_model.base, qwen_model.base.model.visual
    visual = qwen_model.encode_images(
        keep_vision_layer_input=True, pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"]
    )
    scores = qwen_model.family.vision_attention_scores(base, visual)
    weights = []

    def recording_eager(module, *args, **kwargs):
        output, attention = eager_attention_forward(module, *args, **kwargs)
        weights.append(attention)
        return output, attention

    AttentionInterface.register("recording_eager", recording_eager)
    tower.config._attn_implementation = "recording_eager"
    try:
        with torch.no_grad():
            tower(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    finally:
        tower.config._attn_implementation = "sdpa"
    full_block = weights[-len(visual) :]  # block 0 attends within each window, block 1 (full attention) per image
    received = torch.cat([w[0].mean(0).mean(0) for w in full_block]).view(-1, MERGE**2).mean(-1)
    window_index, _ = get_vision_window_index(inputs["image_grid_thw"], MERGE, tower.window_size, tower.patch_size)
    expected = received[torch.argsort(window_index)]
    torch.testing.assert_close(scores[visual.valid], expected)
    assert scores.shape == (4, 16) and (scores[1:, 6:] == 0).all()


REMOTE_CODE = """
import json, sys
sys.modules["modeling_tprl"] = None  # our package must not be importable here
import torch
from transformers import AutoModelForImageTextToText
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], trust_remote_code=True)
assert model.__class__.__module__.startswith("transformers_modules"), model.__class__.__module__
out = model.generate(**torch.load(sys.argv[2]), max_new_tokens=5, do_sample=False, keep_ratio=0.25)
print(json.dumps(out.tolist()))
"""


def test_a_pruner_only_checkpoint_of_a_qwen_base_loads_with_the_auto_class(
    qwen_model, qwen_base, qwen_processor, tmp_path
):
    qwen_base.save_pretrained(tmp_path / "base")
    qwen_processor.save_pretrained(tmp_path / "base")
    model = TPRLForConditionalGeneration.from_base(str(tmp_path / "base"), policy_hidden_size=32, visual_grid=[4, 4])
    model.pruner.load_state_dict(qwen_model.pruner.state_dict())
    model.save_pretrained(tmp_path / "tprl")
    assert sorted(path.name for path in (tmp_path / "tprl").glob("*.safetensors")) == ["model.safetensors"]
    # The base's processor went with the checkpoint; without torchvision it loads in its image-only form.
    processor = load_processor(tmp_path / "tprl")
    image = Image.fromarray(np.zeros((32, 48, 3), np.uint8))
    expected_inputs = qwen_processor(images=image, text="user : <|vision_start|><|image_pad|><|vision_end|>")
    loaded_inputs = processor(images=image, text="user : <|vision_start|><|image_pad|><|vision_end|>")
    assert all(np.array_equal(loaded_inputs[key], value) for key, value in expected_inputs.items())
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "tprl", trust_remote_code=True)
    assert type(loaded.base) is Qwen2_5_VLForConditionalGeneration and loaded.config.visual_grid == [4, 4]
    inputs = qwen_inputs([[3, (8, 8), 4], [5, (8, 8), 1]])
    expected = qwen_model.generate(**inputs, **GREEDY, keep_ratio=0.25)
    assert_same_tokens(loaded.generate(**inputs, **GREEDY, keep_ratio=0.25), expected)
    # In a fresh process that cannot import this package: the checkpoint's own code.
    torch.save(inputs, tmp_path / "inputs.pt")
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE, str(tmp_path / "tprl"), str(tmp_path / "inputs.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert torch.equal(torch.tensor(json.loads(result.stdout.strip().splitlines()[-1])), expected)


def test_generation_continues_from_a_pruned_cache_as_in_one_call(qwen_model):
    inputs = qwen_inputs(MIXED)
    options = {"keep_ratio": 0.5, "pruning_method": "uniform", "do_sample": False, "return_dict_in_generate": True}
    whole = qwen_model.generate(**inputs, **options, max_new_tokens=4, output_scores=True)
    first = qwen_model.generate(**inputs, **options, max_new_tokens=3)
    rest = qwen_model.generate(
        input_ids=first.sequences,
        attention_mask=torch.nn.functional.pad(inputs["attention_mask"], (0, 3), value=1),
        mm_token_type_ids=torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, 3)),
        past_key_values=first.past_key_values,
        **options,
        max_new_tokens=1,
        output_scores=True,
    )
    assert_same_tokens(rest.sequences, whole.sequences)
    torch.testing.assert_close(rest.scores[0], whole.scores[3])


def test_pipeline_with_chat_messages_of_images_of_different_sizes(qwen_model, qwen_base, qwen_processor):
    rng = np.random.default_rng(0)
    messages = [
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8))},
                    {"type": "text", "text": question},
                ],
            }
        ]
        for (height, width), question in [((32, 32), "what is shown"), ((48, 32), "how many red"), ((32, 40), "a")]
    ]
    options = {"return_full_text": False}
    pruning = {"keep_ratio": 0.5, "pruning_method": "uniform", "max_new_tokens": 3}
    pruned = pipeline("image-text-to-text", model=qwen_model, processor=qwen_processor, batch_size=2)
    alone = [pruned(text=message, generate_kwargs=pruning, **options)[0]["generated_text"] for message in messages]
    batched = pruned(text=messages, generate_kwargs=pruning, **options)
    assert [out[0]["generated_text"] for out in batched] == alone
    inputs = qwen_processor.apply_chat_template(
        messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    direct = qwen_model.generate(**inputs, do_sample=False, **pruning)
    assert alone[0].strip() == qwen_processor.decode(
        direct[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    full = pipeline("image-text-to-text", model=qwen_model, processor=qwen_processor, batch_size=2)
    base = pipeline("image-text-to-text", model=qwen_base, processor=qwen_processor, batch_size=2)
    assert [
        out[0]["generated_text"] for out in full(text=messages, generate_kwargs={"keep_ratio": 1.0}, **options)
    ] == [out[0]["generated_text"] for out in base(text=messages, **options)]


@pytest.fixture(scope="module")
def qwen2_vl_base():
    """Qwen2-VL: the same tokens and positions as Qwen2.5-VL, full attention in every vision block."""
    config = tiny_qwen_config().to_dict()
    vision = {"depth": 2, "embed_dim": 32, "hidden_size": 32, "mlp_ratio": 2, "num_heads": 4, "in_channels": 3}
    vision |= {"patch_size": PATCH, "spatial_merge_size": MERGE, "temporal_patch_size": TEMPORAL}
    config = Qwen2VLConfig(**{**config, "vision_config": vision, "model_type": "qwen2_vl"})
    set_seed(0)
    base = Qwen2VLForConditionalGeneration(config).eval()
    base.generation_config.pad_token_id, base.generation_config.eos_token_id = PAD, None
    return base


def test_qwen2_vl_pruning_off_gives_the_bases_tokens_and_a_batch_answers_as_each_row_alone(qwen2_vl_base):
    model = TPRLForConditionalGeneration.from_base(qwen2_vl_base, policy_hidden_size=32, visual_grid=[4, 4]).eval()
    inputs = qwen_inputs(MIXED)
    assert_same_tokens(model.generate(**inputs, **GREEDY, keep_ratio=1.0), qwen2_vl_base.generate(**inputs, **GREEDY))
    pruning = {"keep_ratio": 0.5, "pruning_method": "vision_attention"}
    batch = model.generate(**inputs, **GREEDY, **pruning)
    for row in range(len(MIXED)):
        alone = model.generate(**unpad(inputs, row, MIXED), **GREEDY, **pruning)
        assert_same_tokens(batch[row : row + 1, -GREEDY["max_new_tokens"] :], alone[:, -GREEDY["max_new_tokens"] :])


def test_tprl_train_runs_every_stage_on_a_qwen2_5_vl_base(digit_world_qwen_dir, tmp_path):
    from tprl_train.train_pruner import main

    main(
        [
            *["--config", "train/configs/digit_world.yaml", "--base_model_name_or_path", digit_world_qwen_dir],
            *["--visual_grid", "12", "12", "--output_dir", str(tmp_path), "--train_size", "32"],
            *["--autoencoder_steps", "2", "--num_demonstrations", "8", "--imitation_steps", "2", "--max_steps", "4"],
            *["--num_generations", "2", "--per_device_train_batch_size", "4", "--save_steps", "4"],
            *["--budget_questions", "16", "--budget_steps", "2", "--eval_size", "4", "--disable_tqdm", "true"],
            *["--adaptive_eval_targets", "0.1"],
        ]
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    methods = [row["method"] for row in results["digit_world_dense"]["rows"]]
    # No [CLS] token: the vision tower's score is the attention tokens receive. The ablation of the kept tokens'
    # positions is reported at every budget.
    assert "vision_attention" in methods and "cls_attention" not in methods
    assert methods.count("tprl (consecutive positions)") == 3 and methods.count("tprl (imitation only)") == 3
    assert "| tprl (consecutive positions) | 16 |" in (tmp_path / "eval" / "report.md").read_text()
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "budget" / "final")
    assert type(model.base) is Qwen2_5_VLForConditionalGeneration and model.config.visual_grid == [12, 12]
    processor = load_processor(tmp_path / "budget" / "final")
    image = Image.fromarray(np.zeros((96, 96, 3), np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what color is the 7"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    assert model(**inputs, keep_ratio=1 / 9).num_visual_tokens_kept == 16


def test_the_dry_run_runs_every_stage_on_a_qwen2_5_vl_base_and_projects_it(digit_world_qwen_dir, tmp_path, capsys):
    from tprl_train.train_pruner import main

    recipe = ["--config", "train/configs/qwen2.5-vl-7b.yaml", "--base_model_name_or_path", digit_world_qwen_dir]
    main([*recipe, "--visual_grid", "6", "6", "--dry_run", "--use_cpu", "true", "--output_dir", str(tmp_path)])
    dry = tmp_path / "dry_run"
    processor = load_processor(dry / "base")
    image = Image.fromarray(np.zeros((96, 96, 3), np.uint8))  # resized to 48x48: 6x6 merged tokens of 2x2 patches
    assert processor.image_processor(image)["image_grid_thw"].tolist() == [[1, 12, 12]]
    rows = {row["stage"]: row for row in json.loads((dry / "dry_run.json").read_text())}
    assert set(rows) == {"autoencoder", "demonstrations", "imitation", "ppo"}
    assert all(row["dry_seconds"] > 0 and row["projected_gpu_hours"] > 0 for row in rows.values())
    assert "Projected GPU time of the whole run" in capsys.readouterr().out


def test_tprl_eval_runs_the_benchmarks_on_a_qwen2_5_vl_base(digit_world_qwen_dir, tmp_path, monkeypatch):
    import datasets
    from lmms_fixtures import write_fixture

    from tprl_eval.cli import EvalArguments, run

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    paths = {name: write_fixture(tmp_path, name) for name in ("gqa", "pope")}
    args = EvalArguments(
        model=digit_world_qwen_dir,
        benchmarks="gqa,pope",
        dataset_paths=",".join(f"{name}={path}" for name, path in paths.items()),
        methods="full,uniform,vision_attention,fastv",
        keep_ratios="0.3333",
        num_examples=4,
        max_new_tokens=2,
        batch_size=2,
        output_dir=str(tmp_path / "eval"),
    )
    results = run(args)
    methods = [row["method"] for row in results["benchmarks"]["gqa"]["rows"]]
    assert methods == ["full", "uniform", "vision_attention", "fastv"]
    assert "| vision_attention |" in (tmp_path / "eval" / "results.md").read_text()


def test_the_model_card_of_a_qwen_checkpoint_names_its_family(qwen_model, tmp_path):
    import copy

    from huggingface_hub import ModelCard

    from tprl_hub_cards.model_card import build_model_card

    config = copy.deepcopy(qwen_model.config)
    config.base_model_name_or_path = "Qwen/Qwen2.5-VL-3B-Instruct"
    build_model_card(config, "tester/tprl-qwen").save(tmp_path / "README.md")
    card = ModelCard.load(tmp_path / "README.md")
    assert "qwen2_5_vl" in card.data.tags and card.data.base_model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert "LLaVA" not in card.text.split("## Usage")[0]


def test_the_consecutive_positions_ablation_gives_the_lm_consecutive_positions(digit_world_qwen_dir):
    from tprl_digit_world.batching import DigitWorldCollator
    from tprl_digit_world.evaluation import fixed_examples
    from tprl_eval.digit_world_eval import consecutive_position_hits

    model = TPRLForConditionalGeneration.from_base(digit_world_qwen_dir, visual_grid=[12, 12]).eval()
    processor = load_processor(digit_world_qwen_dir)
    examples = fixed_examples("test", 3)
    inputs = DigitWorldCollator(processor)(examples)
    received = []
    hook = model.base.model.language_model.register_forward_pre_hook(
        lambda module, args, kwargs: received.append((kwargs["position_ids"], kwargs["attention_mask"])),
        with_kwargs=True,
    )
    with torch.no_grad():
        features = model.visual_tokens(**model.image_inputs(inputs))
        own = model(**inputs, image_features=features, num_kept_tokens=16).kept_visual_indices
        hits, kept = consecutive_position_hits(model, processor, examples, inputs, features, 16)
    hook.remove()
    (own_positions, _), (positions, mask) = received
    assert torch.equal(kept, own) and len(hits) == 3  # the policy's own selection
    consecutive = (mask.cumsum(-1) - 1).clamp(min=0)
    assert all(torch.equal(positions[k], consecutive) for k in range(4))
    assert not torch.equal(own_positions[1:], consecutive.expand(3, -1, -1))  # the base's own: 3-D


def test_tprl_eval_keeps_budgets_of_the_canvas_on_a_qwen_base(digit_world_qwen_dir, tmp_path):
    from tprl_eval.cli import EvalArguments, run

    # A base's fresh pruner is built for Qwen's default 16x16 grid; the canvases give 12x12 tokens.
    args = EvalArguments(
        model=digit_world_qwen_dir,
        benchmarks="digit_world",
        methods="full,vision_attention,uniform",
        keep_ratios="0.1111",
        num_examples=4,
        output_dir=str(tmp_path),
    )
    rows = {row["method"]: row for row in run(args)["rows"]}
    assert rows["full"]["kept_tokens"] == 144 and rows["vision_attention"]["kept_tokens"] == 16
    assert rows["uniform"]["keep_ratio"] == pytest.approx(1 / 9, abs=1e-3)
