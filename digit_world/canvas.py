"""The digit world: canvases of tinted handwritten digits and questions about one part of them.

Every canvas is a 96x96 black image holding 3-6 distinct digits from scikit-learn's bundled handwritten
digits (real 8x8 scans), each upscaled to 16x16 px, tinted with one of six colours and placed on an 8-px grid
without overlap. With 8-px patches a digit covers exactly 2x2 of the 12x12 visual tokens, so the answer to a
question depends on a handful of tokens that the question names. The tiled digit world (`TILED_CANVAS_SHAPES`)
draws each canvas at one of two shapes, for bases whose tile grid follows the image's aspect ratio (LLaVA-NeXT).
"""

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits


CANVAS_SIZE = 96
SQUARE_CANVAS = ((CANVAS_SIZE, CANVAS_SIZE),)
TILED_CANVAS_SHAPES = ((CANVAS_SIZE, CANVAS_SIZE), (CANVAS_SIZE // 2, CANVAS_SIZE))
"""(height, width) of the tiled digit world's canvases: square, and twice as wide as high."""
DIGIT_SIZE = 16
GRID = 8
COLORS = {
    "red": (255, 40, 40),
    "green": (40, 220, 40),
    "blue": (60, 90, 255),
    "yellow": (250, 230, 40),
    "cyan": (40, 230, 230),
    "magenta": (230, 50, 230),
}
QUESTION_TYPES = ("color", "digit", "presence", "count")
SPLITS = ("train", "validation", "test")
MIN_DIGITS, MAX_DIGITS = 1, 6
# Share of the 1,797 source scans used by each split: test handwriting is never seen in training.
_SPLIT_FRACTIONS = {"train": (0.0, 0.7), "validation": (0.7, 0.85), "test": (0.85, 1.0)}


@dataclass
class DigitPlacement:
    digit: int
    color: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


def split_digit_pool(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(images, labels)` of the source scans that belong to `split`, as 16x16 intensities in [0, 1]."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {SPLITS}.")
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.images))
    start, end = _SPLIT_FRACTIONS[split]
    chosen = order[int(start * len(order)) : int(end * len(order))]
    images = digits.images[chosen] / 16.0  # the scans' intensities run from 0 to 16
    upscaled = np.kron(images, np.ones((1, 2, 2)))  # nearest-neighbour 8x8 -> 16x16
    return upscaled.astype(np.float32), digits.target[chosen]


class DigitWorld:
    """Generates digit-world examples from one split's handwriting.

    Args:
        split (`str`): `"train"`, `"validation"` or `"test"`; selects which source scans may appear.
        canvas_shapes (`tuple[tuple[int, int], ...]`): the (height, width) a canvas may have, in multiples of 8 px,
            drawn with equal chances (`TILED_CANVAS_SHAPES` for the tiled digit world).
    """

    def __init__(self, split: str, canvas_shapes: tuple[tuple[int, int], ...] = SQUARE_CANVAS):
        if not canvas_shapes or any(side < DIGIT_SIZE or side % GRID for shape in canvas_shapes for side in shape):
            raise ValueError(
                f"canvas_shapes must be (height, width) pairs, multiples of {GRID} px, got {canvas_shapes}."
            )
        self.split = split
        self.canvas_shapes = tuple(tuple(shape) for shape in canvas_shapes)
        self.images, self.labels = split_digit_pool(split)
        self._by_label = {d: np.flatnonzero(self.labels == d) for d in range(10)}

    def sample(
        self,
        rng: np.random.Generator,
        num_digits: int | None = None,
        question_type: str | None = None,
    ) -> dict:
        """Draws one example: `image` (uint8 HxWx3), `question`, `answer`, `question_type`, `layout`."""
        if question_type is None:
            question_type = QUESTION_TYPES[rng.integers(len(QUESTION_TYPES))]
        if question_type not in QUESTION_TYPES:
            raise ValueError(f"Unknown question type {question_type!r}; choose one of {QUESTION_TYPES}.")
        if num_digits is None:
            num_digits = int(rng.integers(3, MAX_DIGITS + 1))
        if not MIN_DIGITS <= num_digits <= MAX_DIGITS:
            raise ValueError(f"num_digits must be in [{MIN_DIGITS}, {MAX_DIGITS}], got {num_digits}.")

        digits = rng.choice(10, size=num_digits, replace=False)
        palette = list(COLORS)
        if question_type == "count":  # fewer colours, so counts above one are common
            palette = list(rng.choice(palette, size=int(rng.integers(2, 4)), replace=False))
        colors = [str(palette[i]) for i in rng.integers(len(palette), size=num_digits)]
        target = int(rng.integers(num_digits))
        shape = self.canvas_shapes[0]
        if len(self.canvas_shapes) > 1:  # one shape draws nothing: the square world's examples stay what they were
            shape = self.canvas_shapes[int(rng.integers(len(self.canvas_shapes)))]
        if question_type == "digit":  # the named colour must identify one digit
            used = {c for i, c in enumerate(colors) if i != target}
            if colors[target] in used:
                free = [c for c in COLORS if c not in used]
                colors[target] = str(free[rng.integers(len(free))])

        layout = [
            DigitPlacement(int(d), c, box) for d, c, box in zip(digits, colors, self._place(rng, num_digits, shape))
        ]
        question, answer = self._ask(rng, question_type, layout, target)
        return {
            "image": self._draw(rng, layout, shape),
            "question": question,
            "answer": answer,
            "question_type": question_type,
            "layout": layout,
        }

    def _place(self, rng: np.random.Generator, count: int, shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        cells = np.array(shape) // GRID
        span = DIGIT_SIZE // GRID
        free = np.ones(tuple(cells), dtype=bool)
        boxes = []
        while len(boxes) < count:
            row, col = rng.integers(cells - span + 1)
            if free[row : row + span, col : col + span].all():
                free[row : row + span, col : col + span] = False
                x0, y0 = int(col) * GRID, int(row) * GRID
                boxes.append((x0, y0, x0 + DIGIT_SIZE, y0 + DIGIT_SIZE))
        return boxes

    def _draw(self, rng: np.random.Generator, layout: list[DigitPlacement], shape: tuple[int, int]) -> np.ndarray:
        canvas = np.zeros((*shape, 3), dtype=np.float32)
        for item in layout:
            scan = self.images[rng.choice(self._by_label[item.digit])]
            x0, y0, x1, y1 = item.box
            canvas[y0:y1, x0:x1] = scan[..., None] * np.asarray(COLORS[item.color], dtype=np.float32)
        return canvas.round().astype(np.uint8)

    def _ask(
        self, rng: np.random.Generator, question_type: str, layout: list[DigitPlacement], target: int
    ) -> tuple[str, str]:
        item = layout[target]
        if question_type == "color":
            return f"what color is the {item.digit}", item.color
        if question_type == "digit":
            return f"which digit is {item.color}", str(item.digit)
        if question_type == "presence":
            present = {p.digit for p in layout}
            if rng.random() < 0.5:
                return f"is there a {item.digit}", "yes"
            absent = [d for d in range(10) if d not in present]
            return f"is there a {absent[rng.integers(len(absent))]}", "no"
        count = sum(p.color == item.color for p in layout)
        return f"how many are {item.color}", str(count)

    def follow_up(self, rng: np.random.Generator, layout: list[DigitPlacement], question_type: str) -> dict | None:
        """Another question about the same canvas (for multi-turn training); `None` if the layout cannot ask it."""
        targets = range(len(layout))
        if question_type == "digit":  # the named colour must identify one digit
            targets = [i for i, p in enumerate(layout) if sum(q.color == p.color for q in layout) == 1]
            if not targets:
                return None
        question, answer = self._ask(rng, question_type, layout, int(rng.choice(targets)))
        return {"question": question, "answer": answer, "question_type": question_type}


def patch_indices(box: tuple[int, int, int, int], patch_size: int, width: int = CANVAS_SIZE) -> list[int]:
    """Row-major indices of the patches of `patch_size` px under a digit's box, on a canvas `width` px wide."""
    side = width // patch_size
    x0, y0, x1, y1 = box
    rows = range(y0 // patch_size, (y1 - 1) // patch_size + 1)
    cols = range(x0 // patch_size, (x1 - 1) // patch_size + 1)
    return [row * side + col for row in rows for col in cols]


def relevant_placements(question: str, layout: list[DigitPlacement]) -> list[DigitPlacement]:
    """The digits a question is about: the named digit, or every digit of the named colour."""
    last_word = question.split()[-1]
    if last_word.isdigit():
        return [p for p in layout if p.digit == int(last_word)]
    return [p for p in layout if p.color == last_word]


def vocabulary() -> list[str]:
    """Every word of the questions, answers and prompt template."""
    words = "USER ASSISTANT : what color is the which digit there a how many are yes no".split()
    return words + [str(d) for d in range(10)] + list(COLORS)
