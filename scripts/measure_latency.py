"""Prefill and decode time and FLOPs, full vs. pruned, measured in one run (figures, not a timed test).

    python scripts/measure_latency.py [--repeats 3] [--skip_proxy]

Every time is the median of `--repeats` calls after two warm-up calls, with the fastest and slowest beside it; a
speed-up whose two spreads overlap is marked "within noise". Decode steps are timed on their own, on a prefilled KV
cache that is cropped back after each step.
(a) the tiny digit-world LLaVA (the embedded default when shipped, else its architecture with random weights), whole
    model (vision tower + pruner + LM), batch 16: prefill, one decode step, measured FLOPs;
(b) a CPU proxy of LLaVA-1.5-7B's language model (its widths, 2 decoder layers, bf16), batch 1: prefill of 576 visual
    + 64 text tokens vs. the kept visual tokens + 64 text tokens, and a decode step on each KV cache;
(c) the pruner's own share (autoencoder + 3 policy steps) at LLaVA-1.5-7B shapes vs. the full prefill;
(d) with `--llava_7b`: the whole TPRL model at LLaVA-1.5-7B shapes (random weights, bf16, batch 1, 64 text tokens) on
    `--device`, prefill and a decode step at 576 / 192 / 128 / 64 kept (`--layers` shortens it for a CPU check).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from transformers import DynamicCache, LlamaConfig, LlamaModel, LlavaForConditionalGeneration

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import EMBEDDED_BASE_PATH, DigitWorld, build_processor, build_tiny_llava
from tprl_digit_world.batching import DigitWorldCollator
from tprl_eval.flops import language_model_flops, load_configs, measured_flops, prefill_flops, proxy_configs
from tprl_eval.latency import prefill_and_decode_latency, time_calls


KEEP_RATIOS = (1 / 3, 2 / 9, 1 / 9)


@torch.no_grad()
def tiny(repeats: int) -> None:
    processor = build_processor()
    shipped = Path(EMBEDDED_BASE_PATH, "config.json").exists()
    base = EMBEDDED_BASE_PATH if shipped else build_tiny_llava(processor)  # timing does not depend on weights
    model = TPRLForConditionalGeneration.from_base(base, policy_hidden_size=64).eval()
    world, rng = DigitWorld("test"), np.random.default_rng(0)
    batch = DigitWorldCollator(processor)([world.sample(rng) for _ in range(16)])
    print(f"(a) tiny LLaVA ({'embedded default' if shipped else 'random weights'}), batch 16; ms: median [min-max]")
    print(
        "| kept | prefill ms | prefill speed-up | decode ms/token | decode speed-up | measured GFLOPs | FLOPs ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    full = None
    for ratio in (1.0, *KEEP_RATIOS):
        latency = prefill_and_decode_latency(model, batch, repeats=repeats, keep_ratio=ratio)
        flops = measured_flops(lambda r=ratio: model(**batch, keep_ratio=r, logits_to_keep=1))
        full = full or {**latency, "flops": flops}
        print(
            f"| {model.num_kept_tokens(keep_ratio=ratio)} | {latency['prefill'].milliseconds()} | "
            f"{latency['prefill'].speedup_over(full['prefill'])} | {latency['decode'].milliseconds()} | "
            f"{latency['decode'].speedup_over(full['decode'])} | {flops / 1e9:.2f} | {100 * flops / full['flops']:.1f}% |"
        )


@torch.no_grad()
def proxy(repeats: int) -> None:
    config, _ = load_configs("llava-1.5-7b")
    text_config = config.text_config
    text_config.num_hidden_layers = 2
    lm = LlamaModel(LlamaConfig(**text_config.to_dict())).to(torch.bfloat16).eval()
    text = 64
    print(
        f"\n(b) CPU proxy: LLaVA-1.5-7B LM widths, 2 decoder layers, bf16, batch 1, {text} text tokens; ms: median [min-max]"
    )
    print("| visual kept | tokens | prefill ms | speed-up | decode ms/token | speed-up | measured GFLOPs | analytic |")
    print("|---|---|---|---|---|---|---|---|")
    full = None
    step = torch.randn(1, 1, text_config.hidden_size, dtype=torch.bfloat16)
    for kept in (576, 192, 128, 64):
        n = kept + text
        embeds = torch.randn(1, n, text_config.hidden_size, dtype=torch.bfloat16)

        def prefill(e=embeds):
            return lm(inputs_embeds=e, use_cache=True, past_key_values=DynamicCache(config=text_config))

        cache = prefill().past_key_values

        def decode(cache=cache):  # one token on the prefilled cache, cropped back after it
            lm(inputs_embeds=step, past_key_values=cache, use_cache=True)
            cache.crop(-1)

        latency = {"prefill": time_calls(prefill, repeats), "decode": time_calls(decode, repeats)}
        flops = measured_flops(lambda e=embeds: lm(inputs_embeds=e, use_cache=False))
        full = full or latency
        print(
            f"| {kept} | {n} | {latency['prefill'].milliseconds()} | {latency['prefill'].speedup_over(full['prefill'])} | "
            f"{latency['decode'].milliseconds()} | {latency['decode'].speedup_over(full['decode'])} | "
            f"{flops / 1e9:.0f} | {language_model_flops(config, n) / 1e9:.0f} |"
        )


def pruner_share() -> None:
    config, tprl_config = load_configs("llava-1.5-7b")
    full = prefill_flops(config, 576, 64, method="full")
    pruned = prefill_flops(config, 192, 64, method="tprl", tprl_config=tprl_config)
    print(
        f"\n(c) TPRL pruner at LLaVA-1.5-7B shapes (latent {tprl_config.autoencoder_latent_size}, policy width "
        f"{tprl_config.policy_hidden_size}, {tprl_config.policy_num_layers} layers, {tprl_config.num_pruning_steps} "
        f"steps): {pruned.selection / 1e9:.2f} GFLOPs, {100 * pruned.selection / full.total:.3f}% of the full "
        f"prefill ({full.total / 1e12:.2f} TFLOPs, 576 + 64 tokens); `tprl-flops` has the full table."
    )


@torch.no_grad()
def llava_7b(repeats: int, device: str, num_layers: int | None) -> None:
    config, tprl_config = load_configs("llava-1.5-7b")
    if num_layers is not None:
        config, tprl_config = proxy_configs(config, tprl_config, num_layers)
    depth = f"{config.text_config.num_hidden_layers} LM layers"
    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16)
        base = LlavaForConditionalGeneration(config)  # random weights: timing does not depend on them
        torch.set_default_dtype(torch.float32)
    fields = ("autoencoder_latent_size", "policy_hidden_size", "policy_num_layers", "policy_num_heads")
    model = TPRLForConditionalGeneration.from_base(base, **{name: getattr(tprl_config, name) for name in fields})
    model = model.to(device=device, dtype=torch.bfloat16).eval()
    text = 64
    ids = torch.full((1, text + config.image_seq_length), 1, dtype=torch.long, device=device)
    ids[0, 1 : 1 + config.image_seq_length] = config.image_token_id
    size = config.vision_config.image_size
    inputs = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": torch.zeros(1, 3, size, size, dtype=torch.bfloat16, device=device),
    }
    print(
        f"\n(d) TPRL at LLaVA-1.5-7B shapes ({depth}, random weights, bf16) on {device}, batch 1, {text} text tokens"
    )
    print("| visual kept | prefill ms | speed-up | decode ms/token | speed-up | analytic prefill TFLOPs |")
    print("|---|---|---|---|---|---|")
    full = None
    for kept in (576, 192, 128, 64):
        selection = {"keep_ratio": 1.0} if kept == 576 else {"num_kept_tokens": kept}
        latency = prefill_and_decode_latency(model, inputs, repeats=repeats, **selection)
        method = "full" if kept == 576 else "tprl"
        flops = prefill_flops(config, kept, text, method=method, tprl_config=tprl_config).total
        full = full or latency
        print(
            f"| {kept} | {latency['prefill'].milliseconds()} | {latency['prefill'].speedup_over(full['prefill'])} | "
            f"{latency['decode'].milliseconds()} | {latency['decode'].speedup_over(full['decode'])} | "
            f"{flops / 1e12:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7, help="Timed calls per figure, after 2 warm-up calls.")
    parser.add_argument("--skip_proxy", action="store_true")
    parser.add_argument("--skip_tiny", action="store_true")
    parser.add_argument("--llava_7b", action="store_true", help="(d): the whole model at LLaVA-1.5-7B shapes.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=None, help="(d) with this many layers (default: all).")
    args = parser.parse_args()
    torch.manual_seed(0)
    if not args.skip_tiny:
        tiny(args.repeats)
    if not args.skip_proxy:
        proxy(args.repeats)
    pruner_share()
    if args.llava_7b:
        llava_7b(args.repeats, args.device, args.layers)


if __name__ == "__main__":
    main()
