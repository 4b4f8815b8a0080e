"""The policy's distribution over exact-budget selections: keep `k` of the still-kept tokens, without replacement.

An action is an *ordered* pick of `k` distinct tokens drawn one by one from the softmax of the keep logits over the
tokens not yet picked (Plackett-Luce). Sampling it is the Gumbel-top-k trick; its log-probability is exact and cheap
(a reverse cumulative log-sum-exp), which is what PPO's ratio needs; its mode is the top `k` logits.
"""

import torch


class PlackettLuce:
    """
    Ordered picks of `num_picks` distinct tokens from `logits` (`[batch, tokens]`, `-inf` = unavailable), as
    `torch.distributions` objects are used: `sample`, `mode`, `log_prob`, `entropy`. Log-probabilities and entropies
    are per pick (`[batch, num_picks]`): PPO takes its ratio per pick, and `.sum(-1)` gives the selection's.
    """

    def __init__(self, logits: torch.Tensor, num_picks: int):
        available = int(torch.isfinite(logits).sum(1).min())
        if not 1 <= num_picks <= available:
            raise ValueError(f"Cannot pick {num_picks} of {available} available tokens.")
        self.logits = logits.float()
        self.num_picks = num_picks

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """`[batch, num_picks]` ordered picks drawn from the distribution (Gumbel-top-k)."""
        uniform = torch.rand(self.logits.shape, generator=generator, device=self.logits.device).clamp_(1e-20, 1.0)
        return (self.logits - torch.log(-torch.log(uniform))).topk(self.num_picks, dim=-1).indices

    def mode(self) -> torch.Tensor:
        """`[batch, num_picks]` the most likely ordered picks: the top logits, highest first."""
        return self.logits.topk(self.num_picks, dim=-1).indices

    def _ordered(self, picks: torch.Tensor) -> torch.Tensor:
        """The logits reordered as [picks in order, then every other token]: pick i chooses among positions i..end."""
        picked_first = torch.zeros_like(self.logits, dtype=torch.bool).scatter(1, picks, True)
        rest = torch.sort(picked_first.int(), dim=1, descending=True, stable=True).indices[:, picks.shape[1] :]
        return self.logits.gather(1, torch.cat([picks, rest], dim=1))

    def log_prob(self, picks: torch.Tensor) -> torch.Tensor:
        """`[batch, num_picks]` log-probability of each pick given the earlier ones."""
        ordered = self._ordered(picks)
        normalisers = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)[:, : picks.shape[1]]
        return ordered[:, : picks.shape[1]] - normalisers

    def entropy(self, picks: torch.Tensor) -> torch.Tensor:
        """
        `[batch, num_picks]` entropy of each pick's distribution given the earlier `picks`. Summed, its expectation
        over sampled picks is the exact entropy of the whole ordered selection (chain rule).
        """
        ordered = self._ordered(picks)
        shift = ordered.max(dim=1, keepdim=True).values
        weights = (ordered - shift).exp()  # 0 for unavailable tokens
        # Unavailable tokens' -inf logits are zeroed before the product, or its gradient would be 0 x inf = NaN.
        weighted_logits = weights * ordered.masked_fill(weights == 0, 0.0)
        # Pick i draws from positions i..end: H_i = log Z_i - E[logit], from reverse cumulative sums.
        mass = weights.flip(1).cumsum(1).flip(1)[:, : picks.shape[1]]
        expected_logit = weighted_logits.flip(1).cumsum(1).flip(1)[:, : picks.shape[1]] / mass
        return mass.log() + shift - expected_logit
