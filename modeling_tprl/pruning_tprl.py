"""The TPRL pruner: a state autoencoder and a question-guided policy/value transformer over visual tokens, and the
episode they play: at each step of a fixed schedule, keep part of the tokens still kept."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_tprl import TPRLConfig
from .plackett_luce import PlackettLuce


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


def run_episode(
    choose: Callable[[int, torch.Tensor, int], torch.Tensor], kept_mask: torch.Tensor, num_kept: int, num_steps: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """
    The pruning episode, the one loop every selection goes through (the policy at inference and in training, the
    teachers): at each step of `keep_schedule`, `choose(step, kept_mask, count)` gives `[rows, count]` picks among
    the tokens still kept, and only those stay kept.

    Args:
        choose: the decision maker, e.g. the policy's mode, a sample from it, given picks or a teacher's ranking.
        kept_mask: `[rows, tokens]` bool, the tokens kept at the start (usually all).
        num_kept: tokens kept at the end.
        num_steps: decisions in the episode.

    Returns:
        Per step, `(kept_mask before the step, picks)`.
    """
    steps = []
    for step, count in enumerate(keep_schedule(kept_mask.shape[1], num_kept, num_steps)):
        picks = choose(step, kept_mask, count)
        if picks.shape != (kept_mask.shape[0], count):
            raise ValueError(f"Step {step} must pick {count} tokens per row, got picks of shape {tuple(picks.shape)}.")
        steps.append((kept_mask, picks))
        kept_mask = torch.zeros_like(kept_mask).scatter(1, picks, True)
    return steps


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


@dataclass
class EpisodeInputs:
    """What the policy reads of each question, embedded once per episode (`TPRLPolicy.embed_inputs`): it does not
    depend on the step or on which tokens are still kept. `visual` `[rows, tokens, hidden]` (every token with its
    neighbourhood), `question` `[rows, text_len, hidden]`, `question_mask` `[rows, text_len]` (real text tokens)."""

    visual: torch.Tensor
    question: torch.Tensor
    question_mask: torch.Tensor


@dataclass
class PolicyEpisode:
    """An episode of the policy. Per step t: `kept_masks[t]` (`[episodes, tokens]`, kept before the step), `picks[t]`,
    `log_probs[t]` and `entropies[t]` (`[episodes, k_t]`, per pick); `values` `[episodes, steps]`."""

    kept_masks: list[torch.Tensor]
    picks: list[torch.Tensor]
    log_probs: list[torch.Tensor]
    entropies: list[torch.Tensor]
    values: torch.Tensor

    def kept_visual_indices(self) -> torch.Tensor:
        """`[episodes, num_kept]` the tokens kept at the end, increasing."""
        return self.picks[-1].sort(dim=1).values


class TPRLPolicy(nn.Module):
    """Transformer over `[value token; question tokens; kept visual latents]` with keep-logit and value heads. It
    owns its distribution (`PlackettLuce` over the keep logits) and its episode (`episode`)."""

    def __init__(self, config: TPRLConfig):
        super().__init__()
        hidden = config.policy_hidden_size
        self.num_steps = config.num_pruning_steps
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

    def embed_inputs(
        self, latents: torch.Tensor, question_embeds: torch.Tensor, question_mask: torch.Tensor
    ) -> EpisodeInputs:
        """
        Args:
            latents: `[rows, tokens, latent]` autoencoder states of all visual tokens of each image.
            question_embeds: `[rows, text_len, hidden]` the base LM's input embeddings of the prompt's text.
            question_mask: `[rows, text_len]` bool, real (non-padding) text tokens.
        """
        rows, _, width = latents.shape
        grid = latents.transpose(1, 2).reshape(rows, width, *self.visual_grid)
        neighbourhoods = F.unfold(grid, self.kernel_size, padding=self.kernel_size // 2).transpose(1, 2)
        visual = self.visual_in(self.visual_norm(neighbourhoods))
        question = self.question_in(self.question_norm(question_embeds.to(self.question_in.weight.dtype)))
        return EpisodeInputs(visual, question, question_mask)

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
            visual, question, question_mask: the episode's inputs (`EpisodeInputs`).
            kept_mask: `[rows, tokens]` bool, the tokens still kept (the others are invisible to the policy).
            step: index of the decision in the episode.

        Returns:
            `(keep_logits, values)`: `[rows, tokens]` logits, `-inf` where the token is already dropped, and
            `[rows]` state values.
        """
        rows, tokens, _ = visual.shape
        positions = torch.arange(tokens, device=visual.device).expand(rows, -1)
        num_kept = kept_mask.sum(1)
        compact = bool((num_kept == num_kept[0]).all())
        if compact:  # exact budgets keep as many tokens in every row: the policy reads only those (same outputs)
            positions = kept_mask.nonzero()[:, 1].view(rows, -1)
            visual = visual.gather(1, positions[..., None].expand(-1, -1, visual.shape[-1]))
            visual_mask = torch.ones_like(positions, dtype=torch.bool)
        else:
            visual_mask = kept_mask
        step_embed = self.step_embedding(torch.full((rows, 1), step, device=visual.device))
        value_token = self.type_embedding.weight[0].expand(rows, 1, -1) + step_embed
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

    def logits_and_values(
        self, inputs: EpisodeInputs, kept_mask: torch.Tensor, step: int, episode_question: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        `forward` for episodes that share questions: `inputs` hold one row per question and `episode_question` gives
        each episode's (`None`: one episode per question). At step 0 every episode still keeps every token, so its
        outputs depend on the question alone and are computed once per question.
        """
        if episode_question is None:
            return self(inputs.visual, inputs.question, kept_mask, inputs.question_mask, step)
        # index_select, not indexing: its backward pass on the CPU sums in a fixed order, so runs are reproducible.
        if step == 0:
            all_kept = kept_mask.new_ones(len(inputs.visual), kept_mask.shape[1])
            logits, values = self(inputs.visual, inputs.question, all_kept, inputs.question_mask, step)
            return logits.index_select(0, episode_question), values.index_select(0, episode_question)
        visual, question = (value.index_select(0, episode_question) for value in (inputs.visual, inputs.question))
        return self(visual, question, kept_mask, inputs.question_mask[episode_question], step)

    def get_action_and_value(
        self,
        inputs: EpisodeInputs,
        kept_mask: torch.Tensor,
        step: int,
        num_picks: int,
        action: torch.Tensor | None = None,
        sample: bool = False,
        episode_question: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        One decision, as CleanRL's `Agent.get_action_and_value`: `(action, log_prob, entropy, value)`. The action is
        `action` if given, else a sample (`sample=True`) or the mode of the step's `PlackettLuce` distribution;
        `log_prob` and `entropy` are per pick (`[rows, num_picks]`), `value` is `[rows]`.
        """
        logits, value = self.logits_and_values(inputs, kept_mask, step, episode_question)
        distribution = PlackettLuce(logits, num_picks)
        if action is None:
            action = distribution.sample() if sample else distribution.mode()
        return action, distribution.log_prob(action), distribution.entropy(action), value

    def episode(
        self,
        inputs: EpisodeInputs,
        num_kept: int,
        sample: bool = False,
        actions: list[torch.Tensor] | None = None,
        episode_question: torch.Tensor | None = None,
    ) -> PolicyEpisode:
        """
        The policy's episode from all the tokens down to `num_kept`: by its mode (inference), by sampling (PPO's
        rollout) or along given `actions` (imitation of a teacher's picks, PPO's update on the rollout's picks).
        `episode_question` maps episodes to the question rows of `inputs` (see `logits_and_values`).
        """
        rows = len(inputs.visual) if episode_question is None else len(episode_question)
        decisions = []

        def choose(step: int, kept_mask: torch.Tensor, count: int) -> torch.Tensor:
            action = None if actions is None else actions[step]
            decisions.append(
                self.get_action_and_value(inputs, kept_mask, step, count, action, sample, episode_question)
            )
            return decisions[-1][0]

        all_kept = torch.ones(rows, inputs.visual.shape[1], dtype=torch.bool, device=inputs.visual.device)
        steps = run_episode(choose, all_kept, num_kept, self.num_steps)
        return PolicyEpisode(
            kept_masks=[kept_mask for kept_mask, _ in steps],
            picks=[picks for _, picks in steps],
            log_probs=[decision[1] for decision in decisions],
            entropies=[decision[2] for decision in decisions],
            values=torch.stack([decision[3] for decision in decisions], dim=1),
        )


class TPRLPruner(nn.Module):
    """The learned pruner: state autoencoder + language-guided policy, deciding per image which tokens stay."""

    def __init__(self, config: TPRLConfig):
        super().__init__()
        self.config = config
        self.autoencoder = TPRLStateAutoencoder(config.base_text_hidden_size, config.autoencoder_latent_size)
        self.policy = TPRLPolicy(config)

    def episode_inputs(
        self, visual_tokens: torch.Tensor, question_embeds: torch.Tensor, question_mask: torch.Tensor
    ) -> EpisodeInputs:
        """The policy's inputs: the autoencoder's latents of `[images, tokens, hidden]` projected visual tokens and
        the question's embeddings."""
        latents = self.autoencoder.encode(visual_tokens.to(self.policy.visual_in.weight.dtype))
        return self.policy.embed_inputs(latents, question_embeds, question_mask)

    @torch.no_grad()
    def select(
        self,
        visual_tokens: torch.Tensor,
        question_embeds: torch.Tensor,
        question_mask: torch.Tensor,
        num_kept: int,
    ) -> torch.Tensor:
        """The policy's most likely episode; returns `[images, num_kept]` indices in increasing order."""
        inputs = self.episode_inputs(visual_tokens, question_embeds, question_mask)
        return self.policy.episode(inputs, num_kept).kept_visual_indices()
