"""Which of a tiled image's row newlines should a pruned image keep? Every training-free method and the oracle at
each budget, under each `layout_tokens` choice, on the tiled digit world's held-out questions (`eval/layout_tokens.py`).

    python scripts/measure_layout_tokens.py [--base digit_world/tiny_llava_next] [--num_examples 2000]

Prints one table (accuracy per method, budget and choice; the newlines kept) and writes the rows as JSON.
"""

import argparse
import json
from pathlib import Path

import torch

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.processing_tprl import load_processor
from tprl_digit_world import EMBEDDED_LLAVA_NEXT_PATH
from tprl_eval.layout_tokens import evaluate_layout_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=EMBEDDED_LLAVA_NEXT_PATH)
    parser.add_argument("--num_examples", type=int, default=2000)
    parser.add_argument("--methods", default="oracle,cls_attention,fastv,uniform,random")
    parser.add_argument("--keep_ratios", default="0.3333333333,0.2222222222,0.1111111111")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--output", default="outputs/layout_tokens.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(args.base).eval()
    ratios = [float(ratio) for ratio in args.keep_ratios.split(",")]
    results = evaluate_layout_tokens(
        model, load_processor(args.base), args.methods.split(","), ratios, args.num_examples, args.batch_size
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1))
    print(f"{'method':<14} {'kept':>5} | " + " | ".join(f"{c:>13}" for c in ("all", "rows", "none")))
    full = results["rows"][0]
    print(f"{'full':<14} {'100%':>5} | {full['accuracy'] * 100:>13.2f}")
    for start in range(1, len(results["rows"]), 3):
        group = results["rows"][start : start + 3]
        cells = " | ".join(f"{row['accuracy'] * 100:6.2f} ({row['newline_tokens']:4.1f})" for row in group)
        print(f"{group[0]['method']:<14} {group[0]['keep_ratio']:>5.0%} | {cells}")
    print("accuracy (%) on the held-out test questions; in brackets, the mean newline tokens kept")


if __name__ == "__main__":
    main()
