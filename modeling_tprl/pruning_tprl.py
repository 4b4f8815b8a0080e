"""The TPRL pruner: a state autoencoder, a question encoder and a policy/value transformer over visual tokens."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_tprl import TPRLConfig


def keep_schedule(num_tokens: int, num_kept: int, num_steps: int) -> list[int]:
    """Tokens still kept after each step: geometric from `num_tokens` down to exactly `num_kept`."""
    if not 1 <= num_kept <= num_tokens:
        raise ValueError(
            f"Cannot keep {num_kept} of {num_tokens} visual tokens; the budget must be in [1, {num_tokens}]."
        )
    ratio = num_kept / num_tokens
    counts = [max(num_kept, round(num_tokens * ratio ** ((step + 1) / num_steps))) for step in range(num_steps)]
    counts[-1] = num_kept
    return counts


class TPRLStateAutoencoder(nn.Module):
    """Compresses each projected visual token to a small latent (the policy's state) and reconstructs it."""

    def __init__(self, hidden_size: int, latent_size: int):
        super().__init__()
        inner = 2 * latent_size
        self.encoder = nn.Sequential(
            nn.LayerNorm(hidden_size), nn.Linear(hidden_size, inner), nn.GELU(), nn.Linear(inner, latent_size)
        )
        self.decoder = nn.Sequential(nn.Linear(latent_size, inner), nn.GELU(), nn.Linear(inner, hidden_size))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.encode(tokens)
        return latents, self.decoder(latents)


class TPRLPolicyLayer(nn.Module):
    """Pre-norm transformer block with SDPA (torch's encoder fast path is slow with padding masks)."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.qkv_proj = nn.Linear(hidden_size, 3 * hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 2 * hidden_size), nn.GELU(), nn.Linear(2 * hidden_size, hidden_size)
        )

    def forward(self, hidden: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        batch, length, width = hidden.shape
        qkv = self.qkv_proj(self.attention_norm(hidden)).view(batch, length, 3, self.num_heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=visible[:, None, None, :])
        hidden = hidden + self.o_proj(attended.transpose(1, 2).reshape(batch, length, width))
        return hidden + self.mlp(self.mlp_norm(hidden))


class TPRLPolicy(nn.Module):
    """Transformer over `[value token; question tokens; kept visual latents]` with keep-logit and value heads."""

    def __init__(self, config: TPRLConfig):
        super().__init__()
        hidden = config.policy_hidden_size
        # Each input stream is normalised first: the LM's word embeddings are ~30x smaller than the visual states, and
        # unnormalised they drown under the type embedding, so the question's words barely reach the policy.
        # Each visual token is read with its neighbours on the patch grid, normalised together: an object spans
        # several patches, and from one patch alone the policy hardly tells which digit or object it belongs to.
        self.kernel_size = config.policy_kernel_size
        self.visual_grid = (config.visual_grid_side,) * 2 if self.kernel_size > 1 else (1, config.num_visual_tokens)
        neighbourhood = config.autoencoder_latent_size * self.kernel_size**2
        self.visual_norm = nn.LayerNorm(neighbourhood)
        self.visual_in = nn.Linear(neighbourhood, hidden)
        self.question_norm = nn.LayerNorm(config.base_text_hidden_size)
        self.question_in = nn.Linear(config.base_text_hidden_size, hidden)  # reads the base LM's own embeddings
        self.visual_position = nn.Embedding(config.num_visual_tokens, hidden)
        self.step_embedding = nn.Embedding(config.num_pruning_steps, hidden)
        self.type_embedding = nn.Embedding(3, hidden)  # value token, question token, visual token
        self.layers = nn.ModuleList(
            TPRLPolicyLayer(hidden, config.policy_num_heads) for _ in range(config.policy_num_layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.keep_head = nn.Linear(hidden, 1)
        self.value_head = nn.Linear(hidden, 1)

    def embed_inputs(self, latents: torch.Tensor, question_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The policy's input embeddings of one episode, computed once: they do not depend on the step or on which
        tokens are still kept.

        Args:
            latents: `[images, tokens, latent]` autoencoder states of all visual tokens of each image.
            question_embeds: `[images, text_len, hidden]` the base LM's input embeddings of the prompt's text.

        Returns:
            `(visual, question)`: `[images, tokens, policy_hidden]` (every token, read with its dropped neighbours too)
            and `[images, text_len, policy_hidden]`.
        """
        images, _, width = latents.shape
        grid = latents.transpose(1, 2).reshape(images, width, *self.visual_grid)
        neighbourhoods = F.unfold(grid, self.kernel_size, padding=self.kernel_size // 2).transpose(1, 2)
        visual = self.visual_in(self.visual_norm(neighbourhoods))
        question = self.question_in(self.question_norm(question_embeds.to(self.question_in.weight.dtype)))
        return visual, question

    def forward(
        self,
        visual: torch.Tensor,
        question: torch.Tensor,
        kept_mask: torch.Tensor,
        question_mask: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            visual, question: the episode's input embeddings, from `embed_inputs`.
            kept_mask: `[images, tokens]` bool, the tokens still kept (the others are invisible to the policy).
            question_mask: `[images, text_len]` bool, real (non-padding) text tokens.
            step: index of the decision in the episode.

        Returns:
            `(keep_logits, values)`: `[images, tokens]` logits, `-inf` where the token is already dropped, and
            `[images]` state values.
        """
        images, tokens, _ = visual.shape
        positions = torch.arange(tokens, device=visual.device).expand(images, -1)
        num_kept = kept_mask.sum(1)
        compact = bool((num_kept == num_kept[0]).all())
        if compact:  # exact budgets keep as many tokens in every row: the policy reads only those (same outputs)
            positions = kept_mask.nonzero()[:, 1].view(images, -1)
            visual = visual.gather(1, positions[..., None].expand(-1, -1, visual.shape[-1]))
            visual_mask = torch.ones_like(positions, dtype=torch.bool)
        else:
            visual_mask = kept_mask
        step_embed = self.step_embedding(torch.full((images, 1), step, device=visual.device))
        value_token = self.type_embedding.weight[0].expand(images, 1, -1) + step_embed
        question = question + self.type_embedding.weight[1]
        visual = visual + self.visual_position(positions) + self.type_embedding.weight[2] + step_embed
        sequence = torch.cat([value_token, question, visual], dim=1)
        visible = torch.cat([torch.ones_like(kept_mask[:, :1]), question_mask, visual_mask], dim=1)
        for layer in self.layers:
            sequence = layer(sequence, visible)
        hidden = self.norm(sequence)
        logits = self.keep_head(hidden[:, -visual_mask.shape[1] :]).squeeze(-1).float()
        values = self.value_head(hidden[:, 0]).squeeze(-1).float()
        if compact:
            logits = torch.full(kept_mask.shape, -math.inf, device=logits.device).scatter(1, positions, logits)
        return logits.masked_fill(~kept_mask, -math.inf), values


class TPRLPruner(nn.Module):
    """The learned pruner: state autoencoder + language-guided policy, deciding per image which tokens stay."""

    def __init__(self, config: TPRLConfig):
        super().__init__()
        self.config = config
        self.autoencoder = TPRLStateAutoencoder(config.base_text_hidden_size, config.autoencoder_latent_size)
        self.policy = TPRLPolicy(config)

    @torch.no_grad()
    def select(
        self,
        visual_tokens: torch.Tensor,
        question_embeds: torch.Tensor,
        question_mask: torch.Tensor,
        num_kept: int,
    ) -> torch.Tensor:
        """Deterministic multi-step selection; returns `[images, num_kept]` indices in increasing order."""
        latents = self.autoencoder.encode(visual_tokens.to(self.policy.visual_in.weight.dtype))
        visual, question = self.policy.embed_inputs(latents, question_embeds)
        kept_mask = torch.ones(visual_tokens.shape[:2], dtype=torch.bool, device=visual_tokens.device)
        for step, count in enumerate(keep_schedule(visual_tokens.shape[1], num_kept, self.config.num_pruning_steps)):
            logits, _ = self.policy(visual, question, kept_mask, question_mask, step)
            kept_mask = torch.zeros_like(kept_mask).scatter(1, logits.topk(count, dim=1).indices, True)
        return kept_mask.nonzero()[:, 1].view(visual_tokens.shape[0], num_kept)


# ---- training-free baselines: scores of each visual token, highest kept ---------------------------------------


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
def cls_attention_scores(vision_tower: nn.Module, pixel_values: torch.Tensor, feature_layer: int) -> torch.Tensor:
    """
    `[images, patches]` attention of the [CLS] token to each patch in the vision layer whose output LLaVA reads
    (VisionZip / FasterVLM "dominant" tokens). Runs the vision tower once more, with hidden states.
    """
    hidden_states = vision_tower(pixel_values, output_hidden_states=True).hidden_states
    index = feature_layer if feature_layer >= 0 else len(hidden_states) + feature_layer
    if index < 1:
        raise ValueError("cls_attention needs a vision feature layer after at least one transformer layer.")
    layer = vision_tower.encoder.layers[index - 1]
    normed = layer.layer_norm1(hidden_states[index - 1])
    query = layer.self_attn.q_proj(normed[:, 0])
    keys = layer.self_attn.k_proj(normed)
    return _attention_row(query, keys, vision_tower.config.num_attention_heads)[:, 1:]


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
    language_model: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    image_mask: torch.Tensor,
    num_images: int,
    layer_index: int,
) -> torch.Tensor:
    """
    `[images, visual tokens]` FastV-style scores: the attention of each row's last token to its visual tokens in
    LM layer `layer_index`, averaged over heads, on the full (unpruned) sequence. Runs only the layers before it.
    """
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    layer_index = min(layer_index, len(language_model.layers) - 1)
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
