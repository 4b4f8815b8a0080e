"""Small local copies of the lmms-lab benchmark datasets, in their Hub layout and schemas, made by the tests.

Each is a directory with a `README.md` declaring its configs and parquet files per config and split, as the
lmms-lab repos are, so `datasets.load_dataset(<dir>, <config>, split=...)` reads it as it reads the Hub copy.
"""

from pathlib import Path

import datasets
import numpy as np
from PIL import Image


def image(seed: int, size: tuple[int, int] = (40, 32)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


STRING = datasets.Value("string")
IMAGE = datasets.Image()


def gqa() -> dict:
    instructions = [
        {"id": f"q{i}", "imageId": f"img{i % 2}", "question": q, "answer": a, "fullAnswer": f"It is {a}."}
        for i, (q, a) in enumerate(
            [("Is the sky blue?", "yes"), ("What is on the table?", "cup"), ("Which side?", "left")]
        )
    ]
    images = [{"id": f"img{i}", "image": image(i)} for i in range(3)]
    return {
        "testdev_balanced_instructions": ("testdev", instructions, None),
        "testdev_balanced_images": ("testdev", images, datasets.Features({"id": STRING, "image": IMAGE})),
    }


def mmbench() -> dict:
    rows = [
        {"index": 0, "question": "What colour is the car?", "hint": None, "A": "red", "B": "blue", "C": "green",
         "D": None, "answer": "B"},
        {"index": 1, "question": "How many cats?", "hint": "Look closely.", "A": "1", "B": "2", "C": None, "D": None,
         "answer": "A"},
        {"index": 1_000_001, "question": "How many cats?", "hint": "Look closely.", "A": "2", "B": "1", "C": None,
         "D": None, "answer": "B"},  # the options rotated, as lmms-lab/MMBench repeats a question for CircularEval
    ]  # fmt: skip
    for i, row in enumerate(rows):
        row.update(category="attribute", image=image(10 + i), source="fixture", split="dev", comment=None)
        row["L2-category"] = "perception"
    features = datasets.Features(
        {
            **{k: STRING for k in ("question", "hint", "A", "B", "C", "D", "answer", "category", "source", "split")},
            "index": datasets.Value("int64"),
            "comment": STRING,
            "L2-category": STRING,
            "image": IMAGE,
        }
    )
    return {"en": ("dev", rows, features)}


def mme() -> dict:
    rows = [
        {"question_id": f"{category}/{n}.png", "question": f"Is there a {thing}? Please answer yes or no.",
         "answer": answer, "category": category, "image": image(20 + n)}
        for n, (category, thing, answer) in enumerate(
            [("existence", "dog", "Yes"), ("existence", "cat", "No"), ("code_reasoning", "loop", "Yes"),
             ("code_reasoning", "bug", "No")]
        )
    ]  # fmt: skip
    for row in rows:  # two questions per image, as in MME
        row["question_id"] = row["question_id"].split("/")[0] + "/0.png"
    return {None: ("test", rows, None)}


def pope() -> dict:
    rows = [
        {"id": str(i), "question_id": str(i), "question": f"Is there a {thing} in the image?", "answer": answer,
         "image_source": f"COCO_{i}", "image": image(30 + i), "category": category}
        for i, (thing, answer, category) in enumerate(
            [("dog", "yes", "adversarial"), ("cat", "no", "adversarial"), ("car", "yes", "popular"),
             ("bus", "no", "popular"), ("cup", "yes", "random"), ("tree", "no", "random")]
        )
    ]  # fmt: skip
    return {None: ("test", rows, None)}


def scienceqa() -> dict:
    rows = [
        {"image": image(40), "question": "Which is a mammal?", "choices": ["shark", "whale"], "answer": 1,
         "hint": "", "task": "closed choice", "grade": "grade4", "subject": "natural science", "topic": "biology",
         "category": "Classify", "skill": "mammals", "lecture": "", "solution": ""},
        {"image": image(41), "question": "Which is a metal?", "choices": ["iron", "wood", "glass"], "answer": 0,
         "hint": "Think of magnets.", "task": "closed choice", "grade": "grade5", "subject": "natural science",
         "topic": "physics", "category": "Materials", "skill": "metals", "lecture": "", "solution": ""},
    ]  # fmt: skip
    features = datasets.Features(
        {
            **{k: STRING for k in rows[0] if k not in ("image", "choices", "answer")},
            "image": IMAGE,
            "choices": datasets.Sequence(STRING),
            "answer": datasets.Value("int8"),
        }
    )
    return {"ScienceQA-IMG": ("test", rows, features)}


def textvqa() -> dict:
    rows = [
        {"image_id": f"t{i}", "question_id": i, "question": question, "question_tokens": question.split(),
         "image": image(50 + i), "image_width": 40, "image_height": 32, "flickr_original_url": "",
         "flickr_300k_url": "", "answers": answers, "image_classes": ["sign"], "set_name": "val",
         "ocr_tokens": ocr_tokens}
        for i, (question, answers, ocr_tokens) in enumerate(
            [("What does the sign say?", ["stop"] * 8 + ["STOP!", "halt"], ["stop", "sign"]),
             ("What number is it?", ["2"] * 10, [])]
        )
    ]  # fmt: skip
    return {None: ("validation", rows, None)}


def vqav2() -> dict:
    rows = [
        {"question_type": "how many", "multiple_choice_answer": "2", "image_id": i, "answer_type": "number",
         "question_id": 100 + i, "question": question, "image": image(60 + i),
         "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)]}
        for i, (question, answers) in enumerate(
            [("How many dogs?", ["2"] * 6 + ["two"] * 2 + ["3"] * 2), ("Is it sunny?", ["yes"] * 10)]
        )
    ]  # fmt: skip
    return {None: ("validation", rows, None)}


FIXTURES = {
    "gqa": gqa,
    "mmbench": mmbench,
    "mme": mme,
    "pope": pope,
    "scienceqa_img": scienceqa,
    "textvqa": textvqa,
    "vqav2": vqav2,
}

# A right answer per fixture row, as a model would write it.
RIGHT_ANSWERS = {
    "gqa": ["Yes.", "cup", "left"],
    "mmbench": ["B", "A. 1", "The answer is B"],
    "mme": ["Yes", "No", "Yes", "No"],
    "pope": ["Yes, there is.", "No", "yes", "no", "Yes", "There is no tree."],
    "scienceqa_img": ["B", "The answer is A."],
    "textvqa": ["stop", "two"],
    "vqav2": ["2", "Yes"],
}


def write_fixture(root: Path, name: str) -> Path:
    """Writes the `name` fixture in the lmms-lab layout under `root/name` and returns that directory."""
    return write_layout(Path(root) / name, FIXTURES[name]())


def write_layout(directory: Path, configs: dict) -> Path:
    """Writes `{config: (split, rows, features)}` in the lmms-lab layout (parquet per config, configs in README.md)."""
    lines = ["---", "configs:"]
    for config, (split, rows, features) in configs.items():
        folder = config or "data"
        (directory / folder).mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows, features=features).to_parquet(
            str(directory / folder / f"{split}-00000-of-00001.parquet")
        )
        lines += [
            f"- config_name: {config or 'default'}",
            "  data_files:",
            f"  - split: {split}",
            f"    path: {folder}/{split}-*.parquet",
        ]
    (directory / "README.md").write_text("\n".join(lines + ["---", ""]))
    return directory
