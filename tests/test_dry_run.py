"""`tprl-train --dry_run` of the LLaVA-1.5-7B recipe: every stage at its real widths and token counts, 2 layers."""

import json
from pathlib import Path

import pytest
from transformers import AutoConfig

from tprl_train.train_pruner import main


RECIPE = str(Path(__file__).parents[1] / "train" / "configs" / "llava-1.5-7b.yaml")


@pytest.mark.slow
def test_dry_run_of_the_7b_recipe_runs_every_stage_and_projects_the_real_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the base's config comes from the shipped copy
    main(["--config", RECIPE, "--dry_run", "--use_cpu", "true", "--output_dir", str(tmp_path)])
    dry = tmp_path / "dry_run"
    base = AutoConfig.from_pretrained(dry / "base")
    assert (base.text_config.hidden_size, base.text_config.intermediate_size, base.vision_config.hidden_size) == (
        4096, 11008, 1024
    )  # fmt: skip
    assert (base.text_config.num_hidden_layers, base.vision_config.num_hidden_layers, base.image_seq_length) == (
        2, 2, 576
    )  # fmt: skip
    assert all((dry / stage / "final").is_dir() for stage in ("autoencoder", "imitation", "ppo"))
    rows = {row["stage"]: row for row in json.loads((dry / "dry_run.json").read_text())}
    # The recipe's real run: 2000 autoencoder steps of 16, 20000 demonstrations, 2000 rollouts of 8 x 8 episodes.
    assert {stage: row["real_examples"] for stage, row in rows.items()} == {
        "autoencoder": 32000, "demonstrations": 20000, "imitation": 20000, "ppo": 128000
    }  # fmt: skip
    for row in rows.values():
        assert row["dry_seconds"] > 0 and row["projected_gpu_hours"] > 0
        assert row["projected_memory_gib"] > 13  # LLaVA-1.5-7B's weights in bf16 alone are 13.2 GiB
        # Every stage shared out over the processes, the demonstrations too.
        per_processes = row["projected_gpu_hours_per_processes"]
        assert per_processes["1"] == row["projected_gpu_hours"] and per_processes["8"] == pytest.approx(
            row["projected_gpu_hours"] / 8
        )
    output = capsys.readouterr().out
    assert "Projected GPU time of the whole run" in output and " h on 1, " in output and " h on 8." in output
    assert "| projected GPU time, 1 process (h) | projected GPU time, 8 processes (h) |" in output
