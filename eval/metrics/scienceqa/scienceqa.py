"""ScienceQA accuracy, as LLaVA's eval_science_qa.py reads the answers."""

import re

import datasets
import evaluate


_DESCRIPTION = """
ScienceQA as LLaVA-1.5 scores it (`llava/eval/eval_science_qa.py`), on the answer `model_vqa_science.py` writes
stripped. The chosen option is the answer itself if it is one of "A"-"E"; else its first letter if the answer starts
with one of them followed by ". " ("B. iron"); else the letter of the single match of the regular expression
`The answer is ([A-Z]).` (any character after the letter, so "The answer is B" at the very end does not match); else
none ("FAILED"). A letter beyond the question's choices is wrong. "(B)", "B)", "B:" or the option's text are wrong.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[int]`): the right choice's index (ScienceQA's `answer`).
    num_choices (`list[int]`): how many choices each question has.
Returns:
    accuracy (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("eval/metrics/scienceqa")
    >>> metric.compute(predictions=["B", "The answer is A.", "(A)"], references=[1, 0, 0], num_choices=[2, 3, 2])
    {'accuracy': 0.6666666666666666}
"""

_CITATION = """
@inproceedings{lu2022learn,
  title={Learn to Explain: Multimodal Reasoning via Thought Chains for Science Question Answering},
  author={Lu, Pan and others},
  booktitle={NeurIPS},
  year={2022}
}
"""

OPTIONS = ("A", "B", "C", "D", "E")
ANSWER_SENTENCE = re.compile(r"The answer is ([A-Z]).")


def parsed_answer(text: str) -> str:
    """The letter eval_science_qa.py reads from an answer, or "FAILED"."""
    text = text.strip()
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = ANSWER_SENTENCE.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def chosen_index(text: str, num_choices: int) -> int:
    """`get_pred_idx`: the chosen choice's index, -1 if none or beyond the choices."""
    answer = parsed_answer(text)
    return OPTIONS.index(answer) if answer in OPTIONS[:num_choices] else -1


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ScienceQA(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("int32"),
                    "num_choices": datasets.Value("int32"),
                }
            ),
        )

    def _compute(self, predictions, references, num_choices):
        hits = [chosen_index(p, n) == r for p, r, n in zip(predictions, references, num_choices)]
        return {"accuracy": sum(hits) / len(hits)}
