"""The training-free baselines score tokens with the same attention the models compute themselves."""

import copy

import pytest
import torch

from modeling_tprl.pruning_tprl import cls_attention_scores, fastv_scores


@pytest.fixture(scope="module")
def eager_base(random_base):
    base = copy.deepcopy(random_base)
    base.set_attn_implementation("eager")
    return base


def test_cls_attention_is_the_vision_layers_own_attention(eager_base, batch):
    tower = eager_base.model.vision_tower
    attentions = tower(batch["pixel_values"], output_attentions=True).attentions
    expected = attentions[-1][:, :, 0, 1:].mean(1)  # vision_feature_layer -1: the last layer's attention
    torch.testing.assert_close(cls_attention_scores(tower, batch["pixel_values"], -1), expected)


def test_fastv_is_the_last_tokens_attention_in_the_lm_layer(eager_base, batch):
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
    scores = fastv_scores(language_model, embeds, batch["attention_mask"], image_mask, len(expected), layer_index=1)
    torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("method", ["cls_attention", "fastv"])
def test_baselines_keep_the_budget_and_batch_like_single_inputs(tprl_model, batch, method):
    from conftest import unpad_row

    tprl_model.config.pruning_method = method
    try:
        kept = tprl_model.kept_visual_indices(**batch, num_kept_tokens=16)
        assert kept.shape == (len(batch["input_ids"]), 16)
        for row in range(len(kept)):
            alone = tprl_model.kept_visual_indices(**unpad_row(batch, row), num_kept_tokens=16)
            assert torch.equal(alone[0], kept[row])
    finally:
        tprl_model.config.pruning_method = "tprl"
