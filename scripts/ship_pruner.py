"""Refreshes a shipped trained pruner (`digit_world/tiny_llava_tprl/`, `digit_world/tiny_qwen2_5_vl_tprl/`,
`digit_world/tiny_llava_next_tprl/`) from a main-job checkpoint.

    tprl-train --config train/configs/digit_world.yaml
    python scripts/ship_pruner.py --checkpoint outputs/tprl_digit_world/budget/final \
        --results outputs/tprl_digit_world/eval/results.json
    tprl-train --config train/configs/digit_world_qwen2_5_vl.yaml
    python scripts/ship_pruner.py --checkpoint outputs/tprl_digit_world_qwen2_5_vl/budget/final \
        --results outputs/tprl_digit_world_qwen2_5_vl/eval/results.json --target digit_world/tiny_qwen2_5_vl_tprl
    tprl-train --config train/configs/digit_world_llava_next.yaml
    python scripts/ship_pruner.py --checkpoint outputs/tprl_digit_world_llava_next/ppo/final \
        --results outputs/tprl_digit_world_llava_next/eval/results.json --target digit_world/tiny_llava_next_tprl

Copies the pruner-only checkpoint's config, weights, generation config and processor (not its code files: the
package that ships it has the code), names its shipped tiny base relative to itself ("../tiny_llava"), adds the
evaluation's results.json, then loads the shipped copy and checks that it answers as the source does.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # scripts/ is not installed

from modeling_tprl import TPRLForConditionalGeneration  # noqa: E402
from modeling_tprl.processing_tprl import load_processor  # noqa: E402
from tprl_digit_world import EMBEDDED_TPRL_PATH, DigitWorld  # noqa: E402
from tprl_digit_world.batching import DigitWorldCollator  # noqa: E402
from tprl_digit_world.processor import canvas_shapes_of  # noqa: E402


SHIPPED_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


def ship(checkpoint: Path, results: Path, target: Path) -> None:
    config = json.loads((checkpoint / "config.json").read_text())
    if config.get("model_type") != "tprl" or not config.get("pruner_only"):
        raise ValueError(f"{checkpoint} is not a pruner-only TPRL checkpoint (the main job's budget/final is one).")
    base = Path(config["base_model_name_or_path"]).name
    if not (target.parent / base / "config.json").exists():
        raise ValueError(f"{checkpoint}'s base {base!r} is not a tiny base shipped beside {target}.")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in SHIPPED_FILES:
        shutil.copy2(checkpoint / name, target / name)
    config["base_model_name_or_path"] = f"../{base}"
    config["base_config"]["_name_or_path"] = f"../{base}"  # not the machine's path the job loaded it from
    config.pop("auto_map", None)  # no code files here: the installed package is the code
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copy2(results, target / "results.json")

    source, shipped = (TPRLForConditionalGeneration.from_pretrained(path) for path in (checkpoint, target))
    processor = load_processor(target)
    world = DigitWorld("test", canvas_shapes_of(processor))
    examples = [world.sample(np.random.default_rng(seed)) for seed in range(16)]
    inputs = DigitWorldCollator(processor)(examples)
    budgets = [{"keep_ratio": 1 / 9}]
    if source.config.adaptive_budgets:
        adaptive_target = sum(source.config.adaptive_keep_ratio_range) / 2  # within its measured operating points
        budgets.append({"keep_ratio": "adaptive", "target_keep_ratio": adaptive_target})
    with torch.no_grad():
        for budget in budgets:
            expected, got = (model.generate(**inputs, max_new_tokens=3, **budget) for model in (source, shipped))
            if not torch.equal(expected, got):
                raise RuntimeError(f"The shipped pruner answers differently from {checkpoint} at {budget}.")
    print(
        f"Shipped {checkpoint} to {target} ({(target / 'model.safetensors').stat().st_size / 1e6:.2f} MB of weights)."
    )


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("outputs/tprl_digit_world/budget/final"))
    parser.add_argument("--results", type=Path, default=Path("outputs/tprl_digit_world/eval/results.json"))
    parser.add_argument("--target", type=Path, default=Path(EMBEDDED_TPRL_PATH))
    args = parser.parse_args()
    ship(args.checkpoint, args.results, args.target)


if __name__ == "__main__":
    main()
