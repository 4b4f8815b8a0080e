"""`tprl-prepare-data`: the pruner's training set (`image`, `question`, `answer`) from LLaVA-1.5's instruction data.

    tprl-prepare-data --conversations llava_v1_5_mix665k.json --image_folder /data/llava --output_dir data/vqa_train \
        [--exclude_image_ids pope_coco_ids.txt] [--limit 50000] [--seed 0]

LLaVA-1.5 was instruction-tuned on conversations in LLaVA's layout: records with an `image` (a path under the image
folder) and `conversations`, turns `{"from": "human" | "gpt", "value": ...}`, the first human turn holding `<image>`.
Its short-answer VQA turns (VQAv2, GQA, OKVQA, OCR-VQA, ...) end the question with LLaVA-1.5's prompt "Answer the
question using a single word or phrase."; those are the turns a pruner learns from (an answer of a few words, scored
by its first token). Each such turn becomes one row, its question without `<image>` and without the prompt (the
training collator asks it as LLaVA-1.5's evaluation does). Records without an image are left out.

The conversations come as that JSON file (or JSON lines), or as a Hugging Face dataset (a `save_to_disk` directory
or a Hub id) with `conversations` and `image` columns, the image a path or a decoded image. Images that an evaluation
benchmark holds are dropped with `--exclude_image_ids`: a text file, one id per line. LLaVA-1.5's COCO train2017
images include COCO val2014 ones, which POPE evaluates on: list POPE's `image_source` values there
(`COCO_val2014_000000310196`); COCO ids are compared by number, so `000000310196.jpg` matches it.
"""

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import HfArgumentParser


logger = logging.getLogger("tprl-prepare-data")

SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."


@dataclass
class PrepareDataArguments:
    """Where LLaVA's conversations are, what to leave out, and where the training set goes."""

    conversations: str = field(metadata={"help": "LLaVA-layout JSON / JSON lines, or a dataset dir / Hub id."})
    output_dir: str = field(metadata={"help": "Where the `save_to_disk` dataset is written."})
    image_folder: str | None = field(default=None, metadata={"help": "Root of the records' image paths."})
    split: str = field(default="train", metadata={"help": "Split of a Hugging Face dataset."})
    exclude_image_ids: str | None = field(default=None, metadata={"help": "File of image ids to drop, one a line."})
    limit: int | None = field(default=None, metadata={"help": "At most this many rows (after shuffling)."})
    seed: int = field(default=0, metadata={"help": "Seed of the shuffle."})

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive, got {self.limit}.")
        if self.image_folder is not None and not os.path.isdir(self.image_folder):
            raise ValueError(f"image_folder {self.image_folder!r} is not a directory.")


def image_id(name: str) -> str:
    """The id an image is compared by: its file stem, a COCO image (`000000310196`, `COCO_val2014_000000310196`) by
    its number."""
    stem = Path(name).stem
    coco = re.fullmatch(r"(?:COCO_[a-z]+\d*_)?0*(\d+)", stem)
    return coco.group(1) if coco else stem


def short_answer_turns(conversations: list[dict]) -> list[tuple[str, str]]:
    """The (question, answer) pairs of a conversation whose question asks for a single word or phrase."""
    pairs = []
    for asked, answered in zip(conversations[:-1], conversations[1:]):
        if asked["from"] != "human" or answered["from"] != "gpt" or SHORT_ANSWER_PROMPT not in asked["value"]:
            continue
        question = asked["value"].replace("<image>", "").replace(SHORT_ANSWER_PROMPT, "").strip()
        answer = answered["value"].strip()
        if question and answer:
            pairs.append((question, answer))
    return pairs


def load_conversations(path: str, split: str) -> datasets.Dataset | list[dict]:
    """LLaVA-layout records from a JSON / JSON-lines file, a `save_to_disk` directory or a Hub dataset."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as file:
            text = file.read()
        try:
            records = json.loads(text)
        except json.JSONDecodeError:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        if not isinstance(records, list):
            raise ValueError(f"{path} must hold a JSON list of LLaVA records (or one record a line).")
        return records
    if os.path.isdir(path):
        dataset = datasets.load_from_disk(path)
        dataset = dataset[split] if isinstance(dataset, datasets.DatasetDict) else dataset
    else:
        dataset = datasets.load_dataset(path, split=split)
    missing = {"conversations", "image"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}; LLaVA's layout has `conversations` and `image`.")
    return dataset


def prepare(args: PrepareDataArguments) -> datasets.Dataset:
    """The training set, shuffled with `args.seed`, written to `args.output_dir`; counts are logged."""
    excluded = set()
    if args.exclude_image_ids is not None:
        excluded = {image_id(line.strip()) for line in Path(args.exclude_image_ids).read_text().splitlines() if line}
    rows, counts = [], {"records": 0, "without image": 0, "excluded images": 0, "without short answers": 0}
    for record in load_conversations(args.conversations, args.split):
        counts["records"] += 1
        image = record.get("image")
        if image is None:
            counts["without image"] += 1
            continue
        if isinstance(image, str):
            if image_id(image) in excluded:
                counts["excluded images"] += 1
                continue
            image = os.path.join(args.image_folder, image) if args.image_folder else image
            if not os.path.isfile(image):
                raise FileNotFoundError(
                    f"Image {image} of record {record.get('id')!r} is missing: set --image_folder."
                )
        turns = short_answer_turns(record["conversations"])
        counts["without short answers"] += not turns
        rows += [{"image": image, "question": question, "answer": answer} for question, answer in turns]
    if not rows:
        raise ValueError(f"No short-answer turns with an image in {args.conversations} ({counts}).")
    features = datasets.Features(
        {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
    )
    dataset = datasets.Dataset.from_list(rows, features=features).shuffle(seed=args.seed)
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    dataset.save_to_disk(args.output_dir)
    logger.info(f"{len(dataset)} rows written to {args.output_dir}; {counts}")
    return dataset


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    (args,) = HfArgumentParser(PrepareDataArguments).parse_args_into_dataclasses(args=argv)
    prepare(args)


if __name__ == "__main__":
    main()
