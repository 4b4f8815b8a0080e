"""The digit world: the embedded default task, its tiny LLaVA, its tiny Qwen2.5-VL and (tiled) its tiny LLaVA-NeXT."""

from pathlib import Path

from .canvas import COLORS, QUESTION_TYPES, SPLITS, DigitPlacement, DigitWorld, relevant_placements
from .model import build_tiny_llava, build_tiny_llava_next, build_tiny_qwen2_5_vl
from .processor import (
    build_llava_next_processor,
    build_processor,
    build_qwen2_5_vl_processor,
    pixel_values_of,
    prompt_for,
    token_patch_size,
)


EMBEDDED_BASE_PATH = str(Path(__file__).parent / "tiny_llava")
"""The shipped, trained tiny LLaVA in llava-hf format: the default base of every command."""

EMBEDDED_TPRL_PATH = str(Path(__file__).parent / "tiny_llava_tprl")
"""A trained TPRL pruner of the embedded base, pruner-only (its base is `../tiny_llava`): the main job's
`budget/final` of seed 0, shipped by `scripts/ship_pruner.py` with its `results.json`."""

EMBEDDED_LLAVA_NEXT_PATH = str(Path(__file__).parent / "tiny_llava_next")
"""The shipped, trained tiny LLaVA-NeXT of the tiled digit world (`tprl-train-base --family llava_next`, started from
the tiny LLaVA): each canvas a base view and its tiles, packed with a newline after each row of tiles."""

EMBEDDED_LLAVA_NEXT_TPRL_PATH = str(Path(__file__).parent / "tiny_llava_next_tprl")
"""A trained TPRL pruner of the tiny LLaVA-NeXT, pruner-only (its base is `../tiny_llava_next`): the main job's
`ppo/final` of seed 0 (`train/configs/digit_world_llava_next.yaml`), shipped by `scripts/ship_pruner.py`."""

EMBEDDED_QWEN2_5_VL_PATH = str(Path(__file__).parent / "tiny_qwen2_5_vl")
"""The shipped, trained tiny Qwen2.5-VL (`tprl-train-base --family qwen2_5_vl`): the base of
`train/configs/digit_world_qwen2_5_vl.yaml`."""

EMBEDDED_QWEN2_5_VL_TPRL_PATH = str(Path(__file__).parent / "tiny_qwen2_5_vl_tprl")
"""A trained TPRL pruner of the tiny Qwen2.5-VL, pruner-only (its base is `../tiny_qwen2_5_vl`): that main job's
`budget/final` of seed 0, shipped by `scripts/ship_pruner.py` with its `results.json`."""


def require_embedded_base(name_or_path: str, option: str) -> None:
    """A clear error when a command defaults to the embedded base and its files are missing (a partial install)."""
    if name_or_path == EMBEDDED_BASE_PATH and not Path(EMBEDDED_BASE_PATH, "config.json").exists():
        raise ValueError(
            f"The embedded default base is missing ({EMBEDDED_BASE_PATH} has no config.json): reinstall tprl with its "
            f"package data, or pass {option} <llava-hf directory>, e.g. one written by `tprl-train-base`."
        )


__all__ = [
    "COLORS",
    "EMBEDDED_BASE_PATH",
    "EMBEDDED_LLAVA_NEXT_PATH",
    "EMBEDDED_LLAVA_NEXT_TPRL_PATH",
    "EMBEDDED_QWEN2_5_VL_PATH",
    "EMBEDDED_QWEN2_5_VL_TPRL_PATH",
    "EMBEDDED_TPRL_PATH",
    "QUESTION_TYPES",
    "SPLITS",
    "DigitPlacement",
    "DigitWorld",
    "build_llava_next_processor",
    "build_processor",
    "build_qwen2_5_vl_processor",
    "build_tiny_llava",
    "build_tiny_llava_next",
    "build_tiny_qwen2_5_vl",
    "pixel_values_of",
    "prompt_for",
    "relevant_placements",
    "require_embedded_base",
    "token_patch_size",
]
