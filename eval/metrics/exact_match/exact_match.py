"""Exact match after LLaVA's light normalisation (GQA's metric)."""

import datasets
import evaluate


_DESCRIPTION = """
Exact match of the answer with the single reference, as LLaVA-1.5 scores GQA: both lower-cased, stripped, and a
trailing period removed ("Yes." == "yes"). Nothing else is normalised.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[str]`): the reference answers.
Returns:
    exact_match (`float`): the share of exact matches, in [0, 1].
Examples:
    >>> metric = evaluate.load("eval/metrics/exact_match")
    >>> metric.compute(predictions=["Left."], references=["left"])
    {'exact_match': 1.0}
"""

_CITATION = """
@inproceedings{hudson2019gqa,
  title={GQA: A New Dataset for Real-World Visual Reasoning and Compositional Question Answering},
  author={Hudson, Drew A and Manning, Christopher D},
  booktitle={CVPR},
  year={2019}
}
"""


def normalize(answer: str) -> str:
    return answer.strip().rstrip(".").strip().lower()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        hits = [
            normalize(prediction) == normalize(reference) for prediction, reference in zip(predictions, references)
        ]
        return {"exact_match": sum(hits) / len(hits)}
