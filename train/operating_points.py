"""The adaptive policy's operating points: at each compute weight, the share of visual tokens it keeps on average.

Measured on training questions once PPO is done and stored in the config (`adaptive_operating_points`), they turn a
user's `target_keep_ratio` into the compute weight the policy reads (`TPRLConfig.compute_weight_for`).
"""

import math

import datasets
import torch

from modeling_tprl import TPRLForConditionalGeneration
from tprl_eval.sharding import map_batches

from .budget import policy_input_batch


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
    """`[compute_weight, mean keep ratio]` of the policy's budget choices (its mode) on `examples`, per weight; under
    `accelerate launch` each process measures a share of the batches."""
    policy, budgets = model.pruner.policy, torch.tensor(model.config.adaptive_budgets, dtype=torch.float)

    def choose(rows: list[int], index: int) -> list[list[float]]:
        _, features, inputs = policy_input_batch(model, [examples[i] for i in rows], collator)
        per_weight = []
        for weight in compute_weights:
            prices = torch.full((len(features),), weight, device=model.device)
            per_weight.append(budgets[policy.budget_logits(inputs, prices).argmax(-1).cpu()])
        return torch.stack(per_weight, 1).tolist()  # per question, its budget at each weight

    chosen = map_batches(
        choose, list(range(len(examples))), batch_size, seed=0, description="adaptive operating points"
    )
    total = len(examples) * model.num_visual_tokens
    return [
        [weight, round(sum(row[column] for row in chosen) / total, 5)] for column, weight in enumerate(compute_weights)
    ]
