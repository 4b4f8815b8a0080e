"""Refreshes the shipped trained pruner (`digit_world/tiny_llava_tprl/`) from a main-job checkpoint.

    tprl-train --config train/configs/digit_world.yaml
    python scripts/ship_pruner.py --checkpoint outputs/tprl_digit_world/budget/final \
        --results outputs/tprl_digit_world/eval/results.json

Copies the pruner-only checkpoint's config, weights, generation config and processor (not its code files: the
package that ships it has the code), names the shipped tiny LLaVA as its base relative to itself ("../tiny_llava"),
adds the evaluation's results.json, then loads the shipped copy and checks that it answers as the source does.
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
from tprl_digit_world import EMBEDDED_TPRL_PATH, DigitWorld, build_processor  # noqa: E402
from tprl_digit_world.batching import DigitWorldCollator  # noqa: E402


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
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in SHIPPED_FILES:
        shutil.copy2(checkpoint / name, target / name)
    config["base_model_name_or_path"] = "../tiny_llava"
    config.pop("auto_map", None)  # no code files here: the installed package is the code
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copy2(results, target / "results.json")

    source, shipped = (TPRLForConditionalGeneration.from_pretrained(path) for path in (checkpoint, target))
    examples = [DigitWorld("test").sample(np.random.default_rng(seed)) for seed in range(16)]
    inputs = DigitWorldCollator(build_processor())(examples)
    with torch.no_grad():
        for keep_ratio in (1 / 9, "adaptive"):
            budget = {"keep_ratio": keep_ratio, "target_keep_ratio": 1 / 9} if keep_ratio == "adaptive" else {}
            budget = budget or {"keep_ratio": keep_ratio}
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
