"""`tprl-prepare-data`: the pruner's training set (`image`, `question`, `answer`) from LLaVA-1.5's instruction data.

    tprl-prepare-data --conversations llava_v1_5_mix665k.json --image_folder /data/llava --output_dir data/vqa_train \
        [--exclude_image_ids pope_coco_ids.txt] [--limit 50000] [--seed 0]
    tprl-prepare-data --vqa_dataset lmms-lab/GQA --vqa_config train_balanced_instructions \
        --image_config train_balanced_images --split train --output_dir data/vqa_train

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

VQA datasets in the lmms-lab layout (`--vqa_dataset`, a Hub id, a local copy in the same layout or a `save_to_disk`
directory) give one row per question: VQAv2's (`question`, `answers`, `image_id`, `image`; the answer is
`multiple_choice_answer`, the annotators' most common answer, as LLaVA-1.5 trained on it) and GQA's (`question`,
`answer`, `imageId`; the images in another config, `--image_config`, joined on `id`). Their image ids (COCO numbers,
GQA ids) are excluded as above. Both sources may be given at once; the rows are pooled and shuffled.
"""

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from transformers import HfArgumentParser

from tprl_eval.command_line import command

from .data import load_split


logger = logging.getLogger("tprl-prepare-data")

SHORT_ANSWER_PROMPT = "Answer the question using a single word or phrase."


@dataclass
class PrepareDataArguments:
    """Where LLaVA's conversations are, what to leave out, and where the training set goes."""

    output_dir: str = field(metadata={"help": "Where the `save_to_disk` dataset is written."})
    conversations: str | None = field(
        default=None, metadata={"help": "LLaVA-layout JSON / JSON lines, or a dataset dir / Hub id."}
    )
    image_folder: str | None = field(default=None, metadata={"help": "Root of the records' image paths."})
    vqa_dataset: str | None = field(
        default=None, metadata={"help": "A VQA dataset in the lmms-lab layout (VQAv2 or GQA): Hub id or directory."}
    )
    vqa_config: str | None = field(default=None, metadata={"help": "Its config, e.g. train_balanced_instructions."})
    image_config: str | None = field(
        default=None, metadata={"help": "The config holding its images when apart, e.g. GQA's train_balanced_images."}
    )
    split: str = field(default="train", metadata={"help": "Split of a Hugging Face dataset."})
    exclude_image_ids: str | None = field(default=None, metadata={"help": "File of image ids to drop, one a line."})
    limit: int | None = field(default=None, metadata={"help": "At most this many rows (after shuffling)."})
    seed: int = field(default=0, metadata={"help": "Seed of the shuffle."})

    def __post_init__(self):
        if self.conversations is None and self.vqa_dataset is None:
            raise ValueError("Give --conversations (LLaVA's layout) or --vqa_dataset (lmms-lab VQAv2 / GQA), or both.")
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
    dataset = load_split(path, split)
    missing = {"conversations", "image"} - set(dataset.column_names)
    if missing:
        raise ValueError(f"{path} lacks column(s) {sorted(missing)}; LLaVA's layout has `conversations` and `image`.")
    return dataset


FEATURES = datasets.Features(
    {"image": datasets.Image(), "question": datasets.Value("string"), "answer": datasets.Value("string")}
)


def most_common_answer(answers: list) -> str:
    texts = [answer["answer"] if isinstance(answer, dict) else answer for answer in answers]
    return max(texts, key=texts.count)


def vqa_rows(args: PrepareDataArguments, excluded: set[str], counts: dict) -> datasets.Dataset:
    """One row per question of an lmms-lab VQAv2 / GQA split, its image undecoded, excluded images left out."""
    data = load_split(args.vqa_dataset, args.split, args.vqa_config)
    columns = set(data.column_names)
    if "question" not in columns or not {"answer", "answers"} & columns:
        raise ValueError(
            f"{args.vqa_dataset} has columns {sorted(columns)}; a VQA dataset needs `question` and `answer` (GQA) or "
            "`answers` (VQAv2)."
        )
    key = "image_id" if "image_id" in columns else "imageId"
    counts["vqa questions"] = len(data)
    if key in columns and excluded:
        data = data.filter(lambda row: image_id(str(row[key])) not in excluded)
        counts["excluded images"] += counts["vqa questions"] - len(data)
    if "image" in columns:
        images = data.cast_column("image", datasets.Image(decode=False))["image"]
    elif args.image_config is not None:  # GQA: the images are a config of their own, joined on their id
        image_data = load_split(args.vqa_dataset, args.split, args.image_config)
        image_data = image_data.cast_column("image", datasets.Image(decode=False))
        by_id = dict(zip(image_data["id"], range(len(image_data))))
        missing = sorted({row_id for row_id in data[key] if row_id not in by_id})
        if missing:
            raise ValueError(
                f"{len(missing)} images of {args.vqa_dataset} are not in {args.image_config}: {missing[:5]}"
            )
        images = image_data.select([by_id[row_id] for row_id in data[key]])["image"]
    else:
        raise ValueError(f"{args.vqa_dataset} has no `image` column: name the config holding them, --image_config.")
    if "multiple_choice_answer" in columns:
        answers = data["multiple_choice_answer"]
    elif "answer" in columns:
        answers = data["answer"]
    else:
        answers = [most_common_answer(row) for row in data["answers"]]
    questions = [question.strip() for question in data["question"]]
    return datasets.Dataset.from_dict({"image": images, "question": questions, "answer": answers}, features=FEATURES)


def conversation_rows(args: PrepareDataArguments, excluded: set[str], counts: dict) -> datasets.Dataset:
    """One row per short-answer turn of LLaVA-layout records with an image, excluded images left out."""
    rows = {"image": [], "question": [], "answer": []}
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
        for question, answer in turns:
            rows["image"].append(image)
            rows["question"].append(question)
            rows["answer"].append(answer)
    return datasets.Dataset.from_dict(rows, features=FEATURES)


def prepare(args: PrepareDataArguments) -> datasets.Dataset:
    """The training set, shuffled with `args.seed`, written to `args.output_dir`; counts are logged."""
    excluded = set()
    if args.exclude_image_ids is not None:
        excluded = {image_id(line.strip()) for line in Path(args.exclude_image_ids).read_text().splitlines() if line}
    counts = {"records": 0, "without image": 0, "excluded images": 0, "without short answers": 0}
    parts = []
    if args.conversations is not None:
        parts.append(conversation_rows(args, excluded, counts))
    if args.vqa_dataset is not None:
        parts.append(vqa_rows(args, excluded, counts))
    dataset = datasets.concatenate_datasets(parts)
    if len(dataset) == 0:
        sources = [source for source in (args.conversations, args.vqa_dataset) if source]
        raise ValueError(f"No short-answer turns with an image in {sources} ({counts}).")
    dataset = dataset.shuffle(seed=args.seed)
    if args.limit is not None:
        dataset = dataset.select(range(min(args.limit, len(dataset))))
    dataset.save_to_disk(args.output_dir)
    logger.info(f"{len(dataset)} rows written to {args.output_dir}; {counts}")
    return dataset


@command("tprl-prepare-data")
def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    (args,) = HfArgumentParser(PrepareDataArguments).parse_args_into_dataclasses(args=argv)
    prepare(args)


if __name__ == "__main__":
    main()
