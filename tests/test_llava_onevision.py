"""TPRL on LLaVA-OneVision: LLaVA-NeXT's packing with SigLIP (no [CLS]), downsized tile grids (anyres_max), and the
images of a multi-image prompt left untiled."""

import pytest
import torch
from transformers import LlavaOnevisionForConditionalGeneration, set_seed

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.processing_tprl import ImageOnlyLlavaOnevisionProcessor, load_processor
from tests.conftest import assert_same_tokens
from tests.llava_next_fixtures import (
    CROP,
    PATCH,
    base_view_attentions,
    build_llava_onevision_processor,
    prompt,
    random_images,
    tiny_llava_onevision_config,
)


GREEDY = {"max_new_tokens": 4, "do_sample": False}
SHAPES = [(32, 16), (16, 40), (30, 30)]  # (width, height)
QUESTIONS = ["what color is the 7", "is there a 3", "how many are red"]


@pytest.fixture(scope="module", params=["anyres_max_9", "anyres_max_1"], ids=["tiles", "downsized-tiles"])
def setup(request):
    """(processor, base, TPRL model); "anyres_max_1" downsizes every grid of more than ~1.2 base views."""
    processor = build_llava_onevision_processor(request.param)
    set_seed(0)
    base = LlavaOnevisionForConditionalGeneration(tiny_llava_onevision_config(processor)).eval()
    base.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    set_seed(1)
    return processor, base, TPRLForConditionalGeneration.from_base(base, policy_hidden_size=32).eval()


@pytest.fixture(scope="module")
def mixed(setup):
    processor = setup[0]
    return processor(
        images=random_images(SHAPES), text=[prompt(q) for q in QUESTIONS], return_tensors="pt", padding=True
    )


@pytest.fixture(scope="module")
def multi(setup):
    """A prompt with two images (untiled: a base view and a newline each), then one with one image (tiled)."""
    processor = setup[0]
    images = random_images([(40, 16), (16, 16), (30, 30)], seed=1)
    texts = [prompt("is there a 3", 2), prompt("how many are red")]
    return processor(images=[images[:2], images[2:]], text=texts, return_tensors="pt", padding=True)


def test_token_counts_are_the_processors(setup, mixed, multi):
    _, _, model = setup
    for inputs in (mixed, multi):
        per_row = (inputs["input_ids"] == model.config.image_token_id).sum(1)
        counts = model.family.token_counts(model.config.base_config, model.image_inputs(dict(inputs)))
        rows = torch.repeat_interleave(torch.arange(len(per_row)), inputs["batch_num_images"])
        assert torch.equal(torch.zeros_like(per_row).index_add(0, rows, counts), per_row)
    side = CROP // PATCH
    assert counts[:2].tolist() == [side * side + 1] * 2  # the multi-image prompt's images: untiled


def test_pruning_off_gives_the_bases_tokens(setup, mixed, multi):
    _, base, model = setup
    for inputs in (mixed, multi):
        assert_same_tokens(model.generate(**inputs, **GREEDY, keep_ratio=1.0), base.generate(**inputs, **GREEDY))
        assert torch.equal(model(**inputs, keep_ratio=1.0).logits, base(**inputs).logits)
    beams = {"max_new_tokens": 3, "num_beams": 2, "num_return_sequences": 2, "do_sample": False}
    assert_same_tokens(model.generate(**multi, **beams, keep_ratio=1.0), base.generate(**multi, **beams))


@pytest.mark.parametrize("method", ["uniform", "fastv", "vision_attention", "tprl"])
def test_a_batch_answers_as_each_row_alone_with_budgets_over_content_tokens(setup, mixed, method):
    processor, _, model = setup
    output = model(**mixed, keep_ratio=0.25, pruning_method=method)
    content = model.family.content_counts(model.config.base_config, model.image_inputs(dict(mixed)))
    kept = output.kept_visual_indices
    content_mask = model.family.content_mask(model.config.base_config, model.image_inputs(dict(mixed)))
    kept_content = [int(content_mask[i, row[row >= 0]].sum()) for i, row in enumerate(kept)]
    assert kept_content == [round(int(c) / 4) for c in content]
    batch = model.generate(**mixed, **GREEDY, keep_ratio=0.25, pruning_method=method)
    pad = processor.tokenizer.pad_token_id
    for row, question in enumerate(QUESTIONS):
        alone = processor(images=random_images(SHAPES)[row : row + 1], text=[prompt(question)], return_tensors="pt")
        single = model.generate(**alone, **GREEDY, keep_ratio=0.25, pruning_method=method)
        answer = batch[row, mixed["input_ids"].shape[1] :]
        answer = answer[: len(answer) - int((answer.flip(0) == pad).cumprod(0).sum())]  # the pads after its EOS
        assert_same_tokens(answer[None], single[:, alone["input_ids"].shape[1] :])


def test_vision_attention_is_the_attention_each_token_receives_packed_as_the_features(setup, mixed):
    _, base, model = setup
    visual = model.encode_images(keep_vision_layer_input=True, **model.image_inputs(dict(mixed)))
    scores = model.family.vision_attention_scores(base, visual)
    attentions = base_view_attentions(base, mixed["pixel_values"])
    side = CROP // PATCH
    torch.testing.assert_close(scores[:, : side * side], attentions.mean(dim=(1, 2)))  # the base views, unpacked
    content = model.family.content_mask(model.config.base_config, model.image_inputs(dict(mixed)))
    assert (scores[~content] == 0).all() and (scores[content] > 0).all()
    with pytest.raises(ValueError, match="cls_attention"):
        model(**mixed, keep_ratio=0.25, pruning_method="cls_attention")


@pytest.mark.parametrize("method", ["uniform", "tprl"])
def test_multi_image_prompts_prune_each_image_and_beams_keep_its_row(setup, multi, method):
    _, _, model = setup
    output = model(**multi, keep_ratio=0.25, pruning_method=method)
    # 4 of 16 and the image's newline (the learned policy reads an untiled image on the base view's slots alone)
    assert output.num_visual_tokens_kept.tolist()[:2] == [4 + 1, 4 + 1]
    beams = {"max_new_tokens": 3, "num_beams": 2, "num_return_sequences": 2, "do_sample": False}
    assert model.generate(**multi, **beams, keep_ratio=0.25, pruning_method=method).shape[0] == 4


def test_the_processor_loads_without_torchvision(setup, mixed, tmp_path):
    processor, base, _ = setup
    processor.save_pretrained(tmp_path)
    base.config.save_pretrained(tmp_path)  # as a base's directory holds it: it names the family
    loaded = load_processor(tmp_path)
    assert isinstance(loaded, ImageOnlyLlavaOnevisionProcessor) or type(loaded).__name__ == "LlavaOnevisionProcessor"
    again = loaded(
        images=random_images(SHAPES), text=[prompt(q) for q in QUESTIONS], return_tensors="pt", padding=True
    )
    assert all(torch.equal(again[name], mixed[name]) for name in mixed)


def test_the_dry_run_runs_every_stage_of_the_7b_recipe_on_a_llava_onevision_base(setup, tmp_path, capsys):
    """The LLaVA-OneVision-7B recipe's dry run on the tiny OneVision's config: a 2-layer copy with OneVision's image
    processing (its crops, pinpoints and anyres_max), 768x768 fixture images."""
    import json

    from PIL import Image

    from tprl_train.train_pruner import main

    processor, base, _ = setup
    base.save_pretrained(tmp_path / "base")
    recipe = ["--config", "train/configs/llava-onevision-7b.yaml", "--base_model_name_or_path", str(tmp_path / "base")]
    main([*recipe, "--relevance_tokens", "4", "--dry_run", "--use_cpu", "true", "--output_dir", str(tmp_path / "run")])
    dry = tmp_path / "run" / "dry_run"
    dry_processor = load_processor(dry / "base")
    assert dry_processor.vision_aspect_ratio == processor.vision_aspect_ratio
    image = Image.new("RGB", (768, 768))
    crops = [p.image_processor(image, return_tensors="pt")["pixel_values"].shape for p in (dry_processor, processor)]
    assert crops[0] == crops[1]
    rows = {row["stage"]: row for row in json.loads((dry / "dry_run.json").read_text())}
    assert set(rows) == {"autoencoder", "demonstrations", "imitation", "ppo"}
    assert all(row["dry_seconds"] > 0 and row["projected_hours_same_device"] > 0 for row in rows.values())
    assert "Projected GPU time of the whole run" in capsys.readouterr().out
