"""The lmms-lab benchmark adapters on local fixtures in the same layouts and schemas, and tprl-eval over them."""

import json

import datasets
import pytest
from lmms_fixtures import FIXTURES, RIGHT_ANSWERS, write_fixture

from tprl_eval.benchmarks import BENCHMARKS
from tprl_eval.cli import EvalArguments, run


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory):
    """Keeps the fixtures' arrow caches out of the user's datasets cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("datasets_cache"))
        yield


@pytest.fixture(scope="module")
def fixture_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmms")
    return {name: str(write_fixture(root, name)) for name in FIXTURES}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_right_answers_score_full_marks_and_wrong_ones_zero(fixture_dirs, name):
    benchmark = BENCHMARKS[name]
    rows = benchmark.load(fixture_dirs[name])
    assert all(row["image"].mode == "RGB" for row in rows)
    full_marks = 200 * len({row["category"] for row in rows}) if name == "mme" else 100
    assert benchmark.evaluate(RIGHT_ANSWERS[name], rows)["score"] == pytest.approx(full_marks)
    # POPE reads an answer without "no"/"not" as yes: on subsets of one yes and one no, F1 = 2/3.
    nonsense = 100 * 2 / 3 if name == "pope" else 0
    assert benchmark.evaluate(["zebra"] * len(rows), rows)["score"] == pytest.approx(nonsense)


def test_prompts_follow_llava_1_5_and_lmms_eval(fixture_dirs):
    short = "\nAnswer the question using a single word or phrase."
    letter = "\nAnswer with the option's letter from the given choices directly."
    gqa = BENCHMARKS["gqa"].load(fixture_dirs["gqa"])
    assert BENCHMARKS["gqa"].prompt(gqa[0]) == f"Is the sky blue?{short}"
    mmbench = BENCHMARKS["mmbench"].load(fixture_dirs["mmbench"])
    assert BENCHMARKS["mmbench"].prompt(mmbench[1]) == f"Look closely.\nHow many cats?\nA. 1\nB. 2{letter}"
    assert BENCHMARKS["mmbench"].prompt(mmbench[1], "lmms_eval") == (
        f"Look closely. How many cats? There are several options:\nA. 1\nB. 2\n{letter}"
    )
    assert BENCHMARKS["mmbench"].prompt(mmbench[0], "lmms_eval").startswith("What colour is the car? There are")
    sqa = BENCHMARKS["scienceqa_img"].load(fixture_dirs["scienceqa_img"])
    assert BENCHMARKS["scienceqa_img"].prompt(sqa[1]) == (
        f"Context: Think of magnets.\nWhich is a metal?\nA. iron\nB. wood\nC. glass{letter}"
    )
    assert BENCHMARKS["scienceqa_img"].prompt(sqa[0]).startswith("Which is a mammal?\nA. shark")
    mme = BENCHMARKS["mme"].load(fixture_dirs["mme"])
    assert BENCHMARKS["mme"].prompt(mme[0]) == f"Is there a dog?{short}"  # " Please answer yes or no." replaced
    textvqa = BENCHMARKS["textvqa"].load(fixture_dirs["textvqa"])
    assert (
        BENCHMARKS["textvqa"].prompt(textvqa[0]) == f"What does the sign say?\nReference OCR token: stop, sign{short}"
    )
    assert BENCHMARKS["textvqa"].prompt(textvqa[1]) == f"What number is it?{short}"  # no OCR tokens
    assert BENCHMARKS["textvqa"].prompt(textvqa[0], "lmms_eval") == f"What does the sign say?{short}"


@pytest.mark.parametrize(
    ("name", "llava", "lmms_eval"),
    [("gqa", 128, 16), ("vqav2", 128, 16), ("textvqa", 128, 1024), ("pope", 128, 128), ("mme", 128, 16),
     ("mmbench", 1024, 1024), ("scienceqa_img", 1024, 16)],
)  # fmt: skip
def test_answer_lengths_follow_each_harness(name, llava, lmms_eval):
    assert (BENCHMARKS[name].max_new_tokens("llava"), BENCHMARKS[name].max_new_tokens("lmms_eval")) == (
        llava,
        lmms_eval,
    )


def test_gqa_joins_images_and_limit_caps_rows(fixture_dirs):
    rows = BENCHMARKS["gqa"].load(fixture_dirs["gqa"], limit=2)
    assert len(rows) == 2
    assert rows[0]["image"].size == (40, 32)


def test_dataset_without_a_required_column_is_refused(tmp_path):
    path = tmp_path / "pope"
    (path / "data").mkdir(parents=True)
    datasets.Dataset.from_list([{"question": "Is there a dog?", "answer": "yes"}]).to_parquet(
        str(path / "data" / "test-00000-of-00001.parquet")
    )
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['question_id', 'category', 'image'\]"):
        BENCHMARKS["pope"].load(str(path))


def test_empty_split_is_refused(tmp_path):
    path = tmp_path / "textvqa"
    (path / "data").mkdir(parents=True)
    features = datasets.Features(
        {"question_id": datasets.Value("int64"), "question": datasets.Value("string"),
         "answers": datasets.Sequence(datasets.Value("string")), "image": datasets.Image()}
    )  # fmt: skip
    datasets.Dataset.from_dict({k: [] for k in features}, features=features).to_parquet(
        str(path / "data" / "validation-00000-of-00001.parquet")
    )
    with pytest.raises(ValueError, match="empty"):
        BENCHMARKS["textvqa"].load(str(path))


def test_missing_split_is_a_clear_error(tmp_path, fixture_dirs):
    with pytest.raises(ValueError, match="Cannot load textvqa"):
        BENCHMARKS["textvqa"].load(fixture_dirs["pope"])  # POPE's copy has no validation split


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"benchmarks": "digit_world,imagenet"}, "Unknown benchmark"),
        ({"benchmarks": "pope", "dataset_paths": "gqa=/data"}, "not among the evaluated benchmarks"),
        ({"benchmarks": "pope", "dataset_paths": "pope"}, "'name=path' pairs"),
        ({"limit": 0}, "must be positive"),
    ],
)
def test_bad_benchmark_arguments(base_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvalArguments(model=base_dir, **kwargs)


def test_eval_runs_every_benchmark_and_writes_the_paper_table(base_dir, fixture_dirs, tmp_path):
    names = sorted(FIXTURES)
    args = EvalArguments(
        model=base_dir,
        benchmarks=",".join(["digit_world", *names]),
        dataset_paths=",".join(f"{name}={path}" for name, path in fixture_dirs.items()),
        methods="full,random,fastv,oracle",
        keep_ratios="0.3333",
        num_examples=8,
        max_new_tokens=3,
        batch_size=4,
        output_dir=str(tmp_path),
    )
    results = run(args)
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    for name in names:
        rows = results["benchmarks"][name]["rows"]
        assert [(r["method"], r["kept_tokens"]) for r in rows] == [("full", 144), ("random", 48), ("fastv", 48)]
    report = (tmp_path / "results.md").read_text()
    assert "| method | kept tokens | digit_world | " + " | ".join(names) + " | avg. relative to full |" in report
    assert "| oracle | 48 |" in report  # digit world's own table; the paper table leaves the oracle out
    assert (tmp_path / "benchmarks_vs_kept.png").stat().st_size > 0
    assert (tmp_path / "accuracy_vs_kept.png").stat().st_size > 0
