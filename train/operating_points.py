"""The adaptive policy's operating points: at each compute weight, the share of visual tokens it keeps on average.

Measured on training questions once PPO is done and stored in the config (`adaptive_operating_points`), they turn a
user's `target_keep_ratio` into the compute weight the policy reads (`TPRLConfig.compute_weight_for`).
"""

import math

import datasets
import torch

from modeling_tprl import TPRLForConditionalGeneration

from .budget import policy_input_batches


def compute_weight_grid(compute_weights: list[float], num_points: int = 13) -> list[float]:
    """`num_points` compute weights evenly spaced in log space over the trained range, the trained ones included."""
    low, high = math.log(min(compute_weights)), math.log(max(compute_weights))
    grid = [math.exp(low + (high - low) * i / (num_points - 1)) for i in range(num_points)] if high > low else []
    return sorted({float(f"{weight:.6g}") for weight in [*grid, *compute_weights]})


@torch.no_grad()
def measure_operating_points(
    model: TPRLForConditionalGeneration,
    examples: datasets.Dataset,
    collator,
    compute_weights: list[float],
    batch_size: int = 64,
) -> list[list[float]]:
    """`[compute_weight, mean keep ratio]` of the policy's budget choices (its mode) on `examples`, per weight."""
    policy, budgets = model.pruner.policy, torch.tensor(model.config.adaptive_budgets, dtype=torch.float)
    kept = {weight: 0.0 for weight in compute_weights}
    for _, features, inputs in policy_input_batches(
        model, examples, collator, batch_size, "adaptive operating points"
    ):
        for weight in compute_weights:
            prices = torch.full((len(features),), weight, device=model.device)
            choices = policy.budget_logits(inputs, prices).argmax(-1).cpu()
            kept[weight] += float(budgets[choices].sum())
    total = len(examples) * model.num_visual_tokens
    return [[weight, round(kept[weight] / total, 5)] for weight in compute_weights]
