# Copyright 2026 The tprl authors.

"""How a `TPRLForConditionalGeneration` chooses the visual tokens each image keeps: a registry of pruning methods.

As transformers dispatches attention through `ALL_ATTENTION_FUNCTIONS`, the model dispatches selection through
`ALL_PRUNING_METHODS`: `"tprl"` (the learned policy) and the training-free baselines `"random"`, `"uniform"`,
`"cls_attention"` and `"fastv"`. A method is a function

    method(model, image_features, input_ids, attention_mask, pixel_values, num_kept) -> [images, num_kept] indices

(increasing), and `ALL_PRUNING_METHODS.register("name", method)` adds one; `pruning_method="name"` then selects it
per call or in the config.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from transformers.utils.generic import GeneralInterface


def _attention_row(query: torch.Tensor, keys: torch.Tensor, num_heads: int, mask: torch.Tensor | None = None):
    """Softmax attention of one query per row over `keys` (`[rows, length, width]`), averaged over heads."""
    rows, length, width = keys.shape
    head_dim = width // num_heads
    query = query.view(rows, num_heads, 1, head_dim)
    keys = keys.view(rows, length, num_heads, head_dim).transpose(1, 2)
    logits = (query @ keys.transpose(-1, -2)).squeeze(2).float() / math.sqrt(head_dim)
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, :], -math.inf)
    return logits.softmax(-1).mean(1)


@torch.no_grad()
def cls_attention_scores(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """
    `[images, patches]` attention of the [CLS] token to each patch in the vision layer whose output LLaVA reads
    (VisionZip / FasterVLM "dominant" tokens). Read from the vision pass that made the image features when it kept
    that layer's input (`visual_tokens(..., keep_vision_layer_input=True)`, as the model's forward does for
    this method); otherwise the vision tower runs once more.
    """
    hidden_states = model.pop_vision_layer_input(pixel_values)
    if hidden_states is None:
        model.visual_tokens(pixel_values, keep_vision_layer_input=True)
        hidden_states = model.pop_vision_layer_input(pixel_values)
    layer = model.feature_vision_layer()
    normed = layer.layer_norm1(hidden_states)
    query = layer.self_attn.q_proj(normed[:, 0])
    keys = layer.self_attn.k_proj(normed)
    return _attention_row(query, keys, model.base.model.vision_tower.config.num_attention_heads)[:, 1:]


class _LayerReached(Exception):
    pass


def _input_of_layer(model: nn.Module, layer: nn.Module, **inputs) -> torch.Tensor:
    """The hidden states entering `layer` when `model` runs on `inputs`; the layers from `layer` on never run."""
    captured = {}

    def stop(module, args, kwargs):
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        raise _LayerReached

    handle = layer.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        model(**inputs, use_cache=False)
    except _LayerReached:
        pass
    finally:
        handle.remove()
    return captured["hidden"]


@torch.no_grad()
def fastv_scores(
    model, image_features: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """
    `[images, visual tokens]` FastV-style scores: the attention of each row's last token to its visual tokens in
    LM layer `config.fastv_layer`, averaged over heads, on the full (unpruned) sequence. Runs only the layers before
    it. With the answer in `input_ids`, the teachers read where the answer looks.
    """
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    inputs_embeds, image_mask = model.insert_visual_tokens(input_ids, image_features)
    language_model, num_images = model.base.model.language_model, len(image_features)
    layer_index = min(model.config.fastv_layer, len(language_model.layers) - 1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    layer = language_model.layers[layer_index]
    hidden = _input_of_layer(
        language_model, layer, inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids
    )
    attention, config = layer.self_attn, language_model.config
    normed = layer.input_layernorm(hidden)
    rows, length, _ = normed.shape
    head_dim, kv_heads = attention.head_dim, config.num_key_value_heads
    query = attention.q_proj(normed).view(rows, length, -1, head_dim).transpose(1, 2)
    keys = attention.k_proj(normed).view(rows, length, kv_heads, head_dim).transpose(1, 2)
    cos, sin = language_model.rotary_emb(normed, position_ids)
    query, keys = apply_rotary_pos_emb(query, keys, cos, sin)
    keys = keys.repeat_interleave(query.shape[1] // kv_heads, dim=1)
    heads = query.shape[1]
    query = query[:, :, -1].reshape(rows, heads * head_dim)
    keys = keys.transpose(1, 2).reshape(rows, length, heads * head_dim)
    scores = _attention_row(query, keys, heads, attention_mask.bool())
    return scores[image_mask].view(num_images, -1)  # placeholders are in image order, row by row


def tprl_selection(model, image_features, input_ids, attention_mask, pixel_values, num_kept):
    """The learned policy's most likely episode, reading each image's question."""
    question_embeds, question_mask = model.question_embeddings(input_ids, attention_mask, len(image_features))
    return model.pruner.select(image_features, question_embeds, question_mask, num_kept)


def random_selection(model, image_features, input_ids, attention_mask, pixel_values, num_kept):
    """`num_kept` tokens drawn uniformly without replacement (torch's global RNG)."""
    scores = torch.rand(image_features.shape[:2], device=image_features.device)
    return scores.topk(num_kept, dim=1).indices.sort(dim=1).values


def uniform_selection(model, image_features, input_ids, attention_mask, pixel_values, num_kept):
    """A centred stride over the row-major patch grid."""
    images, total, _ = image_features.shape
    indices = ((torch.arange(num_kept, device=image_features.device) + 0.5) * total / num_kept).long()
    return indices.expand(images, -1)


def cls_attention_selection(model, image_features, input_ids, attention_mask, pixel_values, num_kept):
    """The patches the vision tower's [CLS] token attends to most (VisionZip / FasterVLM "dominant" tokens)."""
    if pixel_values is None:
        raise ValueError("pruning_method 'cls_attention' needs the images' pixel_values.")
    return cls_attention_scores(model, pixel_values).topk(num_kept, dim=1).indices.sort(dim=1).values


def fastv_selection(model, image_features, input_ids, attention_mask, pixel_values, num_kept):
    """The visual tokens the last prompt token attends to most in an early LM layer (FastV)."""
    scores = fastv_scores(model, image_features, input_ids, attention_mask)
    return scores.topk(num_kept, dim=1).indices.sort(dim=1).values


class PruningMethods(GeneralInterface):
    """The registry of pruning methods (a `GeneralInterface`, like transformers' `AttentionInterface`)."""

    _global_mapping: dict[str, Callable] = {
        "tprl": tprl_selection,
        "random": random_selection,
        "uniform": uniform_selection,
        "cls_attention": cls_attention_selection,
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
