"""The digit world: the embedded default task and its tiny LLaVA."""

from pathlib import Path

from .canvas import COLORS, QUESTION_TYPES, SPLITS, DigitPlacement, DigitWorld, relevant_placements
from .processor import build_processor, canvases_to_pixel_values, prompt_for


EMBEDDED_BASE_PATH = str(Path(__file__).parent / "tiny_llava")
"""The shipped, trained tiny LLaVA in llava-hf format: the default base of every command."""

__all__ = [
    "COLORS",
    "EMBEDDED_BASE_PATH",
    "QUESTION_TYPES",
    "SPLITS",
    "DigitPlacement",
    "DigitWorld",
    "build_processor",
    "canvases_to_pixel_values",
    "prompt_for",
    "relevant_placements",
]
