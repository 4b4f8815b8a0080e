"""The policy's distribution over exact-budget selections: keep `k` of the still-kept tokens, without replacement.

A step's action is an *ordered* pick of `k` distinct tokens drawn one by one from the softmax of the keep logits
over the tokens not yet picked (Plackett-Luce). Sampling it is the Gumbel-top-k trick; its log-probability is
exact and cheap (a reverse cumulative log-sum-exp), which is what PPO's ratio needs. Always picking the top `k`
logits, as the pruner does at inference, is this distribution's mode.
"""

import torch


def sample_selection(logits: torch.Tensor, num_kept: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draws `[batch, num_kept]` ordered picks from `logits` (`[batch, tokens]`, `-inf` = unavailable)."""
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(1e-20, 1.0)
    gumbel = -torch.log(-torch.log(uniform))
    return (logits + gumbel).topk(num_kept, dim=-1).indices


def _ordered(logits: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """The logits reordered as [picks in order, then every other token]; pick i chooses among positions i..end."""
    picked_first = torch.zeros_like(logits, dtype=torch.bool).scatter(1, picks, True)
    rest = torch.sort(picked_first.int(), dim=1, descending=True, stable=True).indices[:, picks.shape[1] :]
    return logits.gather(1, torch.cat([picks, rest], dim=1))


def pick_log_probs(logits: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """`[batch, k]` log-probability of each pick given the earlier ones; they sum to the selection's."""
    ordered = _ordered(logits.float(), picks)
    normalisers = torch.logcumsumexp(ordered.flip(1), dim=1).flip(1)[:, : picks.shape[1]]
    return ordered[:, : picks.shape[1]] - normalisers


def selection_log_prob(logits: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """Exact log-probability `[batch]` of the ordered picks `[batch, k]` under the Plackett-Luce policy."""
    return pick_log_probs(logits, picks).sum(1)


def selection_entropy(logits: torch.Tensor, picks: torch.Tensor) -> torch.Tensor:
    """
    Entropy estimate `[batch]`: the sum over picks of the entropy of each pick's distribution given the earlier
    picks. Its expectation over sampled picks is the exact entropy of the whole ordered selection (chain rule).
    """
    ordered = _ordered(logits.float(), picks)
    shift = ordered.max(dim=1, keepdim=True).values
    weights = (ordered - shift).exp()  # 0 for unavailable tokens
    weighted_logits = torch.where(weights > 0, weights * ordered, torch.zeros_like(weights))
    # Pick i draws from positions i..end: H_i = log Z_i - E[logit], from reverse cumulative sums.
    mass = weights.flip(1).cumsum(1).flip(1)[:, : picks.shape[1]]
    expected_logit = weighted_logits.flip(1).cumsum(1).flip(1)[:, : picks.shape[1]] / mass
    return (mass.log() + shift - expected_logit).sum(1)
