"""Wall-clock prefill and per-token decode latency of a (pruning) LLaVA: medians of repeated calls, with their spread."""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache


@dataclass
class Timing:
    """Seconds per call over repeated calls after a warm-up: the `median` and the spread (`low`, `high`)."""

    median: float
    low: float
    high: float

    def speedup_over(self, reference: "Timing") -> str:
        """`reference`'s median over this one's, marked "within noise" when the two spreads overlap."""
        if self is reference:
            return "reference"
        if self.low <= reference.high and reference.low <= self.high:
            return f"{reference.median / self.median:.2f}x (within noise)"
        return f"{reference.median / self.median:.2f}x"

    def milliseconds(self) -> str:
        return f"{1000 * self.median:.2f} [{1000 * self.low:.2f}-{1000 * self.high:.2f}]"


def synchronize() -> None:
    """Waits for the GPU's queued work, so that a call's time includes it (CUDA runs asynchronously)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> Timing:
    """Times `repeats` calls of `fn` after `warmup` untimed ones, each until the GPU (if any) is done."""
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        seconds.append(time.perf_counter() - start)
    return Timing(statistics.median(seconds), min(seconds), max(seconds))


@torch.no_grad()
def prefill_and_decode_latency(model, inputs: dict, repeats: int = 7, **pruning_kwargs) -> dict[str, Timing]:
    """
    `prefill`: one forward of the whole prompt that fills a KV cache (the selection included, with
    `pruning_kwargs` such as `keep_ratio` for a TPRL model); `decode`: one new token on that prefilled cache, timed
    on its own (the cache is cropped back after each step, so every step sees the same cache).
    """

    def prefill():
        cache = DynamicCache(config=model.config.get_text_config())
        return model(**inputs, past_key_values=cache, use_cache=True, logits_to_keep=1, **pruning_kwargs)

    timings = {"prefill": time_calls(prefill, repeats)}
    output = prefill()
    cache = output.past_key_values
    mask = getattr(output, "attention_mask", None)
    mask = inputs["attention_mask"] if mask is None else mask  # the pruned sequence's, after pruning
    step_mask = torch.cat([mask, mask.new_ones(len(mask), 1)], dim=1)
    position = mask.sum(1, keepdim=True)  # the new token's position, as generate derives it
    token = output.logits[:, -1].argmax(-1, keepdim=True)

    def decode():
        model(input_ids=token, attention_mask=step_mask, position_ids=position, past_key_values=cache, use_cache=True)
        cache.crop(-1)  # drop the step's token again

    timings["decode"] = time_calls(decode, repeats)
    return timings
