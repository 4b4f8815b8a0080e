import json

import pytest

from tprl_eval.cli import EvalArguments, main, run


def test_eval_writes_results_for_every_method_and_budget(base_dir, tmp_path):
    args = EvalArguments(
        model=base_dir,
        methods="full,random,uniform,oracle",
        keep_ratios="0.3333,0.1111",
        num_examples=16,
        output_dir=str(tmp_path),
    )
    results = run(args)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    rows = {(r["method"], r["kept_tokens"]) for r in saved["rows"]}
    assert rows == {("full", 144)} | {(m, k) for m in ("random", "uniform", "oracle") for k in (48, 16)}
    from tprl_digit_world.evaluation import answer_prior, fixed_examples

    prior = answer_prior(fixed_examples("train", 4000, seed=100), fixed_examples("test", 16, seed=0))
    assert saved["answer_prior"] == prior  # the training split's most frequent answers, scored on the questions asked
    for row in saved["rows"]:
        assert set(row["per_question_type"]) == {"color", "digit", "presence", "count"}
    assert "| oracle | 16 |" in (tmp_path / "results.md").read_text()
    dense = saved["digit_world_dense"]
    assert (
        dense["canvas"] == "6 digits per canvas" and {(r["method"], r["kept_tokens"]) for r in dense["rows"]} == rows
    )
    coverage = {(r["method"], r["kept_tokens"]): r["named_target_coverage"] for r in dense["rows"]}
    assert coverage[("full", 144)] == coverage[("oracle", 48)] == 1.0  # 48 tokens hold any question's named digits
    for name in ("accuracy_vs_kept_dense.png", "kept_patches_dense.png", "coverage_vs_kept.png"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": "full,magic"}, "Unknown method"),
        ({"keep_ratios": "0.5,1.5"}, r"keep_ratios must lie in \(0, 1\]"),
        ({"keep_ratios": "half"}, "comma-separated numbers"),
        ({"num_examples": 0}, "must be positive"),
    ],
)
def test_bad_arguments(base_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvalArguments(model=base_dir, **kwargs)


def test_tprl_method_needs_a_trained_checkpoint(base_dir, tmp_path):
    with pytest.raises(ValueError, match="needs a trained TPRL checkpoint"):
        run(EvalArguments(model=base_dir, methods="full,tprl", num_examples=4, output_dir=str(tmp_path)))


@pytest.mark.slow
def test_two_processes_give_the_numbers_of_one(base_dir, tmp_path):
    """`accelerate launch` of two processes: batches shared out, results gathered, identical."""
    from conftest import launch_two_cpu_processes

    arguments = [
        *["--model", base_dir, "--methods", "full,random,fastv,oracle", "--keep_ratios", "0.3333,0.1111"],
        *["--num_examples", "40", "--batch_size", "8"],
    ]
    main([*arguments, "--output_dir", str(tmp_path / "one")])
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    launch_two_cpu_processes("-m", "tprl_eval.cli", *arguments, "--output_dir", str(tmp_path / "two"))
    sharded = json.loads((tmp_path / "two" / "results.json").read_text())
    assert sharded["rows"] == single["rows"]
    assert sharded["digit_world_dense"]["rows"] == single["digit_world_dense"]["rows"]
    assert (tmp_path / "two" / "kept_patches.png").stat().st_size > 0
