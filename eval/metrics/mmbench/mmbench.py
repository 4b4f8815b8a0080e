"""MMBench accuracy with CircularEval, as its official evaluation reads the answers."""

from collections import defaultdict

import datasets
import evaluate


_DESCRIPTION = """
MMBench as its official evaluation scores it (OpenCompass `tools/eval_mmbench.py`, the MMBench-Dev evaluation of
the `mmbench_dev_20230712` release LLaVA-1.5 was scored on). The chosen option is read by its rules (`can_infer`):
1. `can_infer_option`: split the answer on whitespace; if exactly one of A-E stands alone, that letter, unless "A" is
   among more than three words (it may be the article); else the one letter written as "B.", "B,", "B:", "B)", "B).",
   "(B)", "(B).", ":B", ":B,", ":B.", ":B)" or ":B)." (the first such form that exactly one letter takes);
2. else `can_infer_text`: the one option whose text (lower-cased) is inside the lower-cased answer.
An answer these rules cannot read goes to GPT-3.5 in the official script; here it is wrong (`unmatched` counts them).
CircularEval: lmms-lab/MMBench repeats each question with its options rotated, at index + k * 1e6; a question counts
as right only if every copy present is answered right. `single_pass_accuracy` scores the first copies alone.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[str]`): the right option's letter.
    options (`list[list[str]]`): the options' texts in letter order (A, B, ...).
    indices (`list[int]`): lmms-lab/MMBench's `index`; a rotated copy has the original's index plus k * 1e6.
Returns:
    accuracy (`float`): CircularEval accuracy over the questions whose first copy is given, in [0, 1];
    single_pass_accuracy (`float`); num_questions (`int`); unmatched (`int`): answers no rule could read.
Examples:
    >>> metric = evaluate.load("eval/metrics/mmbench")
    >>> metric.compute(predictions=["B", "The answer is C"], references=["B", "C"], options=[["x", "y"], ["y", "z", "x"]],
    ...                indices=[7, 1000007])["accuracy"]
    1.0
"""

_CITATION = """
@inproceedings{liu2024mmbench,
  title={MMBench: Is Your Multi-modal Model an All-around Player?},
  author={Liu, Yuan and others},
  booktitle={ECCV},
  year={2024}
}
"""

LETTERS = "ABCDE"
LETTER_FORMS = (
    ("", "."), ("", ","), ("", ":"), ("", ")"), ("", ")."), ("(", ")"), ("(", ")."),
    (":", ""), (":", ","), (":", "."), (":", ")"), (":", ")."),
)  # fmt: skip
COPY_OFFSET = int(1e6)


def can_infer_option(answer: str) -> str | None:
    words = [word.strip() for word in answer.split()]

    def count(prefix: str = "", suffix: str = "") -> int:
        return sum(prefix + letter + suffix in words for letter in LETTERS)

    if count() == 1:
        for letter in LETTERS:
            if "A" in words and len(words) > 3:
                break  # "A" may be the article
            if letter in words:
                return letter
    for prefix, suffix in LETTER_FORMS:
        if count(prefix, suffix) == 1:
            return next(letter for letter in LETTERS if prefix + letter + suffix in words)
    return None


def can_infer_text(answer: str, options: list[str]) -> str | None:
    found = [LETTERS[i] for i, option in enumerate(options) if str(option).lower() in answer.lower()]
    return found[0] if len(found) == 1 else None


def chosen_option(answer: str, options: list[str]) -> str | None:
    """The official `can_infer`: the letter the answer names, else the one option it contains, else None."""
    return can_infer_option(answer) or can_infer_text(answer, options)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MMBench(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "options": datasets.Sequence(datasets.Value("string")),
                    "indices": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, options, indices):
        chosen = [chosen_option(p, o) for p, o in zip(predictions, options)]
        copies = defaultdict(list)
        for letter, reference, index in zip(chosen, references, indices):
            copies[index % COPY_OFFSET].append((index, letter == reference.strip().upper()))
        questions = [index for index in indices if index < COPY_OFFSET]
        if not questions:
            raise ValueError("MMBench needs the first copy of each question (index < 1e6) among the predictions.")
        circular = [all(right for _, right in copies[index]) for index in questions]
        single = [dict(copies[index])[index] for index in questions]
        return {
            "accuracy": sum(circular) / len(questions),
            "single_pass_accuracy": sum(single) / len(questions),
            "num_questions": len(questions),
            "unmatched": sum(letter is None for letter in chosen),
        }
