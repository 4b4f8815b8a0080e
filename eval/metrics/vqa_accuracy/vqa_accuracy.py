"""VQA accuracy as the scripts behind LLaVA-1.5's published numbers compute it: VQAv2 and TextVQA."""

import re

import datasets
import evaluate


_DESCRIPTION = """
VQA accuracy: an answer is 100% right if at least 3 of the annotators gave it. The score averages
min(#matching annotators / 3, 1) over the leave-one-annotator-out subsets of the annotators' answers. Two configs, each
the exact pipeline behind LLaVA-1.5's numbers:

- `vqav2` (default): LLaVA's `scripts/convert_vqav2_for_submission.py` runs the EvalAI answer processor
  (`llava/eval/m4c_evaluator.py: EvalAIAnswerProcessor`, from MMF) on the answer, then the official `vqaEval.py`
  (GT-Vision-Lab/VQA's master, a013f00, "Fixed processing answers bug") scores it: where the annotators' answers
  differ from each other, theirs and the answer have their punctuation, number words, articles and contractions
  normalised; where they all agree, nothing is normalised (they are stored normalised).
- `textvqa`: LLaVA's `llava/eval/eval_textvqa.py` (`TextVQAAccuracyEvaluator` in `m4c_evaluator.py`): the EvalAI
  processor on the answer and on each of the 10 annotators' answers, which it requires.

The EvalAI processor lower-cases, deletes "," and "?", splits "'s" off ("man's" -> "man 's"), then normalises as
`vqaEval.py` does. Both scripts pass `re.UNICODE` (32) where `re.sub` takes its count: at most 32 periods are removed.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): the model's answers.
    references (`list[list[str]]`): the annotators' answers per question (10 in VQAv2 and TextVQA).
Returns:
    vqa_accuracy (`float`): mean accuracy in [0, 1].
Examples:
    >>> metric = evaluate.load("eval/metrics/vqa_accuracy", "vqav2")
    >>> metric.compute(predictions=["Two."], references=[["2"] * 10])
    {'vqa_accuracy': 1.0}
"""

_CITATION = """
@inproceedings{goyal2017making,
  title={Making the V in VQA Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={CVPR},
  year={2017}
}
@inproceedings{singh2019towards,
  title={Towards VQA Models That Can Read},
  author={Singh, Amanpreet and others},
  booktitle={CVPR},
  year={2019}
}
"""

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = ("a", "an", "the")
PUNCTUATION = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
VQA_EVAL_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(,)+(?=\d)")
SCRIPT_SUB_COUNT = re.UNICODE  # both scripts pass the flag where re.sub takes its count (32)


def process_punctuation(text: str, comma_strip: re.Pattern = VQA_EVAL_COMMA_STRIP) -> str:
    """`processPunctuation`: a mark next to a space (or any mark, if digits hold a comma) goes, else becomes a space."""
    out = text
    for mark in PUNCTUATION:
        if f"{mark} " in text or f" {mark}" in text or comma_strip.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, SCRIPT_SUB_COUNT)


def process_digit_article(text: str) -> str:
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def evalai_answer(answer: str) -> str:
    """`EvalAIAnswerProcessor.__call__` of LLaVA's m4c_evaluator.py."""
    answer = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer, EVALAI_COMMA_STRIP))


def leave_one_out_accuracy(prediction: str, answers: list[str]) -> float:
    scores = [min(1.0, sum(a == prediction for j, a in enumerate(answers) if j != i) / 3) for i in range(len(answers))]
    return sum(scores) / len(scores)


def vqav2_accuracy(prediction: str, answers: list[str]) -> float:
    """One question as master's `vqaEval.evaluate` scores the answer that LLaVA's submission script wrote."""
    prediction = evalai_answer(prediction).replace("\n", " ").replace("\t", " ").strip()
    answers = [answer.replace("\n", " ").replace("\t", " ").strip() for answer in answers]
    if len(set(answers)) > 1:
        answers = [process_digit_article(process_punctuation(answer)) for answer in answers]
        prediction = process_digit_article(process_punctuation(prediction))
    return leave_one_out_accuracy(prediction, answers)


def textvqa_accuracy(prediction: str, answers: list[str]) -> float:
    """One question as `TextVQAAccuracyEvaluator.eval_pred_list` scores it."""
    if len(answers) != 10:
        raise ValueError(f"TextVQA's evaluator needs the 10 annotators' answers per question, got {len(answers)}.")
    return leave_one_out_accuracy(evalai_answer(prediction), [evalai_answer(answer) for answer in answers])


SCORERS = {"vqav2": vqav2_accuracy, "textvqa": textvqa_accuracy}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VQAAccuracy(evaluate.Metric):
    def _info(self):
        if self.config_name not in ("default", *SCORERS):
            raise ValueError(f"Unknown vqa_accuracy config {self.config_name!r}; choose from {tuple(SCORERS)}.")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references):
        if any(len(answers) == 0 for answers in references):
            raise ValueError("Every question needs at least one reference answer.")
        score = SCORERS["vqav2" if self.config_name == "default" else self.config_name]
        scores = [score(prediction, answers) for prediction, answers in zip(predictions, references)]
        return {"vqa_accuracy": sum(scores) / len(scores)}
