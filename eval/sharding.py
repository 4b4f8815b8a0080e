"""Batches spread over the processes of `accelerate launch`, with results that do not depend on how many there are."""

from collections.abc import Callable

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm


def map_batches(
    fn: Callable[[list, int], list], items: list, batch_size: int, seed: int, description: str | None = None
) -> list:
    """`fn(batch, batch_index)` -> one result per item, over fixed batches of `items`; results in `items`' order.

    Each process takes a share of the batches (one process: all of them). Batches are the same whatever the process
    count, and each is seeded with `seed + batch_index` before `fn` runs, so random selections and padding are too:
    one process and N processes give identical results. Every process gets the gathered results. `description`
    labels the main process's progress bar.
    """
    state = PartialState()
    starts = list(range(0, len(items), batch_size))
    results = {}
    with state.split_between_processes(list(range(len(starts)))) as mine:
        for index in tqdm(mine, desc=description, disable=description is None or not state.is_main_process):
            torch.manual_seed(seed + index)
            results[index] = fn(items[starts[index] : starts[index] + batch_size], index)
    shards = gather_object([results]) if state.num_processes > 1 else [results]
    merged = {index: result for shard in shards for index, result in shard.items()}
    return [result for index in range(len(starts)) for result in merged[index]]
