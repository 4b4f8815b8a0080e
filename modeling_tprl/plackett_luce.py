# Copyright 2026 The tprl authors.

"""The policy's distribution over selections: keep `k` of the still-kept tokens, without replacement.

An action is an *ordered* pick of `k` distinct tokens drawn one by one from the softmax of the keep logits over the
tokens not yet picked (Plackett-Luce). Sampling it is the Gumbel-top-k trick; its log-probability is exact and cheap
(a reverse cumulative log-sum-exp), which is what PPO's ratio needs; its mode is the top `k` logits. `k` may differ
per row (an adaptive budget): picks are then right-padded with -1, and padded picks have log-probability and
entropy 0.
"""

import torch


class PlackettLuce:
    """
    Ordered picks of `num_picks` distinct tokens from `logits` (`[batch, tokens]`, `-inf` = unavailable), as
    `torch.distributions` objects are used: `sample`, `mode`, `log_prob`, `entropy`. `num_picks` is an int or a
    `[batch]` tensor (picks per row). Log-probabilities and entropies are per pick (`[batch, max picks]`): PPO takes
    its ratio per pick, and `.sum(-1)` gives the selection's.
    """

    def __init__(self, logits: torch.Tensor, num_picks: int | torch.Tensor):
        available = torch.isfinite(logits).sum(1)
        counts = torch.as_tensor(num_picks, device=logits.device).expand(len(logits))
        bad = ((counts < 1) | (counts > available)).nonzero()
        if len(bad):
            row = int(bad[0, 0])
            raise ValueError(f"Cannot pick {int(counts[row])} of {int(available[row])} available tokens (row {row}).")
        # Unavailable tokens get a finite, negligible logit: padded picks then never meet -inf - -inf (NaN gradients).
        self.logits = logits.float().masked_fill(~torch.isfinite(logits), -1e9)
        self.available = torch.isfinite(logits)
        self.counts = counts
        self.width = int(counts.max())
        self.valid = torch.arange(self.width, device=logits.device) < counts[:, None]

    def _pad(self, picks: torch.Tensor) -> torch.Tensor:
        return picks.masked_fill(~self.valid, -1)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """`[batch, max picks]` ordered picks drawn from the distribution (Gumbel-top-k), -1 past a row's count."""
        uniform = torch.rand(self.logits.shape, generator=generator, device=self.logits.device).clamp_(1e-20, 1.0)
        perturbed = (self.logits - torch.log(-torch.log(uniform))).masked_fill(~self.available, -torch.inf)
        return self._pad(perturbed.topk(self.width, dim=-1).indices)

    def mode(self) -> torch.Tensor:
        """`[batch, max picks]` the most likely ordered picks: the top logits, highest first; -1 past a row's count."""
        return self._pad(self.logits.masked_fill(~self.available, -torch.inf).topk(self.width, dim=-1).indices)

    def _ordered(self, picks: torch.Tensor) -> torch.Tensor:
        """The logits reordered as [picks in order, then every other token]: pick i chooses among positions i..end."""
        batch, tokens = self.logits.shape
        valid = picks >= 0
        # Sort key: a pick's rank, every other token after all picks in token order (a spare column takes padding).
        key = torch.arange(tokens + 1, device=picks.device).expand(batch, -1) + picks.shape[1]
        rank = torch.arange(picks.shape[1], device=picks.device).expand(batch, -1)
        key = key.scatter(1, picks.masked_fill(~valid, tokens), rank.masked_fill(~valid, 2 * tokens + picks.shape[1]))
        order = key[:, :tokens].argsort(dim=1)
        return self.logits.gather(1, order)

    def _check(self, picks: torch.Tensor) -> torch.Tensor:
        if picks.shape[1] != self.width or bool(((picks >= 0) != self.valid).any()):
            raise ValueError(f"Picks of shape {tuple(picks.shape)} do not match {self.counts.tolist()} picks per row.")
        return picks

    def log_prob(self, picks: torch.Tensor) -> torch.Tensor:
        """`[batch, max picks]` log-probability of each pick given the earlier ones (0 for padding)."""
        ordered = self._ordered(self._check(picks))
        normalisers = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)[:, : self.width]
        return (ordered[:, : self.width] - normalisers) * self.valid

    def entropy(self, picks: torch.Tensor) -> torch.Tensor:
        """
        `[batch, max picks]` entropy of each pick's distribution given the earlier `picks` (0 for padding). Summed,
        its expectation over sampled picks is the exact entropy of the whole ordered selection (chain rule).
        """
        ordered = self._ordered(self._check(picks))
        shift = ordered.max(dim=1, keepdim=True).values
        weights = (ordered - shift).exp()  # 0 for unavailable tokens
        # Pick i draws from positions i..end: H_i = log Z_i - E[logit], from reverse cumulative sums.
        # Clamped: past a row's picks no token may be left (mass 0), and log(0)'s gradient would be NaN.
        mass = weights.flip(1).cumsum(1).flip(1)[:, : self.width].clamp(min=torch.finfo(weights.dtype).tiny)
        expected_logit = (weights * ordered).flip(1).cumsum(1).flip(1)[:, : self.width] / mass
        return (mass.log() + shift - expected_logit) * self.valid
