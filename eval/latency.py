"""Wall-clock prefill and per-token decode latency of a (pruning) LLaVA, full vs. pruned, measured in one run."""

import time
from collections.abc import Callable

import torch


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Best of `repeats` timed calls after one warm-up call, in seconds (the least disturbed by other work)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def prefill_and_decode_latency(model, inputs: dict, new_tokens: int = 16, repeats: int = 3, **pruning_kwargs) -> dict:
    """Seconds of one prefill (`generate` of 1 token) and of each further greedy token (from `generate` of N tokens).

    `pruning_kwargs` (`keep_ratio`, `num_kept_tokens`) reach the model's `generate`; decoding after a pruned prefill
    is faster only through the shorter KV cache.
    """
    if new_tokens < 2:
        raise ValueError("new_tokens must be at least 2 to time decoding.")

    def generate(count: int):
        return model.generate(**inputs, max_new_tokens=count, min_new_tokens=count, do_sample=False, **pruning_kwargs)

    prefill = best_time(lambda: generate(1), repeats)
    total = best_time(lambda: generate(new_tokens), repeats)
    return {"prefill_s": prefill, "decode_s_per_token": max(0.0, total - prefill) / (new_tokens - 1)}
