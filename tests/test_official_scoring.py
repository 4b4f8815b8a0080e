"""Each metric module against the script behind LLaVA-1.5's published numbers, on edge-case answers.

The expected values are what the official scripts gave on these answers, run from their sources (LLaVA's
`m4c_evaluator.py`, `convert_gqa_for_eval.py`, `eval_pope.py` and `eval_science_qa.py`; GT-Vision-Lab's
`vqaEval.py` at its master, a013f00, under Python 3 with its two print statements converted; MME's `eval_tool/calculation.py`; OpenCompass's `tools/eval_mmbench.py` rules), not computed by hand.
"""

import pytest
from test_metrics import metric_module

from tprl_eval.metrics import load_metric


def ten(answer: str) -> list[str]:
    return [answer] * 10


VQAV2 = [  # (answer, annotators' answers, vqaEval.py's accuracy after LLaVA's EvalAI processing)
    ("Two.", ten("2"), 1.0),
    ("man's", ten("man's"), 0.0),
    ("man's", ["man's", "man's", "man's", "man's", "man's", "man's", "man's", "man's", "man's", "man"], 0.0),
    ("coca,cola", ten("coca cola"), 0.0),
    (
        "coca cola",
        ["coca,cola", "coca,cola", "coca,cola", "coca,cola", "coca,cola", "coke", "coke", "coke", "coke", "coke"],
        1.0,
    ),
    ("1,000", ten("1000"), 1.0),
    ("3.5", ten("3.5"), 1.0),
    ("YES!", ten("yes"), 1.0),
    ("The dog", ten("dog"), 1.0),
    ("a", ten("a"), 0.0),
    ("none", ten("0"), 1.0),
    ("ten", ["10", "10", "10", "10", "10", "10", "ten", "ten", "ten", "ten"], 1.0),
    ("black-and-white", ten("black and white"), 1.0),
    ("black and white", ten("black-and-white"), 0.0),
    ("left side", ten("left"), 0.0),
    ("2", ["2", "2", "3", "3", "3", "3", "3", "3", "3", "3"], 0.6),
    ("2", ["2", "2", "2", "3", "3", "3", "3", "3", "3", "3"], 0.9),
    ("whats", ten("what's"), 1.0),
    ("it's red", ten("it's red"), 0.0),
    ("yes\n", ten("yes"), 1.0),
    ("U.S.A.", ten("usa"), 1.0),
    ("5 people", ten("5"), 0.0),
    ("", ten("yes"), 0.0),
    (
        "red, white",
        ["red white", "red white", "red white", "red white", "red", "red", "red", "red", "red", "red"],
        1.0,
    ),
    ("10,000", ["10,000", "10,000", "10,000", "10,000", "10000", "10000", "10000", "10000", "10000", "10000"], 1.0),
    # Where master (a013f00) and the 2017 logic differ: annotators' answers that differ are normalised as the answer
    # is; answers that agree leave the answer as the EvalAI processor wrote it (it removes at most 32 periods).
    ("a red one", ["red"] * 7 + ["red one"] * 3, 0.9),
    ("no" + "." * 40, ten("no"), 0.0),
    ("man", ["the man"] * 8 + ["a man"] * 2, 1.0),
    ("2", ["two"] * 8 + ["2"] * 2, 1.0),
    ("don't", ["dont"] * 8 + ["no"] * 2, 1.0),
    ("two", ten("two"), 0.0),
]
TEXTVQA = [  # (answer, annotators' answers, TextVQAAccuracyEvaluator's accuracy)
    ("coca,cola", ten("coca cola"), 0.0),
    ("Coca Cola", ten("coca cola"), 1.0),
    ("STOP!", ten("stop"), 1.0),
    ("man's", ten("man's"), 1.0),
    ("1,000", ten("1000"), 1.0),
    ("whats", ten("what's"), 0.0),
    ("what?", ten("what"), 1.0),
    ("The End", ten("end"), 1.0),
    ("two", ten("2"), 1.0),
    ("3.5", ten("3.5"), 1.0),
    ("u.s.a.", ten("usa"), 1.0),
    ("stop", ["stop", "stop", "halt", "halt", "halt", "halt", "halt", "halt", "halt", "halt"], 0.6),
    ("stop", ["stop", "stop", "stop", "halt", "halt", "halt", "halt", "halt", "halt", "halt"], 0.9),
    ("dakota digital", ten("dakota"), 0.0),
    ("E-mail", ten("e mail"), 1.0),
    ("e-mail", ten("email"), 0.0),
    ("nokia's", ten("nokia 's"), 1.0),
    ("12:30", ten("12:30"), 1.0),
    ("$5", ten("$5"), 1.0),
    ("", ten("stop"), 0.0),
    ("yes\n", ten("yes"), 1.0),
    ("john's cafe", ten("johns cafe"), 0.0),
]
GQA = [  # (answer, reference, convert_gqa_for_eval.py + GQA eval.py)
    ("Yes.", "yes", 1.0),
    (" yes", "yes", 1.0),
    ("yes .", "yes", 0.0),
    ("Yes..", "yes", 1.0),
    ("the table", "table", 0.0),
    ("Table", "table", 1.0),
    ("left.", "left", 1.0),
    ("LEFT", "left", 1.0),
    ("no, it is not", "no", 0.0),
    ("yes", "Yes", 0.0),
    ("white and red", "white and red", 1.0),
    ("red and white", "white and red", 0.0),
    ("man's shirt", "man's shirt", 1.0),
    ("t-shirt", "t shirt", 0.0),
    ("2", "two", 0.0),
    ("pizza\n", "pizza", 1.0),
    ("No", "no", 1.0),
    ("bottom.", "bottom", 1.0),
    ("A cat", "cat", 0.0),
    ("yes!", "yes", 0.0),
]
POPE = [  # (answer, eval_pope.py's reading)
    ("No", "no"),
    ("no.", "no"),
    ("Yes, there is no doubt.", "no"),
    ("Yes,no doubt", "yes"),
    ("No,", "no"),
    ("NO", "yes"),
    ("There is not a dog.", "no"),
    ("Yes. There is no dog.", "yes"),
    ("No\nthere is", "yes"),
    ("Nothing", "yes"),
    ("It is not clear", "no"),
    ("", "yes"),
    ("Yes", "yes"),
    ("yes", "yes"),
    ("Not really", "yes"),
    ("I don't think so", "yes"),
    ("no there is", "no"),
    ("There is a dog, no doubt.", "no"),
    ("Yes there is. No.", "yes"),
    ("Absolutely not!", "yes"),
    ("nope", "yes"),
]
MME = [  # (answer, calculation.py's parse_pred_ans)
    ("Yes", "yes"),
    ("yes.", "yes"),
    (" No", "no"),
    ("Y", "other"),
    ("N.", "other"),
    ("Nope", "no"),
    ("The answer is yes", "other"),
    ("not sure", "no"),
    ("yesno", "yes"),
    ("No, it is not.", "no"),
    ("YES!", "yes"),
    ("no", "no"),
    ("Yes, it is.", "yes"),
    ("N", "other"),
    ("none", "no"),
    ("I think yes", "other"),
    ("Not at all", "no"),
    ("nobody", "no"),
    ("y e s", "other"),
    ("", "other"),
    ("yes\n", "yes"),
]
MMBENCH = [  # (answer, options, eval_mmbench.py's can_infer; None where it would ask GPT-3.5)
    ("B", ["red", "blue", "green"], "B"),
    ("The answer is B", ["red", "blue", "green"], "B"),
    ("A", ["red", "blue"], "A"),
    ("A cat is on the mat", ["cat", "dog"], "A"),
    ("(C) green", ["red", "blue", "green"], "C"),
    ("B. blue", ["red", "blue", "green"], "B"),
    ("C)", ["red", "blue", "green"], "C"),
    ("Answer:B", ["red", "blue"], None),
    ("Answer: B", ["red", "blue"], "B"),
    ("blue", ["red", "blue", "green"], "B"),
    ("It is blue.", ["red", "blue", "green"], "B"),
    ("blue or green", ["red", "blue", "green"], None),
    ("A or B", ["red", "blue"], None),
    ("E", ["red", "blue"], "E"),
    ("b", ["red", "blue"], None),
    ("B,", ["red", "blue"], "B"),
    ("(B).", ["red", "blue"], "B"),
    ("I'd say D.", ["a1", "b1", "c1", "d1"], "D"),
    ("none of these", ["red", "blue"], None),
    ("A. red B. blue", ["red", "blue"], None),
    ("A.", ["red", "blue"], "A"),
    ("The answer is A", ["dog", "cat"], None),
]
SCIENCEQA = [  # (answer, number of choices, eval_science_qa.py's predicted index)
    ("B", 2, 1),
    ("(B)", 2, -1),
    ("B)", 2, -1),
    ("B:", 2, -1),
    ("B. iron", 3, 1),
    ("B.", 3, -1),
    ("The answer is B.", 3, 1),
    ("The answer is B", 3, -1),
    ("The answer is B. The answer is C.", 3, -1),
    ("iron", 3, -1),
    ("E", 3, -1),
    ("C", 3, 2),
    ("b", 2, -1),
    (" A", 2, 0),
    ("A.iron", 2, -1),
    ("Answer: A", 2, -1),
    ("The answer is (A).", 2, -1),
    ("I think the answer is C!", 3, -1),
    ("A. ", 2, -1),
    ("D. wood", 4, 3),
    ("", 2, -1),
]


@pytest.mark.parametrize(("answer", "references", "official"), VQAV2)
def test_vqav2_scores_as_vqa_eval(answer, references, official):
    result = load_metric("vqa_accuracy", "vqav2").compute(predictions=[answer], references=[references])
    assert result["vqa_accuracy"] == pytest.approx(official)


@pytest.mark.parametrize(("answer", "references", "official"), TEXTVQA)
def test_textvqa_scores_as_m4c_evaluator(answer, references, official):
    result = load_metric("vqa_accuracy", "textvqa").compute(predictions=[answer], references=[references])
    assert result["vqa_accuracy"] == pytest.approx(official)


def test_textvqa_needs_ten_answers():
    with pytest.raises(ValueError, match="10 annotators"):
        load_metric("vqa_accuracy", "textvqa").compute(predictions=["stop"], references=[["stop"] * 9])


@pytest.mark.parametrize(("answer", "reference", "official"), GQA)
def test_gqa_scores_as_llava_conversion_and_exact_match(answer, reference, official):
    assert load_metric("exact_match").compute(predictions=[answer], references=[reference])["exact_match"] == official


@pytest.mark.parametrize(("answer", "official"), POPE)
def test_pope_reads_as_eval_pope(answer, official):
    assert metric_module("pope").parse_yes_no(answer) == official


@pytest.mark.parametrize(("answer", "official"), MME)
def test_mme_reads_as_calculation(answer, official):
    assert metric_module("mme").parse_yes_no(answer) == official


@pytest.mark.parametrize(("answer", "options", "official"), MMBENCH)
def test_mmbench_reads_as_can_infer(answer, options, official):
    assert metric_module("mmbench").chosen_option(answer, options) == official


@pytest.mark.parametrize(("answer", "num_choices", "official"), SCIENCEQA)
def test_scienceqa_reads_as_eval_science_qa(answer, num_choices, official):
    assert metric_module("scienceqa").chosen_index(answer, num_choices) == official
