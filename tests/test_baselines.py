"""The training-free baselines score tokens with the same attention the models compute themselves."""

import copy

import pytest
import torch

from modeling_tprl import ALL_PRUNING_METHODS, TPRLForConditionalGeneration
from modeling_tprl.pruning_methods import cls_attention_scores, fastv_scores


@pytest.fixture(scope="module")
def eager_base(random_base):
    base = copy.deepcopy(random_base)
    base.set_attn_implementation("eager")
    return base


@pytest.fixture(scope="module")
def eager_model(eager_base):
    return TPRLForConditionalGeneration.from_base(eager_base, policy_hidden_size=32, fastv_layer=1)


def test_cls_attention_is_the_vision_layers_own_attention(eager_base, eager_model, batch):
    tower = eager_base.model.vision_tower
    attentions = tower(batch["pixel_values"], output_attentions=True).attentions
    expected = attentions[-1][:, :, 0, 1:].mean(1)  # vision_feature_layer -1: the last layer's attention
    torch.testing.assert_close(cls_attention_scores(eager_model, batch["pixel_values"]), expected)


def test_cls_attention_reads_the_one_vision_pass_of_the_forward(eager_model, batch):
    """As VisionZip: the [CLS] attention comes from the pass that makes the image features, not from a second one."""
    calls = []
    tower = eager_model.base.model.vision_tower
    handle = tower.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        with torch.no_grad():
            outputs = eager_model(**batch, pruning_method="cls_attention", num_kept_tokens=5)
            indices = eager_model.kept_visual_indices(**batch, pruning_method="cls_attention", num_kept_tokens=5)
    finally:
        handle.remove()
    assert len(calls) == 2  # one vision pass per call
    expected = cls_attention_scores(eager_model, batch["pixel_values"]).topk(5, dim=1).indices.sort(dim=1).values
    assert torch.equal(outputs.kept_visual_indices, expected) and torch.equal(indices, expected)
    assert eager_model.pop_vision_layer_input(batch["pixel_values"]) is None  # read once, then released


def test_fastv_is_the_last_tokens_attention_in_the_lm_layer(eager_base, eager_model, batch):
    image_mask = batch["input_ids"] == eager_base.config.image_token_id
    embeds = eager_base.get_input_embeddings()(batch["input_ids"])
    features = eager_base.model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output
    embeds = embeds.masked_scatter(image_mask.unsqueeze(-1), torch.stack(features))
    language_model = eager_base.model.language_model
    position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    attentions = language_model(
        inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=position_ids, output_attentions=True
    ).attentions
    expected = attentions[1][:, :, -1].mean(1)[image_mask].view(len(batch["input_ids"]), -1)
    scores = fastv_scores(eager_model, torch.stack(features), batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("method", ["cls_attention", "fastv"])
def test_baselines_keep_the_budget_and_batch_like_single_inputs(tprl_model, batch, method):
    from conftest import unpad_row

    kept = tprl_model.kept_visual_indices(**batch, num_kept_tokens=16, pruning_method=method)
    assert kept.shape == (len(batch["input_ids"]), 16)
    for row in range(len(kept)):
        alone = tprl_model.kept_visual_indices(**unpad_row(batch, row), num_kept_tokens=16, pruning_method=method)
        assert torch.equal(alone[0], kept[row])
    assert tprl_model.config.pruning_method == "tprl"  # a per-call method leaves the config as it is


def test_a_registered_pruning_method_is_selected_per_call_and_the_config_default_stays(tprl_model, batch):
    def first_tokens(model, visual, input_ids, attention_mask, num_kept):
        return visual.top_k(-torch.arange(visual.features.shape[1]).expand(len(visual), -1), num_kept)

    ALL_PRUNING_METHODS.register("first_tokens", first_tokens)
    try:
        output = tprl_model(**batch, num_kept_tokens=5, pruning_method="first_tokens")
        assert output.kept_visual_indices.tolist() == [[0, 1, 2, 3, 4]] * len(batch["input_ids"])
        default = tprl_model(**batch, num_kept_tokens=5).kept_visual_indices  # the config's method: the policy
        assert not torch.equal(default, output.kept_visual_indices)
    finally:
        del ALL_PRUNING_METHODS._global_mapping["first_tokens"]
    with pytest.raises(ValueError, match="Unknown pruning_method 'first_tokens'"):
        tprl_model(**batch, num_kept_tokens=5, pruning_method="first_tokens")
