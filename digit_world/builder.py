"""The digit world as a `datasets` builder: deterministic splits with images, questions and layouts."""

from dataclasses import dataclass

import datasets
import numpy as np

from .canvas import COLORS, MAX_DIGITS, MIN_DIGITS, QUESTION_TYPES, SPLITS, SQUARE_CANVAS, DigitWorld


@dataclass
class DigitWorldConfig(datasets.BuilderConfig):
    """Sizes and seed of the generated splits.

    Args:
        seed (`int`): base seed; each split draws from its own stream derived from it.
        train_size, validation_size, test_size (`int`): questions per split.
        min_digits, max_digits (`int`): each canvas holds a uniform draw of digits in this range.
        canvas_shapes (`list[list[int]]`): the (height, width) a canvas may have (`DigitWorld`): the square canvas, or
            the tiled digit world's shapes for a tiled base (`canvas_shapes_of` its processor).
    """

    seed: int = 0
    train_size: int = 20000
    validation_size: int = 1000
    test_size: int = 2000
    min_digits: int = 3
    max_digits: int = MAX_DIGITS
    canvas_shapes: tuple[tuple[int, int], ...] = SQUARE_CANVAS

    def validate(self) -> None:
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}.")
        if not MIN_DIGITS <= self.min_digits <= self.max_digits <= MAX_DIGITS:
            raise ValueError(
                f"Digits per canvas must satisfy {MIN_DIGITS} <= min_digits <= max_digits <= {MAX_DIGITS}, got "
                f"{self.min_digits} and {self.max_digits}."
            )
        for split in SPLITS:
            size = getattr(self, f"{split}_size")
            if not 1 <= size <= 10_000_000:
                raise ValueError(f"{split}_size must be in [1, 10000000], got {size}.")


class DigitWorldBuilder(datasets.GeneratorBasedBuilder):
    """Builds the digit-world VQA dataset. Use `DigitWorldBuilder(seed=..., cache_dir=...)`, then
    `download_and_prepare()` and `as_dataset(split)`."""

    BUILDER_CONFIG_CLASS = DigitWorldConfig
    BUILDER_CONFIGS = [DigitWorldConfig(name="default")]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.validate()  # datasets sets config kwargs with setattr, past any __post_init__

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Visually grounded VQA on canvases of tinted handwritten digits (scikit-learn's scans).",
            features=datasets.Features(
                {
                    "image": datasets.Image(),
                    "question": datasets.Value("string"),
                    "answer": datasets.Value("string"),
                    "question_type": datasets.ClassLabel(names=list(QUESTION_TYPES)),
                    "layout": datasets.List(
                        {
                            "digit": datasets.Value("int32"),
                            "color": datasets.ClassLabel(names=list(COLORS)),
                            "box": datasets.List(datasets.Value("int32"), length=4),
                        }
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        names = {"train": datasets.Split.TRAIN, "validation": datasets.Split.VALIDATION, "test": datasets.Split.TEST}
        return [datasets.SplitGenerator(name=names[split], gen_kwargs={"split": split}) for split in names]

    def _generate_examples(self, split: str):
        world = DigitWorld(split, tuple(tuple(shape) for shape in self.config.canvas_shapes))
        rng = np.random.default_rng([self.config.seed, SPLITS.index(split)])
        for index in range(getattr(self.config, f"{split}_size")):
            num_digits = int(rng.integers(self.config.min_digits, self.config.max_digits + 1))
            example = world.sample(rng, num_digits, question_type=QUESTION_TYPES[index % len(QUESTION_TYPES)])
            example["layout"] = [{"digit": p.digit, "color": p.color, "box": list(p.box)} for p in example["layout"]]
            yield index, example
