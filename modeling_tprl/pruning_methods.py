# Copyright 2026 The tprl authors.

"""How a `TPRLForConditionalGeneration` chooses the visual tokens each image keeps: a registry of pruning methods.

As transformers dispatches attention through `ALL_ATTENTION_FUNCTIONS`, the model dispatches selection through
`ALL_PRUNING_METHODS`: `"tprl"` (the learned policy) and the training-free baselines `"random"`, `"uniform"`,
`"cls_attention"` (families with a [CLS] token), `"vision_attention"` (VisionZip-style, any family) and `"fastv"`.
A method is a function

    method(model, visual, input_ids, attention_mask, num_kept) -> [images, max(num_kept)] indices

where `visual` is the images' `VisualTokens` (features, per-image counts and grids) and `num_kept` a `[images]`
tensor of budgets; it returns each image's kept tokens, increasing, right-padded with -1. `ALL_PRUNING_METHODS.register(
"name", method)` adds one; `pruning_method="name"` then selects it per call or in the config.
"""

import sys
from collections.abc import Callable

import torch
from torch import nn
from transformers.utils.generic import GeneralInterface

from .families import VisualTokens, attention_row


def as_visual_tokens(
    model, image_features: "torch.Tensor | VisualTokens", image_inputs: dict | None = None
) -> VisualTokens:
    """`VisualTokens` of a stacked `[images, tokens, hidden]` tensor of images that all have the policy's grid."""
    if isinstance(image_features, VisualTokens):
        return image_features
    images, tokens, _ = image_features.shape
    device = image_features.device
    grids = torch.tensor(model.config.policy_grid, device=device).expand(images, 2)
    return VisualTokens(image_features, torch.full((images,), tokens, device=device), grids, image_inputs or {})


@torch.no_grad()
def vision_attention_scores(
    model, pixel_values: torch.Tensor | None = None, visual: VisualTokens | None = None, **image_inputs
) -> torch.Tensor:
    """
    `[images, tokens]` attention scores from the vision pass (VisionZip): the [CLS] token's attention in the layer
    LLaVA reads, or for a tower without [CLS] (Qwen2.5-VL) the attention each token receives in a full-attention
    block. Read from the vision pass that made the features when it kept that layer's input (as the model's forward
    does for these methods); otherwise the vision tower runs once more.
    """
    if visual is None or visual.vision_layer_input is None:
        kept = model.pop_vision_layer_input(pixel_values) if visual is None else None
        if kept is None:
            image_inputs = (
                visual.image_inputs if visual is not None else {"pixel_values": pixel_values, **image_inputs}
            )
            kept = model.encode_images(keep_vision_layer_input=True, **image_inputs)
        visual = kept
    return model.family.vision_attention_scores(model.base, visual)


def _check_cls_token(model) -> None:
    if not model.family.has_cls_token:
        raise ValueError(
            f"pruning_method 'cls_attention' reads the vision tower's [CLS] token, and {model.family.model_type} has "
            "none: use 'vision_attention' (VisionZip-style attention received in a full-attention vision block), "
            "'fastv', 'uniform' or 'random'."
        )


def cls_attention_scores(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """`[images, patches]` attention of the [CLS] token to each patch in the vision layer LLaVA reads."""
    _check_cls_token(model)
    return vision_attention_scores(model, pixel_values)


class _LayerReached(Exception):
    pass


def _input_of_layer(model: nn.Module, layer: nn.Module, **inputs) -> tuple[torch.Tensor, dict]:
    """The hidden states and keyword arguments entering `layer` when `model` runs on `inputs`; the layers from `layer`
    on never run."""
    captured = {}

    def stop(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        captured["kwargs"] = kwargs
        raise _LayerReached

    handle = layer.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        model(**inputs, use_cache=False)
    except _LayerReached:
        pass
    finally:
        handle.remove()
    return captured["hidden"], captured["kwargs"]


@torch.no_grad()
def fastv_scores(
    model,
    image_features: "torch.Tensor | VisualTokens",
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """
    `[images, visual tokens]` FastV-style scores: the attention of each row's last token to its visual tokens in
    LM layer `config.fastv_layer`, averaged over heads, on the full (unpruned) sequence with the base's own positions
    (3-D for mRoPE families). Runs only the layers before it. With the answer in `input_ids`, the teachers read where
    the answer looks.
    """
    visual = as_visual_tokens(model, image_features)
    inputs_embeds, image_mask = model.insert_visual_tokens(input_ids, visual)
    language_model = model.base.model.language_model
    layer_index = min(model.config.fastv_layer, len(language_model.layers) - 1)
    position_ids = model.family.prompt_positions(model.base, input_ids, attention_mask, visual.image_inputs)
    layer = language_model.layers[layer_index]
    hidden, layer_kwargs = _input_of_layer(
        language_model, layer, inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids
    )
    attention, config = layer.self_attn, language_model.config
    apply_rotary_pos_emb = sys.modules[type(attention).__module__].apply_rotary_pos_emb
    normed = layer.input_layernorm(hidden)
    rows, length, _ = normed.shape
    head_dim, kv_heads = attention.head_dim, config.num_key_value_heads
    query = attention.q_proj(normed).view(rows, length, -1, head_dim).transpose(1, 2)
    keys = attention.k_proj(normed).view(rows, length, kv_heads, head_dim).transpose(1, 2)
    query, keys = apply_rotary_pos_emb(query, keys, *layer_kwargs["position_embeddings"])
    keys = keys.repeat_interleave(query.shape[1] // kv_heads, dim=1)
    heads = query.shape[1]
    query = query[:, :, -1].reshape(rows, heads * head_dim)
    keys = keys.transpose(1, 2).reshape(rows, length, heads * head_dim)
    scores = attention_row(query, keys, heads, attention_mask.bool())
    padded = torch.zeros(visual.valid.shape, device=scores.device)
    padded[visual.valid] = scores[image_mask]  # placeholders are in image order, row by row
    return padded


def tprl_selection(model, visual, input_ids, attention_mask, num_kept, compute_weight=None):
    """The learned policy's most likely episode, reading each image's question on its slots (`policy_inputs`); with
    `compute_weight`, the policy chooses each image's budget."""
    features, present, slots = model.policy_inputs(visual)
    question_embeds, question_mask = model.question_embeddings(input_ids, attention_mask, visual)
    budget = num_kept
    if num_kept is not None and bool((num_kept == num_kept[0]).all()):
        budget = int(num_kept[0])
    picks = model.pruner.select(features, question_embeds, question_mask, budget, compute_weight, present)
    return picks if slots is None else model.tokens_of_slots(picks, slots)


def random_selection(model, visual, input_ids, attention_mask, num_kept):
    """`num_kept` tokens drawn uniformly without replacement (torch's global RNG)."""
    return visual.top_k(torch.rand(visual.valid.shape, device=visual.features.device), num_kept)


def uniform_selection(model, visual, input_ids, attention_mask, num_kept):
    """A centred stride over each image's content tokens in their order (row-major over its grid)."""
    steps = torch.arange(int(num_kept.max()), device=num_kept.device)
    ranks = ((steps + 0.5) * visual.content_counts[:, None] / num_kept[:, None]).long()
    if visual.content is not None:  # the ranks-th content tokens: content positions first, in order
        positions = torch.argsort((~visual.selectable).int(), dim=1, stable=True)
        ranks = positions.gather(1, ranks.clamp(max=positions.shape[1] - 1))
    return ranks.masked_fill(steps >= num_kept[:, None], -1)


def cls_attention_selection(model, visual, input_ids, attention_mask, num_kept):
    """The patches the vision tower's [CLS] token attends to most (VisionZip / FasterVLM "dominant" tokens)."""
    _check_cls_token(model)
    return visual.top_k(vision_attention_scores(model, visual=visual), num_kept)


def vision_attention_selection(model, visual, input_ids, attention_mask, num_kept):
    """The tokens with most attention in the vision pass: [CLS] attention, or attention received (VisionZip)."""
    return visual.top_k(vision_attention_scores(model, visual=visual), num_kept)


def fastv_selection(model, visual, input_ids, attention_mask, num_kept):
    """The visual tokens the last prompt token attends to most in an early LM layer (FastV)."""
    return visual.top_k(fastv_scores(model, visual, input_ids, attention_mask), num_kept)


class PruningMethods(GeneralInterface):
    """The registry of pruning methods (a `GeneralInterface`, like transformers' `AttentionInterface`)."""

    _global_mapping: dict[str, Callable] = {
        "tprl": tprl_selection,
        "random": random_selection,
        "uniform": uniform_selection,
        "cls_attention": cls_attention_selection,
        "vision_attention": vision_attention_selection,
        "fastv": fastv_selection,
    }


ALL_PRUNING_METHODS = PruningMethods()


def check_pruning_method(method: str) -> None:
    """A clear error for a method that is not registered."""
    if method not in ALL_PRUNING_METHODS:
        raise ValueError(
            f"Unknown pruning_method {method!r}; choose one of {tuple(ALL_PRUNING_METHODS)} or register one with "
            "ALL_PRUNING_METHODS.register (modeling_tprl.pruning_methods)."
        )
