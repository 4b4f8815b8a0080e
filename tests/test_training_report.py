"""The main job end to end at toy sizes: every stage, then the report on both digit-world splits."""

import json

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
    for name in ("coverage_vs_kept.png", "kept_patches_dense.png", "training_curves.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
