"""The digit-world oracle: keeps the patches under the digits the question is about, then fills the budget."""

import torch
from torch import nn

from tprl_digit_world import relevant_placements
from tprl_digit_world.canvas import patch_indices
from tprl_digit_world.processor import base_view_tokens, canvas_token_grid, token_patch_size


def oracle_indices(examples: list[dict], num_kept: int | list[int], processor) -> torch.LongTensor:
    """`[len(examples), max(num_kept)]` indices into each canvas's visual tokens, increasing, right-padded with -1:
    the named digits' patches, then the other digits', then the rest (a tiled base's base view before its background
    tiles). `num_kept`: one budget, or one per example."""
    patch_size = token_patch_size(processor)
    budgets = [num_kept] * len(examples) if isinstance(num_kept, int) else list(num_kept)
    rows = []
    for example, budget in zip(examples, budgets):
        height, width = example["image"].shape[:2]
        tokens = canvas_token_grid(processor, (height, width)).flatten().tolist()
        relevant = relevant_placements(example["question"], example["layout"])
        ranked = [tokens[i] for item in relevant for i in patch_indices(item.box, patch_size, width)]
        ranked += [
            tokens[i]
            for item in example["layout"]
            if item not in relevant
            for i in patch_indices(item.box, patch_size, width)
        ]
        ranked += list(range(base_view_tokens(processor))) + tokens
        rows.append(torch.tensor(sorted(list(dict.fromkeys(ranked))[:budget])))
    return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=-1)
