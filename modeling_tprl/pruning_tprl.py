# Copyright 2026 The tprl authors.

"""The TPRL pruner: a state autoencoder and a question-guided policy/value transformer over visual tokens, and the
episode they play: at each step of a fixed schedule, keep part of the tokens still kept."""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

from .configuration_tprl import TPRLConfig
from .families import sorted_kept
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


def budget_schedules(num_tokens: int | torch.Tensor, num_kept: torch.Tensor, num_steps: int) -> torch.Tensor:
    """`[rows, num_steps]` each row's `keep_schedule` from its tokens (`num_tokens`: one count, or one per row) down
    to its own budget `num_kept[row]`."""
    tokens = torch.as_tensor(num_tokens, device=num_kept.device).expand(len(num_kept)).tolist()
    schedules = {pair: keep_schedule(*pair, num_steps) for pair in set(zip(tokens, num_kept.tolist()))}
    return torch.tensor([schedules[pair] for pair in zip(tokens, num_kept.tolist())], device=num_kept.device)


def run_episode(
    choose: Callable[[int, torch.Tensor, int | torch.Tensor], torch.Tensor],
    kept_mask: torch.Tensor,
    num_kept: int | torch.Tensor,
    num_steps: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """
    The pruning episode, the one loop every selection goes through (the policy at inference and in training, the
    teachers): at each step of `keep_schedule`, `choose(step, kept_mask, count)` gives `[rows, count]` picks among
    the tokens still kept, and only those stay kept.

    Args:
        choose: the decision maker, e.g. the policy's mode, a sample from it, given picks or a teacher's ranking.
        kept_mask: `[rows, tokens]` bool, the tokens kept at the start (all, or those an image has of the policy's
            slots).
        num_kept: tokens kept at the end: one budget for all rows, or a `[rows]` tensor of budgets (an adaptive
            episode, or images of different sizes), when `count` is a `[rows]` tensor too and the picks are
            right-padded with -1 to its maximum. Each row's schedule starts from the tokens it keeps at the start.
        num_steps: decisions in the episode.

    Returns:
        Per step, `(kept_mask before the step, picks)`.
    """
    rows, tokens = kept_mask.shape
    if not bool(kept_mask.all()):  # rows with tokens of their own: a schedule each
        num_kept = torch.as_tensor(num_kept, device=kept_mask.device).expand(rows)
        counts = budget_schedules(kept_mask.sum(1), num_kept, num_steps).T
    elif isinstance(num_kept, torch.Tensor):
        counts = budget_schedules(tokens, num_kept, num_steps).T
    else:
        counts = keep_schedule(tokens, num_kept, num_steps)
    steps = []
    for step, count in enumerate(counts):
        picks = choose(step, kept_mask, count)
        width = int(count.max()) if isinstance(count, torch.Tensor) else count
        if picks.shape != (rows, width):
            raise ValueError(f"Step {step} must pick {width} tokens per row, got picks of shape {tuple(picks.shape)}.")
        steps.append((kept_mask, picks))
        kept_mask = kept_mask_of(picks, tokens)
    return steps


def kept_mask_of(indices: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """`[rows, num_tokens]` bool, True at `indices` (`[rows, k]`, right-padded with -1)."""
    mask = torch.zeros(len(indices), num_tokens + 1, dtype=torch.bool, device=indices.device)
    return mask.scatter(1, indices.masked_fill(indices < 0, num_tokens), True)[:, :num_tokens]  # padding's column out


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
    neighbourhood), `question` `[rows, text_len, hidden]`, `question_mask` `[rows, text_len]` (real text tokens),
    `present` `[rows, tokens]` the slots each image has a token in (`None`: all of them)."""

    visual: torch.Tensor
    question: torch.Tensor
    question_mask: torch.Tensor
    present: torch.Tensor | None = None

    def start(self, episode_question: torch.Tensor | None = None) -> torch.Tensor:
        """`[episodes, tokens]` the tokens kept before the first step: every one the image has."""
        if self.present is None:
            rows = len(self.visual) if episode_question is None else len(episode_question)
            return torch.ones(rows, self.visual.shape[1], dtype=torch.bool, device=self.visual.device)
        return self.present if episode_question is None else self.present[episode_question]


@dataclass
class PolicyEpisode:
    """An episode of the policy. Per step t: `kept_masks[t]` (`[episodes, tokens]`, kept before the step), `picks[t]`,
    `log_probs[t]` and `entropies[t]` (`[episodes, k_t]`, per pick; right-padded with -1 picks, 0 log-probabilities
    when the budgets differ) and `keep_logits[t]` (`[episodes, tokens]`, -inf where already dropped), which a relevance
    target trains; `values` `[episodes, steps]`; `num_kept` `[episodes]` the budgets. An adaptive episode also has the
    policy's choice of budget: `budget_log_probs` and `budget_entropies` (`[episodes]`)."""

    kept_masks: list[torch.Tensor]
    picks: list[torch.Tensor]
    log_probs: list[torch.Tensor]
    entropies: list[torch.Tensor]
    keep_logits: list[torch.Tensor]
    values: torch.Tensor
    num_kept: torch.Tensor
    budget_log_probs: torch.Tensor | None = None
    budget_entropies: torch.Tensor | None = None

    def kept_visual_indices(self) -> torch.Tensor:
        """`[episodes, max num_kept]` the tokens kept at the end, increasing, right-padded with -1."""
        return sorted_kept(self.picks[-1])


class TPRLBudgetHead(nn.Module):
    """
    An adaptive policy's choice of budget among `adaptive_budgets`. From the policy's state before the first step
    (`TPRLPolicy.budget_state`) it predicts, per budget, the probability that the episode at that budget answers
    right (`score_logits`); for a compute weight w (the price of a share of kept tokens) the choice is the Boltzmann
    policy over the predicted reward, `softmax((p_b - w * b / tokens) / temperature)`, whose mode is the budget of
    highest predicted reward. A higher price never keeps more.
    """

    temperature = 0.02  # in reward units: near-greedy, but a distribution (PPO-style log-probabilities) all the same

    def __init__(self, hidden_size: int, budgets: list[int], num_visual_tokens: int):
        super().__init__()
        # Wide and regularised (dropout; the stage's weight decay): a few thousand questions train it, and a narrow
        # head learned little beyond the question type (docs/experiments.md, "Adaptive budgets").
        self.mlp = nn.Sequential(
            nn.LayerNorm(2 * hidden_size),
            nn.Linear(2 * hidden_size, 4 * hidden_size),
            nn.GELU(),
            nn.Dropout(0.3),
            nn.Linear(4 * hidden_size, len(budgets)),
        )
        self.register_buffer("shares", torch.tensor(budgets, dtype=torch.float) / num_visual_tokens, persistent=False)

    def score_logits(self, state: torch.Tensor) -> torch.Tensor:
        """`[rows, budgets]` logits of the probability that each budget's episode answers right."""
        return self.mlp(state).float()

    def forward(self, state: torch.Tensor, compute_weight: torch.Tensor) -> torch.Tensor:
        rewards = self.score_logits(state).sigmoid() - compute_weight[:, None].float() * self.shares
        return rewards / self.temperature


class TPRLPolicy(nn.Module):
    """Transformer over `[value token; question tokens; kept visual latents]` with keep-logit and value heads. It
    owns its distribution (`PlackettLuce` over the keep logits) and its episode (`episode`). With
    `config.adaptive_budgets` it also chooses each episode's budget among them (`budget_logits`, its
    `TPRLBudgetHead`), for a price per share of kept tokens (the reward's compute weight)."""

    def __init__(self, config: TPRLConfig):
        super().__init__()
        hidden = config.policy_hidden_size
        self.num_steps = config.num_pruning_steps
        # Each input stream is normalised first: the LM's word embeddings are ~30x smaller than the visual states, and
        # unnormalised they drown under the type embedding, so the question's words barely reach the policy.
        # Each visual token is read with its neighbours on the patch grid, normalised together: an object spans
        # several patches, and from one patch alone the policy hardly tells which digit or object it belongs to.
        self.kernel_size = config.policy_kernel_size
        self.visual_grids = config.policy_grids if self.kernel_size > 1 else [(1, config.num_visual_tokens)]
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
        self.budgets = config.adaptive_budgets
        if self.budgets:
            self.budget_head = TPRLBudgetHead(hidden, self.budgets, config.num_visual_tokens)

    def embed_inputs(
        self,
        latents: torch.Tensor,
        question_embeds: torch.Tensor,
        question_mask: torch.Tensor,
        present: torch.Tensor | None = None,
    ) -> EpisodeInputs:
        """
        Args:
            latents: `[rows, tokens, latent]` autoencoder states of all visual tokens of each image.
            question_embeds: `[rows, text_len, hidden]` the base LM's input embeddings of the prompt's text.
            question_mask: `[rows, text_len]` bool, real (non-padding) text tokens.
            present: `[rows, tokens]` bool, the slots each image has a token in (`None`: all); an empty slot reads
                as the grid's edge does, zeros.
        """
        rows, _, width = latents.shape
        if present is not None:
            latents = latents * present[..., None].to(latents.dtype)
        neighbourhoods = []
        for grid_latents, grid in zip(latents.split([r * c for r, c in self.visual_grids], dim=1), self.visual_grids):
            grid_latents = grid_latents.transpose(1, 2).reshape(rows, width, *grid)
            unfolded = F.unfold(grid_latents, self.kernel_size, padding=self.kernel_size // 2)
            neighbourhoods.append(unfolded.transpose(1, 2))
        neighbourhoods = neighbourhoods[0] if len(neighbourhoods) == 1 else torch.cat(neighbourhoods, dim=1)
        visual = self.visual_in(self.visual_norm(neighbourhoods))
        question = self.question_in(self.question_norm(question_embeds.to(self.question_in.weight.dtype)))
        return EpisodeInputs(visual, question, question_mask, present)

    def encode(
        self,
        visual: torch.Tensor,
        question: torch.Tensor,
        kept_mask: torch.Tensor,
        question_mask: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        The transformer's output `[rows, 1 + text_len + width, hidden]` over `[value token; question; the tokens still
        kept]` and the kept tokens' `positions` (`[rows, width]`). Each row's kept tokens come in token order,
        right-padded to the row that keeps most (exact budgets: no padding); dropped tokens are not read.
        """
        rows = len(visual)
        width = int(kept_mask.sum(1).max())
        positions = kept_mask.int().argsort(dim=1, descending=True, stable=True)[:, :width]
        visual = visual.gather(1, positions[..., None].expand(-1, -1, visual.shape[-1]))
        step_embed = self.step_embedding(torch.full((rows, 1), step, device=visual.device))
        value_token = self.type_embedding.weight[0].expand(rows, 1, -1) + step_embed
        question = question + self.type_embedding.weight[1]
        visual = visual + self.visual_position(positions) + self.type_embedding.weight[2] + step_embed
        sequence = torch.cat([value_token, question, visual], dim=1)
        visible = torch.cat([torch.ones_like(kept_mask[:, :1]), question_mask, kept_mask.gather(1, positions)], dim=1)
        for layer in self.layers:
            sequence = layer(sequence, visible)
        return self.norm(sequence), positions

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
        hidden, positions = self.encode(visual, question, kept_mask, question_mask, step)
        logits = self.keep_head(hidden[:, -positions.shape[1] :]).squeeze(-1).float()
        values = self.value_head(hidden[:, 0]).squeeze(-1).float()
        logits = torch.full(kept_mask.shape, -math.inf, device=logits.device).scatter(1, positions, logits)
        return logits.masked_fill(~kept_mask, -math.inf), values  # the padding's logits dropped

    def budget_state(self, inputs: EpisodeInputs) -> torch.Tensor:
        """`[rows, 2 * hidden]` what the budget choice reads: the transformer's value token and mean question token
        before the first step (every token kept)."""
        hidden, _ = self.encode(inputs.visual, inputs.question, inputs.start(), inputs.question_mask, 0)
        question_mask = inputs.question_mask[..., None].to(hidden.dtype)
        question = (hidden[:, 1 : 1 + question_mask.shape[1]] * question_mask).sum(1)
        return torch.cat([hidden[:, 0], question / question_mask.sum(1).clamp(min=1)], dim=-1)

    def budget_logits(self, inputs: EpisodeInputs, compute_weight: torch.Tensor) -> torch.Tensor:
        """`[rows, len(adaptive_budgets)]` logits of the episode's budget for a price `compute_weight` (`[rows]`, > 0)
        per share of tokens kept."""
        if not self.budgets:
            raise ValueError(
                "This pruner was not trained for adaptive budgets (its config has no adaptive_budgets): give a fixed "
                "keep_ratio / num_kept_tokens, or train one with adaptive_budgets and compute_weight_range set."
            )
        return self.budget_head(self.budget_state(inputs), compute_weight)

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
            logits, values = self(inputs.visual, inputs.question, inputs.start(), inputs.question_mask, step)
            return logits.index_select(0, episode_question), values.index_select(0, episode_question)
        visual, question = (value.index_select(0, episode_question) for value in (inputs.visual, inputs.question))
        return self(visual, question, kept_mask, inputs.question_mask[episode_question], step)

    def get_action_and_value(
        self,
        inputs: EpisodeInputs,
        kept_mask: torch.Tensor,
        step: int,
        num_picks: int | torch.Tensor,
        action: torch.Tensor | None = None,
        sample: bool = False,
        episode_question: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        One decision, as CleanRL's `Agent.get_action_and_value`: `(action, log_prob, entropy, value)`, and the step's
        keep `logits` (`[rows, tokens]`). The action is `action` if given, else a sample (`sample=True`) or the mode
        of the step's `PlackettLuce` distribution; `log_prob` and `entropy` are per pick (`[rows, num_picks]`, or
        right-padded when `num_picks` is a `[rows]` tensor), `value` is `[rows]`.
        """
        logits, value = self.logits_and_values(inputs, kept_mask, step, episode_question)
        distribution = PlackettLuce(logits, num_picks)
        if action is None:
            action = distribution.sample() if sample else distribution.mode()
        return action, distribution.log_prob(action), distribution.entropy(action), value, logits

    def episode(
        self,
        inputs: EpisodeInputs,
        num_kept: int | torch.Tensor | None,
        sample: bool = False,
        actions: list[torch.Tensor] | None = None,
        episode_question: torch.Tensor | None = None,
        compute_weight: torch.Tensor | None = None,
    ) -> PolicyEpisode:
        """
        The policy's episode from all the tokens down to `num_kept`: by its mode (inference), by sampling (PPO's
        rollout) or along given `actions` (imitation of a teacher's picks, PPO's update on the rollout's picks).
        `episode_question` maps episodes to the question rows of `inputs` (see `logits_and_values`).

        Adaptive budgets: with `compute_weight` (`[episodes]` prices of kept tokens) and `num_kept=None`, the policy
        first chooses each episode's budget (by its mode, or a sample), whose log-probability and entropy the
        episode returns too.
        """
        rows = len(inputs.visual) if episode_question is None else len(episode_question)
        device = inputs.visual.device
        budget_log_probs = budget_entropies = None
        if (num_kept is None) == (compute_weight is None):
            raise ValueError("Give exactly one of num_kept (a fixed budget) and compute_weight (an adaptive one).")
        if compute_weight is not None:
            if episode_question is not None:
                raise ValueError("An adaptive episode reads one question per episode: give no episode_question.")
            distribution = Categorical(logits=self.budget_logits(inputs, compute_weight))
            choice = distribution.sample() if sample else distribution.probs.argmax(-1)
            num_kept = torch.tensor(self.budgets, device=device)[choice]
            budget_log_probs, budget_entropies = distribution.log_prob(choice), distribution.entropy()
        decisions = []

        def choose(step: int, kept_mask: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
            action = None if actions is None else actions[step]
            decisions.append(
                self.get_action_and_value(inputs, kept_mask, step, count, action, sample, episode_question)
            )
            return decisions[-1][0]

        steps = run_episode(choose, inputs.start(episode_question), num_kept, self.num_steps)
        return PolicyEpisode(
            kept_masks=[kept_mask for kept_mask, _ in steps],
            picks=[picks for _, picks in steps],
            log_probs=[decision[1] for decision in decisions],
            entropies=[decision[2] for decision in decisions],
            keep_logits=[decision[4] for decision in decisions],
            values=torch.stack([decision[3] for decision in decisions], dim=1),
            num_kept=torch.as_tensor(num_kept, device=device).expand(rows),
            budget_log_probs=budget_log_probs,
            budget_entropies=budget_entropies,
        )


class TPRLPruner(nn.Module):
    """The learned pruner: state autoencoder + language-guided policy, deciding per image which tokens stay."""

    def __init__(self, config: TPRLConfig):
        super().__init__()
        self.config = config
        self.autoencoder = TPRLStateAutoencoder(config.base_text_hidden_size, config.autoencoder_latent_size)
        self.policy = TPRLPolicy(config)

    def episode_inputs(
        self,
        visual_tokens: torch.Tensor,
        question_embeds: torch.Tensor,
        question_mask: torch.Tensor,
        present: torch.Tensor | None = None,
    ) -> EpisodeInputs:
        """The policy's inputs: the autoencoder's latents of `[images, tokens, hidden]` projected visual tokens (on the
        policy's slots, `present` where an image has a token) and the question's embeddings."""
        latents = self.autoencoder.encode(visual_tokens.to(self.policy.visual_in.weight.dtype))
        return self.policy.embed_inputs(latents, question_embeds, question_mask, present)

    @torch.no_grad()
    def select(
        self,
        visual_tokens: torch.Tensor,
        question_embeds: torch.Tensor,
        question_mask: torch.Tensor,
        num_kept: int | torch.Tensor | None,
        compute_weight: float | None = None,
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        The policy's most likely episode; returns `[images, num_kept]` indices in increasing order (right-padded with
        -1 where budgets differ). With `compute_weight` (a price per share of kept tokens) instead of `num_kept`, the
        policy chooses each image's budget. `present`: the slots each image has a token in (`None`: all).
        """
        inputs = self.episode_inputs(visual_tokens, question_embeds, question_mask, present)
        if compute_weight is not None:
            prices = torch.full((len(visual_tokens),), float(compute_weight), device=visual_tokens.device)
            return self.policy.episode(inputs, None, compute_weight=prices).kept_visual_indices()
        return self.policy.episode(inputs, num_kept).kept_visual_indices()
