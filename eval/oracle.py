"""The digit-world oracle: keeps the patches under the digits the question is about, then fills the budget."""

import torch

from tprl_digit_world import relevant_placements
from tprl_digit_world.canvas import CANVAS_SIZE, patch_indices


def oracle_indices(examples: list[dict], num_kept: int, patch_size: int) -> torch.LongTensor:
    """`[len(examples), num_kept]` indices: the named digits' patches, then the other digits', then background."""
    total = (CANVAS_SIZE // patch_size) ** 2
    rows = []
    for example in examples:
        relevant = relevant_placements(example["question"], example["layout"])
        ranked = [i for item in relevant for i in patch_indices(item.box, patch_size)]
        ranked += [
            i for item in example["layout"] if item not in relevant for i in patch_indices(item.box, patch_size)
        ]
        seen = set(ranked)
        ranked += [i for i in range(total) if i not in seen]
        rows.append(sorted(ranked[:num_kept]))
    return torch.tensor(rows, dtype=torch.long)
