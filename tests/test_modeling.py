import os
from unittest.mock import patch

import pytest
import torch
from conftest import GREEDY, assert_same_tokens, unpad_row
from transformers import AutoModel, AutoModelForImageTextToText, TrainingArguments

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration, keep_schedule


def test_no_pruning_gives_llava_tokens_single_inputs(tprl_model, random_base, batch):
    for row in range(len(batch["input_ids"])):
        inputs = unpad_row(batch, row)
        expected = random_base.generate(**inputs, **GREEDY)
        assert_same_tokens(tprl_model.generate(**inputs, keep_ratio=1.0, **GREEDY), expected)


def test_no_pruning_gives_llava_tokens_left_padded_batch(tprl_model, random_base, batch):
    expected = random_base.generate(**batch, **GREEDY)
    assert_same_tokens(tprl_model.generate(**batch, keep_ratio=1.0, **GREEDY), expected)
    # The pruning path itself, keeping every token, must match too.
    every_token = torch.arange(tprl_model.num_visual_tokens).expand(len(batch["input_ids"]), -1)
    assert_same_tokens(tprl_model.generate(**batch, kept_visual_indices=every_token, **GREEDY), expected)


def test_no_pruning_forward_matches_llava(tprl_model, random_base, batch):
    expected = random_base(**batch).logits
    torch.testing.assert_close(tprl_model(**batch, keep_ratio=1.0).logits, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("keep_ratio", "kept"), [(1 / 3, 48), (2 / 9, 32), (1 / 9, 16)])
def test_exact_budget_per_image(tprl_model, batch, keep_ratio, kept):
    outputs = tprl_model(**batch, keep_ratio=keep_ratio)
    assert outputs.kept_visual_indices.shape == (3, kept)
    assert outputs.num_visual_tokens_kept == kept
    assert (outputs.kept_visual_indices.diff(dim=1) > 0).all(), "kept tokens stay in their original order"
    text_tokens = (batch["input_ids"] != tprl_model.base.config.image_token_id) & batch["attention_mask"].bool()
    assert torch.equal(outputs.attention_mask.sum(1), text_tokens.sum(1) + kept)
    indices = tprl_model.kept_visual_indices(
        batch["input_ids"], batch["pixel_values"], batch["attention_mask"], keep_ratio
    )
    assert torch.equal(indices, outputs.kept_visual_indices)


def test_pruned_generate_returns_prompt_then_new_tokens(tprl_model, batch):
    output = tprl_model.generate(**batch, **GREEDY)
    assert output.shape == (3, batch["input_ids"].shape[1] + GREEDY["max_new_tokens"])
    assert torch.equal(output[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_pruned_batch_equals_each_input_alone(tprl_model, batch):
    together = tprl_model.generate(**batch, **GREEDY)
    new = together[:, batch["input_ids"].shape[1] :]
    for row in range(len(new)):
        inputs = unpad_row(batch, row)
        alone = tprl_model.generate(**inputs, **GREEDY)
        assert_same_tokens(alone[:, inputs["input_ids"].shape[1] :], new[row : row + 1])


@pytest.mark.parametrize(
    "selection", [{"num_kept_tokens": 16}, {"num_kept_tokens": 16, "pruning_method": "cls_attention"}]
)
def test_given_image_features_skip_the_vision_tower_with_the_same_outputs(tprl_model, batch, selection):
    image_features = tprl_model.visual_tokens(batch["pixel_values"])
    with patch.object(tprl_model.base.model, "get_image_features", side_effect=AssertionError("vision tower ran")):
        tprl_model(**batch, image_features=image_features, num_kept_tokens=16)  # the policy reads no pixels
    alone = tprl_model(**batch, **selection)
    given = tprl_model(**batch, image_features=image_features, **selection)
    assert torch.equal(given.logits, alone.logits)
    assert torch.equal(given.kept_visual_indices, alone.kept_visual_indices)


def test_pruning_changes_what_the_lm_sees(tprl_model, batch):
    pruned = tprl_model(**batch, num_kept_tokens=16)
    full = tprl_model(**batch, keep_ratio=1.0)
    assert pruned.logits.shape[1] == full.logits.shape[1] - (144 - 16)
    assert not torch.allclose(pruned.logits[:, -1], full.logits[:, -1])


def test_multiple_images_per_prompt_are_pruned_per_image(tprl_model, processor, examples):
    question = "USER : <image> <image> what color is the 3 ASSISTANT :"
    from PIL import Image

    images = [Image.fromarray(examples[0]["image"]), Image.fromarray(examples[1]["image"])]
    inputs = processor(images=images, text=question, return_tensors="pt")
    outputs = tprl_model(**inputs, num_kept_tokens=20)
    assert outputs.kept_visual_indices.shape == (2, 20)
    assert outputs.attention_mask.shape[1] == inputs["input_ids"].shape[1] - 2 * (144 - 20)


def test_the_trainers_freeze_the_backbone(base_dir, tmp_path):
    from tprl_train.stage_trainer import PrunerStageTrainer

    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    assert all(p.requires_grad for p in model.parameters())  # as any transformers model: nothing frozen by loading
    PrunerStageTrainer(model, TrainingArguments(str(tmp_path), report_to=[]), trained_module="pruner.policy")
    assert not any(p.requires_grad for p in model.base.parameters())
    assert all(p.requires_grad for p in model.pruner.policy.parameters())


def test_initialisation_pruner_linears_from_pytorch_embeddings_from_transformers_base_untouched(
    tprl_model, random_base
):
    policy, autoencoder = tprl_model.pruner.policy, tprl_model.pruner.autoencoder
    for embedding in (policy.visual_position, policy.type_embedding, policy.step_embedding):
        assert 0.015 < embedding.weight.std() < 0.025  # transformers' N(0, 0.02), not PyTorch's N(0, 1)
    for linear in (policy.visual_in, autoencoder.encoder[1]):
        bound = 1 / linear.in_features**0.5  # PyTorch's fan-in uniform, not N(0, 0.02)
        assert linear.weight.abs().max() <= bound and linear.weight.std() > max(bound / 3, 0.03)
    base = dict(tprl_model.base.named_parameters())
    assert all(torch.equal(base[name], weight) for name, weight in random_base.named_parameters())


def test_policy_reads_each_token_with_its_grid_neighbours(tprl_model):
    """A token's keep logit moves when a grid neighbour's state changes, even a dropped one, and not otherwise."""
    policy, side = tprl_model.pruner.policy, tprl_model.config.visual_grid_side
    latents = torch.randn(1, side * side, tprl_model.config.autoencoder_latent_size)
    question, question_mask = torch.randn(1, 5, tprl_model.config.base_text_hidden_size), torch.ones(1, 5, dtype=bool)
    kept = torch.ones(1, side * side, dtype=torch.bool)
    kept[0, 2 * side + 4] = False  # the right-hand neighbour of the token at row 2, column 3 is already dropped
    changed = latents.clone()
    changed[0, 2 * side + 4] += 1.0
    with torch.no_grad():
        logits, _ = policy.logits_and_values(policy.embed_inputs(latents, question, question_mask), kept, step=1)
        moved, _ = policy.logits_and_values(policy.embed_inputs(changed, question, question_mask), kept, step=1)
        alone = TPRLConfig(base_config=tprl_model.config.base_config, policy_hidden_size=64, policy_kernel_size=1)
        single = type(policy)(alone).eval()
        single_logits, _ = single.logits_and_values(
            single.embed_inputs(latents, question, question_mask), kept, step=1
        )
        single_moved, _ = single.logits_and_values(single.embed_inputs(changed, question, question_mask), kept, step=1)
    assert (moved[0, 2 * side + 3] - logits[0, 2 * side + 3]).abs() > 1e-4
    # With kernel 1 a dropped token's state reaches the others only through attention, where it is masked out.
    torch.testing.assert_close(single_moved, single_logits, rtol=0, atol=0)


def test_keep_schedule_reaches_budget():
    assert keep_schedule(576, 192, 3) == [399, 277, 192]  # 576 * (1/3) ** (1/3) = 399.4
    assert keep_schedule(144, 16, 1) == [16]
    for kept in range(1, 145):
        counts = keep_schedule(144, kept, 3)
        assert counts[-1] == kept and counts == sorted(counts, reverse=True) and counts[0] <= 144


def test_policy_reading_only_kept_tokens_equals_masking_the_dropped_ones(tprl_model):
    # Rows keeping as many tokens take the compact path; a batch with unequal counts takes the masked one.
    policy, config = tprl_model.pruner.policy, tprl_model.config
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 144, config.autoencoder_latent_size, generator=generator)
    question = torch.randn(2, 5, config.base_text_hidden_size, generator=generator)
    question_mask = torch.tensor([[True] * 5, [False, True, True, True, True]])
    kept = torch.zeros(2, 144, dtype=torch.bool)
    kept[0, torch.randperm(144, generator=generator)[:33]] = True
    kept[1, torch.randperm(144, generator=generator)[:69]] = True
    with torch.no_grad():
        inputs = policy.embed_inputs(latents, question, question_mask)
        visual_in, question_in = inputs.visual, inputs.question
        compact_logits, compact_value = policy(visual_in[:1], question_in[:1], kept[:1], question_mask[:1], 1)
        masked_logits, masked_value = policy(visual_in, question_in, kept, question_mask, 1)
    assert torch.equal(compact_logits[0].isfinite(), kept[0])
    torch.testing.assert_close(compact_logits[0, kept[0]], masked_logits[0, kept[0]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compact_value[0], masked_value[0], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def saved(tprl_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("tprl")
    tprl_model.save_pretrained(root / "pruner_only")
    tprl_model.save_pretrained(root / "full", full_checkpoint=True)
    return root


def test_pruner_only_checkpoint_is_small_and_complete(saved, base_dir):
    files = set(os.listdir(saved / "pruner_only"))
    assert {
        "config.json",
        "model.safetensors",
        "modeling_tprl.py",
        "configuration_tprl.py",
        "pruning_tprl.py",
    } <= files
    assert {"tokenizer.json", "processor_config.json"} <= files
    size = os.path.getsize(saved / "pruner_only" / "model.safetensors")
    assert size < os.path.getsize(os.path.join(base_dir, "model.safetensors")) / 3
    assert size < os.path.getsize(saved / "full" / "model.safetensors") / 3
    config = TPRLConfig.from_pretrained(saved / "pruner_only")
    assert config.pruner_only and config.base_model_name_or_path == base_dir
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForImageTextToText"}


@pytest.mark.parametrize("kind", ["pruner_only", "full"])
@pytest.mark.parametrize("loader", [TPRLForConditionalGeneration, AutoModel, AutoModelForImageTextToText])
def test_save_load_gives_identical_tokens(tprl_model, saved, batch, kind, loader):
    expected = tprl_model.generate(**batch, **GREEDY)
    loaded = loader.from_pretrained(saved / kind)
    assert isinstance(loaded, TPRLForConditionalGeneration)
    assert_same_tokens(loaded.generate(**batch, **GREEDY), expected)


def test_dtype_reaches_the_base(saved):
    loaded = AutoModelForImageTextToText.from_pretrained(saved / "pruner_only", dtype=torch.bfloat16)
    assert loaded.base.dtype == torch.bfloat16
    assert next(loaded.pruner.parameters()).dtype == torch.bfloat16


def test_base_model_override(saved, base_dir, tmp_path):
    moved = tmp_path / "moved_base"
    os.symlink(base_dir, moved)
    loaded = TPRLForConditionalGeneration.from_pretrained(saved / "pruner_only", base_model_name_or_path=str(moved))
    assert loaded.config.base_model_name_or_path == str(moved)
