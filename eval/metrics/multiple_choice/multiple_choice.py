"""Multiple-choice accuracy from free-form answers (MMBench, ScienceQA-IMG)."""

import re

import datasets
import evaluate


_DESCRIPTION = """
Accuracy of multiple-choice answers given as text. The chosen option is read as LLaVA-1.5's evaluation reads it:
the answer itself if it is a capital letter, else a leading "B." / "B)" / "B:" / "(B)" (not "A cat"); if the options' texts are given
and the answer is exactly one of them (case-insensitive), that option. Anything else is wrong. (MMBench's
CircularEval and its GPT answer matching are not reproduced.)
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[str]`): the right option's letter.
    options (`list[list[str]]`, optional): the options' texts in letter order, to match answers that repeat one.
Returns:
    accuracy (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("eval/metrics/multiple_choice")
    >>> metric.compute(predictions=["B", "(C) blue", "a red one"], references=["B", "C", "A"])
    {'accuracy': 0.6666666666666666}
"""

_CITATION = """
@inproceedings{liu2024mmbench,
  title={MMBench: Is Your Multi-modal Model an All-around Player?},
  author={Liu, Yuan and others},
  booktitle={ECCV},
  year={2024}
}
"""

LEADING_LETTER = re.compile(r"^\(?([A-Z])(?:[.):]|$)")


def chosen_option(answer: str, options: list[str] | None = None) -> str | None:
    answer = answer.strip()
    match = LEADING_LETTER.match(answer)
    if match:
        return match.group(1)
    for index, option in enumerate(options or []):
        if answer.rstrip(".").lower() == option.strip().lower():
            return chr(ord("A") + index)
    return None


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultipleChoice(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, options=None):
        options = options or [None] * len(predictions)
        hits = [
            chosen_option(prediction, choices) == reference.strip().upper()
            for prediction, reference, choices in zip(predictions, references, options)
        ]
        return {"accuracy": sum(hits) / len(hits)}
