"""The seven LLaVA benchmarks in their lmms-lab versions: loading, LLaVA-1.5's (or lmms-eval's) prompts, and scoring.

Each benchmark loads with `datasets.load_dataset` from its lmms-lab repo id or from a local directory in the same
layout (a `README.md` listing the configs, parquet files per config and split), so the same code runs on the Hub
data and on the tests' fixtures. Scores come from the local `evaluate` modules in `tprl_eval.metrics`.
"""

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
from PIL import Image

from .metrics import load_metric


SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
OPTION_LETTER = "\nAnswer with the option's letter from the given choices directly."
MME_SUFFIX = " Please answer yes or no."  # replaced by SHORT_ANSWER in both harnesses
PROMPT_STYLES = ("llava", "lmms_eval")


def local_cache_dir(folder: str) -> str:
    """A datasets cache of its own for a local copy, keyed by its path and its files' sizes and times.

    datasets caches a local folder under its base name and config only: another folder of the same name, or a copy
    edited in place, would silently give the cached rows (seen with datasets 5.2).
    """
    files = sorted(path for path in Path(folder).resolve().rglob("*") if path.is_file())
    stamp = [str(Path(folder).resolve())] + [
        f"{path}:{path.stat().st_size}:{path.stat().st_mtime_ns}" for path in files
    ]
    digest = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "tprl_local" / digest)


def is_missing(value) -> bool:
    """LLaVA's `is_none`: None, NaN, "nan" or "none" (MMBench's empty hints and options)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).lower() in ("nan", "none")


def short_answer_prompt(row: dict) -> str:
    return f"{row['question']}{SHORT_ANSWER}"


def textvqa_llava_prompt(row: dict) -> str:
    """LLaVA-1.5's `llava_textvqa_val_v051_ocr.jsonl`: the question, the OCR tokens, the short-answer request."""
    tokens = row.get("ocr_tokens") or []
    reference = f"\nReference OCR token: {', '.join(tokens)}" if tokens else ""
    return f"{row['question']}{reference}{SHORT_ANSWER}"


def mme_prompt(row: dict) -> str:
    return row["question"].strip().replace(MME_SUFFIX, "") + SHORT_ANSWER


def mmbench_options(row: dict) -> list[str]:
    """The options up to the first missing one, as LLaVA's `get_options` reads them."""
    options = []
    for letter in "ABCD":
        if is_missing(row.get(letter)):
            break
        options.append(row[letter])
    return options


def mmbench_llava_prompt(row: dict) -> str:
    """LLaVA's `model_vqa_mmbench.py --single-pred-prompt`: hint, question, lettered options, one per line."""
    lines = [] if is_missing(row["hint"]) else [row["hint"]]
    lines += [row["question"]] + [f"{letter}. {option}" for letter, option in zip("ABCD", mmbench_options(row))]
    return "\n".join(lines) + OPTION_LETTER


def lmms_eval_present(value) -> bool:
    """lmms-eval's MMBench test for a hint or option: set, not NaN, not "nan" (pandas' `notna`)."""
    return bool(value) and not (isinstance(value, float) and math.isnan(value)) and value != "nan"


def mmbench_lmms_eval_prompt(row: dict) -> str:
    """lmms-eval's `mmbench_doc_to_text`: hint, question and "There are several options:" on one line."""
    options = "There are several options:\n" + "".join(
        f"{letter}. {row[letter]}\n" for letter in "ABCDE" if lmms_eval_present(row.get(letter))
    )
    hint = f"{row['hint']} " if lmms_eval_present(row["hint"]) else ""
    return f"{hint}{row['question']} {options.rstrip()}\n{OPTION_LETTER}"


def scienceqa_prompt(row: dict) -> str:
    """LLaVA-1.5's `llava_test_CQM-A.json` with `--single-pred-prompt`, as lmms-eval's `sqa_doc_to_text` also asks."""
    context = f"Context: {row['hint']}\n" if row["hint"] else ""
    options = "\n".join(f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(row["choices"]))
    return f"{context}{row['question']}\n{options}{OPTION_LETTER}"


def exact_match_score(metric, predictions: list[str], rows: list[dict]) -> dict:
    references = [row["answer"] for row in rows]
    return {"score": 100 * metric.compute(predictions=predictions, references=references)["exact_match"]}


def vqa_score(metric, predictions: list[str], rows: list[dict]) -> dict:
    # VQAv2 lists {"answer", "answer_confidence", "answer_id"} dicts, TextVQA plain strings.
    references = [[a["answer"] if isinstance(a, dict) else a for a in row["answers"]] for row in rows]
    return {"score": 100 * metric.compute(predictions=predictions, references=references)["vqa_accuracy"]}


def mmbench_score(metric, predictions: list[str], rows: list[dict]) -> dict:
    result = metric.compute(
        predictions=predictions,
        references=[row["answer"] for row in rows],
        options=[mmbench_options(row) for row in rows],
        indices=[row["index"] for row in rows],
    )
    return {"score": 100 * result["accuracy"], **result}


def scienceqa_score(metric, predictions: list[str], rows: list[dict]) -> dict:
    references, num_choices = [row["answer"] for row in rows], [len(row["choices"]) for row in rows]
    return {
        "score": 100
        * metric.compute(predictions=predictions, references=references, num_choices=num_choices)["accuracy"]
    }


def mme_score(metric, predictions: list[str], rows: list[dict]) -> dict:
    result = metric.compute(
        predictions=predictions,
        references=[row["answer"] for row in rows],
        question_ids=[row["question_id"] for row in rows],
        categories=[row["category"] for row in rows],
    )
    return {"score": result["total"], **result}


def mean_pope_f1(metric, predictions: list[str], rows: list[dict]) -> dict:
    """POPE's headline as LLaVA reports it: F1 averaged over its three subsets (adversarial, popular, random)."""
    groups = defaultdict(list)
    for prediction, row in zip(predictions, rows):
        groups[row["category"]].append((prediction, row["answer"]))
    per_category = {
        category: metric.compute(predictions=[p for p, _ in pairs], references=[r for _, r in pairs])
        for category, pairs in sorted(groups.items())
    }
    overall = metric.compute(predictions=predictions, references=[row["answer"] for row in rows])
    score = 100 * sum(result["f1"] for result in per_category.values()) / len(per_category)
    return {"score": score, "per_category": per_category, **overall}


@dataclass(frozen=True)
class PromptStyle:
    """How a harness asks a benchmark: the text after the image, and how many tokens the answer may take.

    Args:
        prompt (`Callable[[dict], str]`): the text after the image for a dataset row.
        max_new_tokens (`int`): the answer's length limit.
    """

    prompt: Callable[[dict], str]
    max_new_tokens: int


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its data is, which columns it needs, how each harness asks it, and how it is scored.

    Args:
        name (`str`): the name `tprl-eval --benchmarks` takes.
        dataset_id (`str`): the lmms-lab repo id (a local directory in the same layout can replace it).
        config (`str | None`): the dataset config.
        split (`str`): the evaluated split.
        columns (`tuple[str, ...]`): columns the adapter reads; a dataset without them is refused before any work.
        metric (`str`): the `tprl_eval.metrics` module, with its config if it has several (`vqa_accuracy:textvqa`).
        styles (`dict[str, PromptStyle]`): per harness (`PROMPT_STYLES`), the prompt and answer length it uses:
            `llava` as LLaVA-1.5's evaluation scripts (`llava/eval/model_vqa_*.py` and their question files),
            `lmms_eval` as lmms-eval's task defaults.
        score (`Callable`): `(metric, predictions, rows) -> dict` with a headline `score` (as papers report it).
        score_name (`str`): what the headline is.
        image_config (`str | None`): a config holding the images, joined on `image_key` (GQA keeps them apart).
    """

    name: str
    dataset_id: str
    config: str | None
    split: str
    columns: tuple[str, ...]
    metric: str
    styles: dict[str, PromptStyle]
    score: Callable
    score_name: str
    image_config: str | None = None
    image_key: str = "imageId"

    def prompt(self, row: dict, style: str = "llava") -> str:
        """The text after the image, as the `style` harness asks it."""
        return self.styles[style].prompt(row)

    def max_new_tokens(self, style: str = "llava") -> int:
        return self.styles[style].max_new_tokens

    def load(self, path: str | None = None, limit: int | None = None) -> list[dict]:
        """The evaluated rows (at most `limit`), each with a PIL `image`, from `path` or the lmms-lab repo."""
        source = path or self.dataset_id
        cache_dir = local_cache_dir(source) if Path(source).is_dir() else None
        try:
            data = datasets.load_dataset(source, self.config, split=self.split, cache_dir=cache_dir)
        except (FileNotFoundError, ValueError) as error:
            raise ValueError(
                f"Cannot load {self.name} from {source!r} (config {self.config!r}, split {self.split!r}): {error}. Pass "
                f"the lmms-lab repo id or a local copy of it with --dataset_paths {self.name}=<dir>."
            ) from error
        missing = [column for column in self.columns if column not in data.column_names]
        if missing:
            raise ValueError(
                f"{self.name} data from {source!r} lacks the column(s) {missing}; it has {data.column_names}. "
                f"Expected the {self.dataset_id} schema."
            )
        if len(data) == 0:
            raise ValueError(f"{self.name}: the {self.split!r} split of {source!r} is empty.")
        if limit is not None:
            data = data.select(range(min(limit, len(data))))
        rows = list(data)
        if self.image_config is not None:
            images = datasets.load_dataset(source, self.image_config, split=self.split, cache_dir=cache_dir)
            wanted = {row[self.image_key] for row in rows}
            by_id = {item["id"]: item["image"] for item in images.filter(lambda item: item["id"] in wanted)}
            for row in rows:
                row["image"] = by_id[row[self.image_key]]
        for row in rows:
            if not isinstance(row.get("image"), Image.Image):
                raise ValueError(f"{self.name}: a row without an image ({ {k: row[k] for k in self.columns[:2]} }).")
            row["image"] = row["image"].convert("RGB")
        return rows

    def evaluate(self, predictions: list[str], rows: list[dict]) -> dict:
        return self.score(load_metric(*self.metric.split(":")), predictions, rows)


def short_answer(llava_tokens: int = 128, lmms_eval_tokens: int = 16) -> dict[str, PromptStyle]:
    """The question and LLaVA's short-answer request; `model_vqa_loader.py` allows 128 tokens, lmms-eval's tasks 16."""
    return {
        "llava": PromptStyle(short_answer_prompt, llava_tokens),
        "lmms_eval": PromptStyle(short_answer_prompt, lmms_eval_tokens),
    }


BENCHMARKS = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark(
            name="gqa",
            dataset_id="lmms-lab/GQA",
            config="testdev_balanced_instructions",
            split="testdev",
            columns=("id", "imageId", "question", "answer"),
            metric="exact_match",
            styles=short_answer(),
            score=exact_match_score,
            score_name="exact match",
            image_config="testdev_balanced_images",
        ),
        Benchmark(
            name="mmbench",
            dataset_id="lmms-lab/MMBench",
            config="en",
            split="dev",
            columns=("index", "question", "hint", "A", "B", "answer", "image"),
            metric="mmbench",
            styles={  # model_vqa_mmbench.py and lmms-eval both allow 1024 tokens
                "llava": PromptStyle(mmbench_llava_prompt, 1024),
                "lmms_eval": PromptStyle(mmbench_lmms_eval_prompt, 1024),
            },
            score=mmbench_score,
            score_name="accuracy (CircularEval over the copies given)",
        ),
        Benchmark(
            name="mme",
            dataset_id="lmms-lab/MME",
            config=None,
            split="test",
            columns=("question_id", "question", "answer", "category", "image"),
            metric="mme",
            styles={"llava": PromptStyle(mme_prompt, 128), "lmms_eval": PromptStyle(mme_prompt, 16)},
            score=mme_score,
            score_name="perception + cognition",
        ),
        Benchmark(
            name="pope",
            dataset_id="lmms-lab/POPE",
            config=None,
            split="test",
            columns=("question_id", "question", "answer", "category", "image"),
            metric="pope",
            styles=short_answer(lmms_eval_tokens=128),
            score=mean_pope_f1,
            score_name="F1, mean of the 3 subsets",
        ),
        Benchmark(
            name="scienceqa_img",
            dataset_id="lmms-lab/ScienceQA",
            config="ScienceQA-IMG",
            split="test",
            columns=("question", "choices", "answer", "hint", "image"),
            metric="scienceqa",
            styles={"llava": PromptStyle(scienceqa_prompt, 1024), "lmms_eval": PromptStyle(scienceqa_prompt, 16)},
            score=scienceqa_score,
            score_name="accuracy",
        ),
        Benchmark(
            name="textvqa",
            dataset_id="lmms-lab/textvqa",
            config=None,
            split="validation",
            columns=("question_id", "question", "answers", "ocr_tokens", "image"),
            metric="vqa_accuracy:textvqa",
            styles={  # lmms-eval's task sets no length: its llava_hf model's default, 1024
                "llava": PromptStyle(textvqa_llava_prompt, 128),
                "lmms_eval": PromptStyle(lambda row: f"{row['question'].capitalize()}{SHORT_ANSWER}", 1024),
            },
            score=vqa_score,
            score_name="VQA accuracy",
        ),
        Benchmark(
            name="vqav2",
            dataset_id="lmms-lab/VQAv2",
            config=None,
            split="validation",
            columns=("question_id", "question", "answers", "image"),
            metric="vqa_accuracy:vqav2",
            styles=short_answer(),
            score=vqa_score,
            score_name="VQA accuracy",
        ),
    )
}
