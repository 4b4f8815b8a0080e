"""Prefill time and FLOPs, full vs. pruned, measured in one run (figures, not a timed test).

    python benchmarks/prefill.py [--repeats 3] [--skip_proxy]

(a) the tiny embedded-default LLaVA architecture, whole model (vision tower + pruner + LM), batch 16;
(b) a CPU proxy of LLaVA-1.5-7B's language model (hidden 4096, FFN 11008, 32 heads, 2 decoder layers, bf16) on
    576 visual + 64 text tokens vs. the kept visual tokens + 64 text tokens;
(c) the pruner's own share (autoencoder + policy, 3 steps) at LLaVA-1.5-7B shapes vs. the 32-layer full prefill.
"""

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaModel, LlavaConfig

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration
from modeling_tprl.pruning_tprl import TPRLPruner
from tprl_digit_world import DigitWorld, build_processor
from tprl_digit_world.batching import DigitWorldCollator
from tprl_train.train_base import build_tiny_llava


KEEP_RATIOS = (1 / 3, 2 / 9, 1 / 9)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def layer_flops(n: int, d: int, m: int) -> int:
    """FastV's per-layer count with LLaMA's three-matrix FFN, 4nd^2 + 2n^2d + 3ndm multiply-adds, as FLOPs (x2)."""
    return 2 * (4 * n * d * d + 2 * n * n * d + 3 * n * d * m)


@torch.no_grad()
def tiny(repeats: int) -> None:
    processor = build_processor()
    base = build_tiny_llava(processor)  # the embedded default's architecture; timing does not depend on weights
    model = TPRLForConditionalGeneration.from_base(base, policy_hidden_size=64).eval()
    world, rng = DigitWorld("test"), np.random.default_rng(0)
    batch = DigitWorldCollator(processor)([world.sample(rng) for _ in range(16)])
    print("(a) tiny LLaVA, batch 16, whole prefill (vision tower + pruner + LM)")
    print("| kept | time ms | speed-up | measured GFLOPs | FLOPs ratio |")
    print("|---|---|---|---|---|")
    full_time = best_time(lambda: model(**batch, keep_ratio=1.0), repeats)
    full_flops = count_flops(lambda: model(**batch, keep_ratio=1.0))
    print(f"| 144 | {1000 * full_time:.1f} | 1.00x | {full_flops / 1e9:.2f} | 100% |")
    for ratio in KEEP_RATIOS:
        kept = model.num_kept_tokens(keep_ratio=ratio)
        seconds = best_time(lambda r=ratio: model(**batch, keep_ratio=r), repeats)
        flops = count_flops(lambda r=ratio: model(**batch, keep_ratio=r))
        print(
            f"| {kept} | {1000 * seconds:.1f} | {full_time / seconds:.2f}x | {flops / 1e9:.2f} | "
            f"{100 * flops / full_flops:.1f}% |"
        )


@torch.no_grad()
def proxy(repeats: int) -> None:
    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=2
    )
    lm = LlamaModel(config).to(torch.bfloat16).eval()
    text, visual = 64, 576
    print("\n(b) CPU proxy: LLaVA-1.5-7B LM widths, 2 decoder layers, bf16, batch 1, 64 text tokens")
    print("| visual kept | tokens | time s | speed-up | measured GFLOPs | analytic GFLOPs | FLOPs ratio |")
    print("|---|---|---|---|---|---|---|")
    full_time = full_flops = None
    for kept in (visual, 192, 128, 64):
        n = kept + text
        embeds = torch.randn(1, n, 4096, dtype=torch.bfloat16)
        mask = torch.ones(1, n, dtype=torch.long)
        run = lambda e=embeds, a=mask: lm(inputs_embeds=e, attention_mask=a, use_cache=False)  # noqa: E731
        seconds = best_time(run, repeats)
        flops = count_flops(run)
        analytic = 2 * layer_flops(n, 4096, 11008)
        full_time = full_time or seconds
        full_flops = full_flops or flops
        print(
            f"| {kept} | {n} | {seconds:.2f} | {full_time / seconds:.2f}x | {flops / 1e9:.0f} | "
            f"{analytic / 1e9:.0f} | {100 * flops / full_flops:.1f}% |"
        )


@torch.no_grad()
def pruner_share() -> None:
    base = LlavaConfig(text_config=LlamaConfig(hidden_size=4096).to_dict()).to_dict()
    config = TPRLConfig(base_config=base, autoencoder_latent_size=256)
    pruner = TPRLPruner(config).eval()
    tokens = torch.randn(1, 576, 4096)
    question = torch.randn(1, 64, 4096)
    flops = count_flops(lambda: pruner.select(tokens, question, torch.ones(1, 64, dtype=torch.bool), 192))
    full = 32 * layer_flops(576 + 64, 4096, 11008)
    print("\n(c) pruner (autoencoder encoder + 3-step policy, width 256, 2 layers) at LLaVA-1.5-7B shapes")
    print(f"pruner {flops / 1e9:.2f} GFLOPs; full 32-layer prefill (576 + 64 tokens) {full / 1e12:.2f} TFLOPs; ")
    print(f"share {100 * flops / full:.3f}% of full-prefill FLOPs (target <= 1%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_proxy", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    tiny(args.repeats)
    if not args.skip_proxy:
        proxy(args.repeats)
    pruner_share()


if __name__ == "__main__":
    main()
