"""MME: per-subtask acc and acc+, and the perception and cognition totals."""

import logging
from collections import defaultdict

import datasets
import evaluate


logger = logging.getLogger(__name__)


_DESCRIPTION = """
MME as its official evaluation scores it. Each image has two yes/no questions. Per subtask, acc is the share of
questions answered right and acc+ the share of images with both answered right, both in percent; the subtask's
score is acc + acc+ (at most 200). Perception is the sum over its 10 subtasks (at most 2000), cognition over its 4
(at most 800). An answer is parsed as in the official `eval_tool/calculation.py` (`parse_pred_ans`), on the
lower-cased answer that LLaVA's `model_vqa_loader.py` writes stripped: exactly "yes" or "no", else "yes" or "no"
within its first four characters ("yes" first), else "other" (wrong); so "Y" or "N" alone is "other". Every image
needs its two questions (acc+ is per pair): an image with one question (a `--limit` that cut its pair) is left out
of its subtask, with a warning, and counted in `images_dropped`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[str]`): "Yes" or "No".
    question_ids (`list[str]`): the image each question is about (lmms-lab/MME's `question_id`), shared by a pair.
    categories (`list[str]`): the subtask, e.g. "existence", "OCR", "code_reasoning".
Returns:
    perception, cognition, total (`float`): the summed scores; per_subtask: {subtask: {acc, acc_plus, score}};
    images_dropped (`int`): images left out for not having exactly two questions.
Examples:
    >>> metric = evaluate.load("eval/metrics/mme")
    >>> metric.compute(predictions=["Yes", "No"], references=["Yes", "Yes"], question_ids=["a.png"] * 2,
    ...                categories=["color"] * 2)["per_subtask"]
    {'color': {'acc': 50.0, 'acc_plus': 0.0, 'score': 50.0}}
"""

_CITATION = """
@article{fu2023mme,
  title={MME: A Comprehensive Evaluation Benchmark for Multimodal Large Language Models},
  author={Fu, Chaoyou and others},
  journal={arXiv preprint arXiv:2306.13394},
  year={2023}
}
"""

PERCEPTION = (
    "existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR",
)  # fmt: skip
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_yes_no(answer: str) -> str:
    answer = answer.strip().lower()
    if answer in ("yes", "no"):
        return answer
    start = answer[:4]
    return "yes" if "yes" in start else "no" if "no" in start else "other"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MME(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "question_ids": datasets.Value("string"),
                    "categories": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions, references, question_ids, categories):
        unknown = sorted(set(categories) - set(PERCEPTION) - set(COGNITION))
        if unknown:
            raise ValueError(f"Unknown MME subtask(s) {unknown}; expected {PERCEPTION + COGNITION}.")
        images = defaultdict(lambda: defaultdict(list))
        for prediction, reference, image, category in zip(predictions, references, question_ids, categories):
            images[category][image].append(parse_yes_no(prediction) == reference.strip().lower())
        per_subtask, dropped = {}, 0
        for category, answers in images.items():
            unpaired = [image for image, hits in answers.items() if len(hits) != 2]
            if unpaired:
                logger.warning(
                    f"MME {category}: {len(unpaired)} image(s) without exactly two questions left out (e.g. "
                    f"{unpaired[0]!r}); score whole pairs, e.g. a --limit that is a multiple of each subtask's pairs."
                )
                dropped += len(unpaired)
                answers = {image: hits for image, hits in answers.items() if len(hits) == 2}
            if not answers:
                continue
            questions = [hit for hits in answers.values() for hit in hits]
            acc = 100 * sum(questions) / len(questions)
            acc_plus = 100 * sum(all(hits) for hits in answers.values()) / len(answers)
            per_subtask[category] = {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus}
        perception = sum(v["score"] for k, v in per_subtask.items() if k in PERCEPTION)
        cognition = sum(v["score"] for k, v in per_subtask.items() if k in COGNITION)
        return {
            "perception": perception,
            "cognition": cognition,
            "total": perception + cognition,
            "per_subtask": per_subtask,
            "images_dropped": dropped,
        }
