"""The main job end to end at toy sizes: every stage, then the report on both digit-world splits."""

import json

from tprl_eval.flops import load_configs, prefill_flops
from tprl_train.train_pruner import main


def test_main_job_reports_both_splits_with_coverage(base_dir, tmp_path):
    main(
        [
            *["--config", "train/configs/digit_world.yaml", "--base_model_name_or_path", base_dir],
            *["--output_dir", str(tmp_path), "--train_size", "32", "--autoencoder_steps", "2"],
            *["--num_demonstrations", "16", "--imitation_steps", "2", "--max_steps", "2", "--num_generations", "2"],
            *["--per_device_train_batch_size", "4", "--eval_size", "8", "--disable_tqdm", "true"],
        ]
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    for split in (results, results["digit_world_dense"]):
        methods = {row["method"] for row in split["rows"]}
        assert {"full", "tprl", "tprl (imitation only)", "cls_attention", "oracle"} <= methods
        assert all(0 <= row["named_target_coverage"] <= 1 for row in split["rows"])
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "6 digits per canvas" in report and "Named-target coverage per question type" in report

    # FLOPs at the tiny base's shapes, where TPRL's policy is costly, and at LLaVA-1.5-7B's, where it is not.
    assert results["flops_reference"] == "llava-1.5-7b" and "prefill FLOPs at llava-1.5-7b" in report
    from transformers import AutoProcessor

    from tprl_digit_world.batching import DigitWorldCollator
    from tprl_digit_world.evaluation import fixed_examples

    batch = DigitWorldCollator(AutoProcessor.from_pretrained(base_dir))(fixed_examples("test", 8, seed=0))
    text_tokens = round(float((batch["attention_mask"].sum(1) - 144).float().mean()))
    config, tprl_config = load_configs("llava-1.5-7b")
    full = prefill_flops(config, 576, text_tokens, method="full").total
    for row in results["rows"]:
        if row["method"] in ("tprl", "cls_attention"):  # 16 of 144 tokens: 64 of 576 at 7B
            flops = prefill_flops(config, 4 * row["kept_tokens"], text_tokens, row["method"], tprl_config=tprl_config)
            assert row["reference_flops_ratio"] == round(flops.total / full, 4)
    tprl = next(row for row in results["rows"] if row["method"] == "tprl" and row["kept_tokens"] == 16)
    assert tprl["reference_flops_ratio"] < 0.5 < tprl["flops_ratio"]
    for name in ("coverage_vs_kept.png", "kept_patches_dense.png", "training_curves.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
