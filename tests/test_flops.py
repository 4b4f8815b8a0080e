"""Analytic prefill FLOPs against DESIGN's anchors and against FlopCounterMode on the tiny model; tprl-flops."""

import pytest
from transformers import Qwen2_5_VLForConditionalGeneration

from modeling_tprl import TPRLForConditionalGeneration
from tests.qwen_fixtures import tiny_qwen_config
from tprl_eval.flops import (
    FlopsArguments,
    flops_table,
    load_configs,
    measured_prefill_flops,
    prefill_flops,
    visual_only_reduction,
)


@pytest.mark.parametrize(("kept", "reduction"), [(192, 67.3), (128, 78.3), (64, 89.2)])
def test_llava_7b_visual_only_reductions_match_the_anchors(kept, reduction):
    config, _ = load_configs("llava-1.5-7b")
    assert config.image_seq_length == 576
    assert 100 * visual_only_reduction(config, kept) == pytest.approx(reduction, abs=1.0)


def test_llava_7b_full_prefill_reduction_with_64_text_tokens():
    config, tprl_config = load_configs("llava-1.5-7b")
    full = prefill_flops(config, 576, 64, method="full", tprl_config=tprl_config)
    kept = prefill_flops(config, 192, 64, method="tprl", tprl_config=tprl_config)
    assert 100 * (1 - kept.total / full.total) == pytest.approx(57.5, abs=1.0)
    assert kept.selection < 0.01 * full.total  # the pruner costs well under 1% of a full prefill


@pytest.mark.parametrize("method", ["full", "tprl", "random", "fastv", "cls_attention"])
def test_analytic_matches_flop_counter_on_the_tiny_model(base_dir, method):
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=64).eval()
    config = model.base.config
    analytic = prefill_flops(config, 48, 20, method=method, tprl_config=model.config, fastv_layer=2)
    measured = measured_prefill_flops(model, 48, 20, method)
    # Attention is ~20% of the tiny LM's FLOPs: this fails if FlopCounterMode misses CPU SDPA (torch has no formula).
    assert analytic.total == pytest.approx(measured, rel=0.02)


@pytest.mark.parametrize("method", ["full", "tprl", "uniform", "fastv", "vision_attention"])
def test_analytic_matches_flop_counter_on_a_tiny_qwen2_5_vl(method):
    # Window attention in one block, full attention in the other: 48x48 pixels, 12x12 patches, 36 visual tokens.
    model = TPRLForConditionalGeneration.from_base(
        Qwen2_5_VLForConditionalGeneration(tiny_qwen_config()), policy_hidden_size=32, visual_grid=[6, 6]
    ).eval()
    config = model.base.config
    analytic = prefill_flops(config, 12, 20, method=method, tprl_config=model.config, fastv_layer=1, image_size=48)
    model.config.fastv_layer = 1
    measured = measured_prefill_flops(model, 12, 20, method, image_size=48)
    assert analytic.total == pytest.approx(measured, rel=0.02)


def test_qwen2_5_vl_7b_at_1008_pixels_has_1296_visual_tokens_and_cls_attention_is_refused():
    config, tprl_config = load_configs("qwen2.5-vl-7b", image_size=1008)
    assert tprl_config.num_visual_tokens == 1296
    full = prefill_flops(config, 1296, 64, method="full", image_size=1008)
    kept = prefill_flops(config, 144, 64, method="tprl", tprl_config=tprl_config, image_size=1008)
    assert kept.selection < 0.001 * full.total and kept.vision == full.vision
    with pytest.raises(ValueError, match=r"\[CLS\] token; qwen2_5_vl has none"):
        prefill_flops(config, 144, 64, method="cls_attention", image_size=1008)


def test_tprl_flops_prints_the_13b_table(capsys):
    table = flops_table(FlopsArguments(model="llava-1.5-13b", kept="192,64", methods="tprl,fastv"))
    assert "| 576 | full | 0.0% |" in table
    assert table.count("| tprl |") == 2 and table.count("| fastv |") == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"kept": "192,half"}, "comma-separated integers"), ({"methods": "tprl,magic"}, "Unknown method")],
)
def test_bad_flops_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlopsArguments(**kwargs)


def test_budget_out_of_range_and_non_llava_config(tmp_path):
    config, tprl_config = load_configs("llava-1.5-7b")
    with pytest.raises(ValueError, match=r"num_kept must be in \[1, 576\]"):
        prefill_flops(config, 600, 64, tprl_config=tprl_config)
    config.text_config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="needs a llava, llava_next, llava_onevision, qwen2_5_vl or tprl one"):
        load_configs(str(tmp_path))


def test_llava_next_7b_counts_its_crops_content_tokens_and_newlines():
    from tprl_eval.flops import num_crops, num_image_tokens, num_layout_tokens

    config, tprl_config = load_configs("llava-next-7b")
    llava, _ = load_configs("llava-1.5-7b")
    # 672x672: a base view and 2x2 tiles, 576 + 48x48 content tokens, a newline after each of the 48 tile rows
    assert (num_image_tokens(config), num_layout_tokens(config), num_crops(config)) == (2880, 48, 5)
    full = prefill_flops(config, 2880, 64, method="full")
    assert full.vision == 5 * prefill_flops(llava, 576, 64, method="full").vision
    kept = prefill_flops(config, 320, 64, method="cls_attention")
    assert kept.language_model == prefill_flops(llava, 368, 64, method="random").language_model  # 320 + 48 newlines
    # The learned policy: its slots are the base view's 24x24 grid and a 72x72 tile grid, its steps over the tokens.
    assert tprl_config.policy_grids == [(24, 24), (72, 72)]
    learned = prefill_flops(config, 320, 64, method="tprl", tprl_config=tprl_config)
    assert learned.language_model == kept.language_model and 0 < learned.selection < 0.05 * learned.total


@pytest.mark.parametrize(("side", "tokens", "newlines", "crops"), [(768, 3645, 54, 5), (1152, 7290, 81, 10)])
def test_llava_onevision_7b_counts_its_siglip_crops_content_tokens_and_newlines(side, tokens, newlines, crops):
    from tprl_eval.flops import (
        language_model_flops,
        layer_flops,
        linear_flops,
        num_crops,
        num_image_tokens,
        num_layout_tokens,
    )

    config, _ = load_configs("llava-onevision-7b")
    # A base view of 27x27 SigLIP tokens (no [CLS]), then 2x2 or 3x3 tiles of 27x27, a newline after each tile row.
    assert (num_image_tokens(config, side), num_layout_tokens(config, side), num_crops(config, side)) == (
        tokens,
        newlines,
        crops,
    )
    vision = config.vision_config
    tower = linear_flops(729, 3 * 14 * 14, 1152) + 26 * layer_flops(729, 1152, 4304, 16, ffn_matrices=2)
    projector = linear_flops(729, 1152, 3584) + linear_flops(729, 3584, 3584)
    assert vision.num_hidden_layers == 26 and not getattr(vision, "vision_use_head", False)
    full = prefill_flops(config, tokens, 64, method="full", image_size=side)
    assert full.vision == crops * (tower + projector)
    kept = prefill_flops(config, tokens // 9, 64, method="vision_attention", image_size=side)
    assert kept.language_model == language_model_flops(config, tokens // 9 + newlines + 64)  # the newlines kept
    with pytest.raises(ValueError, match="has none"):
        prefill_flops(config, 100, 64, method="cls_attention", image_size=side)
