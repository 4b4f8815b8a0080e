"""POPE: accuracy, precision, recall, F1 and yes ratio of yes/no answers about object presence."""

import datasets
import evaluate


_DESCRIPTION = """
POPE as LLaVA's `eval_pope.py` scores it: the answer's first sentence (up to its first "."), commas deleted, split
on single spaces; if a word is exactly "No", "no" or "not" the answer is "no", else "yes"; "yes" is the positive
class. (So "Yes,no" is one word and "yes"; "No\nthere" is one word and "yes".) The yes ratio is the share of "yes"
*predictions* (the official definition; lmms-eval's aggregate reports the share of "yes" references instead).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[str]`): "yes" or "no".
Returns:
    accuracy, precision, recall, f1, yes_ratio (`float`s in [0, 1]).
Examples:
    >>> metric = evaluate.load("eval/metrics/pope")
    >>> metric.compute(predictions=["Yes, there is.", "No."], references=["yes", "yes"])
    {'accuracy': 0.5, 'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'yes_ratio': 0.5}
"""

_CITATION = """
@inproceedings{li2023evaluating,
  title={Evaluating Object Hallucination in Large Vision-Language Models},
  author={Li, Yifan and Du, Yifan and Zhou, Kun and Wang, Jinpeng and Zhao, Wayne Xin and Wen, Ji-Rong},
  booktitle={EMNLP},
  year={2023}
}
"""


def parse_yes_no(answer: str) -> str:
    words = answer.split(".")[0].replace(",", "").split(" ")
    return "no" if any(word in ("No", "not", "no") for word in words) else "yes"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class POPE(evaluate.Metric):
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
        references = [reference.strip().lower() for reference in references]
        if any(reference not in ("yes", "no") for reference in references):
            raise ValueError("POPE references must be 'yes' or 'no'.")
        predicted = [parse_yes_no(prediction) for prediction in predictions]
        pairs = list(zip(predicted, references))
        true_positive = sum(p == "yes" and r == "yes" for p, r in pairs)
        false_positive = sum(p == "yes" and r == "no" for p, r in pairs)
        false_negative = sum(p == "no" and r == "yes" for p, r in pairs)
        precision = true_positive / (true_positive + false_positive) if true_positive + false_positive else 0.0
        recall = true_positive / (true_positive + false_negative) if true_positive + false_negative else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {
            "accuracy": sum(p == r for p, r in pairs) / len(pairs),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "yes_ratio": predicted.count("yes") / len(predicted),
        }
