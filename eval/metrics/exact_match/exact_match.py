"""Exact match as LLaVA-1.5 scores GQA: its conversion script, then GQA's official eval.py."""

import datasets
import evaluate


_DESCRIPTION = """
Exact match of the answer with the single reference, as LLaVA-1.5 scores GQA. `model_vqa_loader.py` writes the answer
stripped, `scripts/convert_gqa_for_eval.py` removes its trailing periods and lower-cases it, and GQA's official
`eval.py` compares it with the reference as stored (`predicted == gold`). Nothing else is normalised: "the table" is
not "table", and "yes ." is not "yes".
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


def converted(answer: str) -> str:
    """The stripped answer as convert_gqa_for_eval.py writes it."""
    return answer.strip().rstrip(".").lower()


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
        hits = [converted(prediction) == reference for prediction, reference in zip(predictions, references)]
        return {"exact_match": sum(hits) / len(hits)}
