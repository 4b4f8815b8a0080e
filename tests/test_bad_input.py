"""Each bad input gets a clear error that names the problem."""

import copy

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import CLIPVisionConfig, CLIPVisionModel, LlavaForConditionalGeneration

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration


# A config's bad value fails as transformers' @strict configs fail: a huggingface_hub StrictDataclassError naming the
# field; a bad per-call value as a ValueError.
CONFIG_ERRORS = (ValueError, StrictDataclassError)


@pytest.mark.parametrize("keep_ratio", [0, -0.5, 1.5])
def test_keep_ratio_outside_unit_interval(tprl_model, batch, keep_ratio):
    with pytest.raises(ValueError, match=r"keep_ratio must be a number in \(0, 1\]"):
        tprl_model.generate(**batch, keep_ratio=keep_ratio)
    with pytest.raises(CONFIG_ERRORS, match=r"keep_ratio must be a number in \(0, 1\]"):
        TPRLConfig(base_config=tprl_model.config.base_config, keep_ratio=keep_ratio)


def test_a_budget_is_capped_by_each_images_tokens_and_must_be_positive(tprl_model, batch):
    capped = tprl_model(**batch, num_kept_tokens=145)  # keeps every token: nothing is pruned
    assert capped.kept_visual_indices is None and capped.num_visual_tokens_kept == 144
    with pytest.raises(ValueError, match=r"num_kept_tokens must be a whole number >= 1"):
        tprl_model(**batch, num_kept_tokens=0)
    with pytest.raises(ValueError, match="either keep_ratio or num_kept_tokens"):
        tprl_model(**batch, keep_ratio=0.5, num_kept_tokens=10)


def test_images_not_matching_placeholders(tprl_model, batch):
    with pytest.raises(ValueError, match=r"got 2 image\(s\).*Give one image per image placeholder \(<image>"):
        tprl_model.generate(**{**batch, "pixel_values": batch["pixel_values"][:2]})
    truncated = {k: v[:, 5:] if k != "pixel_values" else v for k, v in batch.items()}
    with pytest.raises(ValueError, match=r"giving \[144, 144, 144\] visual tokens"):
        tprl_model(**truncated, keep_ratio=0.5)


def test_imposed_indices_are_checked(tprl_model, batch):
    with pytest.raises(ValueError, match="shape"):
        tprl_model(**batch, kept_visual_indices=torch.arange(10).expand(2, -1))
    with pytest.raises(ValueError, match=r"\[0, 144\)"):
        tprl_model(**batch, kept_visual_indices=torch.arange(140, 150).expand(3, -1))
    with pytest.raises(ValueError, match="repeats"):
        tprl_model(**batch, kept_visual_indices=torch.zeros(3, 4, dtype=torch.long))


def test_base_of_an_unsupported_family(tmp_path):
    model = CLIPVisionModel(
        CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    )
    model.save_pretrained(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"model_type 'clip_vision_model'.*supports \('llava', 'llava_next', 'llava_onevision', 'qwen2_vl'",
    ):
        TPRLForConditionalGeneration.from_base(str(tmp_path))
    with pytest.raises(
        TypeError,
        match="must be a model of a supported family \\(LlavaForConditionalGeneration, LlavaNextForConditionalGeneration, LlavaOnevisionForConditionalGeneration, Qwen2VL",
    ):
        TPRLForConditionalGeneration.from_base(model)


def test_missing_base_model(tprl_model, tmp_path):
    with pytest.raises(OSError, match="Cannot load the base model"):
        TPRLForConditionalGeneration.from_base(str(tmp_path / "nowhere"), base_model_kwargs={"local_files_only": True})
    tprl_model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(OSError, match="base_model_name_or_path="):
        TPRLForConditionalGeneration.from_pretrained(tmp_path / "ckpt", base_model_name_or_path=str(tmp_path / "gone"))


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(OSError, match="Cannot load a TPRL checkpoint from .*nowhere.*config.json"):
        TPRLForConditionalGeneration.from_pretrained(str(tmp_path / "outputs" / "nowhere"))
    with pytest.raises(OSError, match="Cannot load a TPRL checkpoint"):
        TPRLForConditionalGeneration.from_pretrained(tmp_path)  # exists, but holds no config.json


def test_base_of_another_width_is_refused(tprl_model, random_base, tmp_path):
    config = copy.deepcopy(random_base.config)
    config.text_config.hidden_size = 2 * config.text_config.hidden_size
    LlavaForConditionalGeneration(config).save_pretrained(tmp_path / "wider")
    tprl_model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="LM hidden size 128 .* has 256 and 144: load the pruner on the base"):
        TPRLForConditionalGeneration.from_pretrained(
            tmp_path / "ckpt", base_model_name_or_path=str(tmp_path / "wider")
        )


def test_missing_or_corrupt_pruner_file(tprl_model, tmp_path):
    tprl_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(OSError, match="corrupt or not a safetensors file"):
        TPRLForConditionalGeneration.from_pretrained(tmp_path)
    weights.unlink()
    with pytest.raises(OSError, match="No pruner weights"):
        TPRLForConditionalGeneration.from_pretrained(tmp_path)


def test_unknown_pruning_method(tprl_model):
    with pytest.raises(CONFIG_ERRORS, match=r"Unknown pruning_method 'magic'; choose one of \('tprl'"):
        TPRLConfig(base_config=tprl_model.config.base_config, pruning_method="magic")


@pytest.mark.parametrize(
    ("field", "value"),
    [("keep_ratio", "0.5"), ("num_pruning_steps", 2.5), ("num_kept_tokens", True), ("pruning_method", 3)],
)
def test_config_field_of_wrong_type(tprl_model, field, value):
    with pytest.raises(StrictDataclassError, match=f"Validation error for field '{field}':\n *TypeError"):
        TPRLConfig(base_config=tprl_model.config.base_config, **{field: value})


def test_policy_kernel_size_must_be_odd_and_fit_the_visual_grid(tprl_model):
    base_config = tprl_model.config.base_config
    with pytest.raises(CONFIG_ERRORS, match="field 'policy_kernel_size':\n.*must be an odd number >= 1, got 2"):
        TPRLConfig(base_config=base_config, policy_kernel_size=2)
    with_cls = {
        **base_config.to_dict(),
        "vision_feature_select_strategy": "full",
    }  # 144 patches + [CLS]: no square grid
    with pytest.raises(CONFIG_ERRORS, match="needs the visual tokens on a square grid, but this base gives 145"):
        TPRLConfig(base_config=with_cls, policy_kernel_size=3)
    assert TPRLConfig(base_config=with_cls, policy_kernel_size=1).num_visual_tokens == 145
