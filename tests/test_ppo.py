"""PPO on the Trainer loop (rollouts, advantages, updates, resume, configuration) and the main job around it."""

import json
import re
import shutil

import datasets
import pytest
import torch
from conftest import command_error
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoProcessor

from modeling_tprl import TPRLForConditionalGeneration
from tprl_digit_world import EMBEDDED_BASE_PATH
from tprl_train.data import VQACollator
from tprl_train.demonstrations import demonstrated_examples, make_demonstrations
from tprl_train.imitation import DemonstrationDataset, encode_examples, relevance_loss
from tprl_train.model_config import TPRLModelConfig
from tprl_train.ppo_config import TPRLPPOConfig
from tprl_train.ppo_trainer import TPRLPPOTrainer, compute_gae, leave_one_out_advantages, whiten
from tprl_train.train_pruner import PrunerTrainingArguments, load_training_data, main


def test_whiten_with_a_std_floor_keeps_near_constant_advantages_small():
    noise = torch.tensor([0.001, -0.001, 0.002, -0.002])
    assert whiten(noise).std(unbiased=False).item() == pytest.approx(1.0, abs=1e-2)  # TRL's whitening: unit size
    floored = whiten(noise, std_floor=0.1)
    assert floored.abs().max().item() == pytest.approx(0.02, abs=1e-6)  # divided by the floor, not by 0.0016
    spread = torch.tensor([1.0, -1.0, 2.0, -2.0])
    assert torch.allclose(whiten(spread, std_floor=0.1), whiten(spread))  # above the floor: unchanged


def test_gae_against_a_hand_computed_example():
    rewards, values = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 0.2, 0.1]])
    advantages, returns = compute_gae(rewards, values, gamma=0.9, lam=0.8)
    # t=2: 2 - 0.1 = 1.9; t=1: (0 + 0.9 * 0.1 - 0.2) + 0.72 * 1.9 = 1.258; t=0: (1 + 0.18 - 0.5) + 0.72 * 1.258
    assert advantages.tolist()[0] == pytest.approx([1.58576, 1.258, 1.9])
    assert returns.tolist()[0] == pytest.approx([2.08576, 1.458, 2.0])


def test_leave_one_out_advantages_against_a_hand_computed_example():
    # Two questions, three episodes each, two steps. Question 2's episodes all score alike: zero advantage.
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, -1.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    advantages, returns = leave_one_out_advantages(rewards, group_size=3)
    assert returns.tolist() == [[1.0, 1.0], [0.0, 0.0], [0.0, -1.0], [1.0, 0.5], [1.0, 0.5], [1.0, 0.5]]
    # Episode 1 at step 0: 1 - mean(0, 0) = 1; at step 1: 1 - mean(0, -1) = 1.5.
    assert advantages[:3].tolist() == [[1.0, 1.5], [-0.5, 0.0], [-0.5, -1.5]]
    assert advantages[3:].abs().max().item() == 0.0


def make_trainer(base_dir, processor, dataset, tmp_path, trainer_kwargs=None, **overrides):
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    config = {
        "output_dir": str(tmp_path),
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "num_generations": 1,
        "num_ppo_epochs": 1,
        "save_steps": 1,
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }
    return TPRLPPOTrainer(
        model,
        TPRLPPOConfig(**config),
        dataset,
        VQACollator(processor),
        processing_class=processor,
        **(trainer_kwargs or {}),
    )


def test_episodes_per_question_share_their_question_and_give_group_advantages(
    base_dir, processor, vqa_dataset, vqa_batch, tmp_path
):
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path, num_generations=3, kl_coef=0.0)
    torch.manual_seed(0)
    rollout = trainer.rollout(vqa_batch, keep_ratio=1 / 9)
    questions = len(vqa_batch["input_ids"])
    assert len(rollout.values) == 3 * questions and len(rollout.question_embeds) == questions
    assert rollout.episode_question.tolist() == [question for question in range(questions) for _ in range(3)]
    assert not torch.equal(rollout.picks[-1][0::3], rollout.picks[-1][1::3])  # sampled apart
    # Trained: exactly the questions whose episodes end differently (without KL term, the return is the last score
    # minus the full one, the same for all of a question's episodes).
    outcomes = rollout.returns[:, 0].view(-1, 3)
    assert rollout.trained.view(-1, 3).tolist() == [[bool(row.amax() > row.amin())] * 3 for row in outcomes]
    assert rollout.metrics["objective/trained_questions"] == rollout.trained.float().mean().item()
    minibatches = trainer.minibatches(rollout)
    assert len(minibatches) == trainer.args.steps_per_rollout
    assert sorted(minibatches[0]["rows"].tolist()) == rollout.trained.nonzero()[:, 0].tolist()
    rollout.trained[:] = False  # nothing to learn from: zero gradients
    policy = trainer.model.tprl_model.pruner.policy
    loss, stats = trainer.ppo_loss(policy, rollout, trainer.minibatches(rollout)[0]["rows"])
    loss.backward()
    assert stats == {} and all(not p.grad.any() for p in policy.parameters())


def test_ppo_steps_lower_the_loss_on_a_fixed_rollout(base_dir, processor, vqa_dataset, vqa_batch, tmp_path):
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path, learning_rate=3e-3)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    torch.manual_seed(0)
    rollout = trainer.rollout(vqa_batch, keep_ratio=1 / 9)
    policy, everything = trainer.model.tprl_model.pruner.policy, torch.arange(len(rollout.values))
    before, stats = trainer.ppo_loss(policy, rollout, everything)
    assert stats["policy/approxkl_avg"] < 1e-10 and stats["policy/clipfrac_avg"] == 0.0  # the rollout's own policy
    for _ in range(4):
        loss, _ = trainer.ppo_loss(policy, rollout, everything)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    after, _ = trainer.ppo_loss(policy, rollout, everything)
    assert after.item() < before.item()


def test_the_relevance_target_stays_on_during_ppo(base_dir, processor, vqa_dataset, vqa_batch, tmp_path):
    examples, collator = vqa_dataset.select(range(8)), VQACollator(processor)
    torch.manual_seed(0)
    teacher_model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    demonstrations = make_demonstrations(
        teacher_model, examples, collator, [1 / 9], 8, "leave_one_in_or_cls_attention"
    )
    inputs = encode_examples(teacher_model, demonstrated_examples(demonstrations), collator, batch_size=8)
    relevance = DemonstrationDataset(demonstrations, inputs, relevance_tokens=4, relevance_threshold=0.0)
    kwargs = {"relevance_dataset": relevance, "relevance_coef": 0.5, "relevance_batch_size": 4}
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path, trainer_kwargs=kwargs)
    model = trainer.model.tprl_model
    torch.manual_seed(0)
    rollout = trainer.rollout(vqa_batch, keep_ratio=1 / 9)
    minibatch = {"rollout": rollout, "rows": torch.arange(len(rollout.values))}
    ppo, _ = trainer.ppo_loss(model.pruner.policy, rollout, minibatch["rows"])
    loss, stats = trainer.stage_loss(model, minibatch)
    # The step's draw of 4 demonstrated examples, scored along the policy's own episode at the smallest budget.
    drawn = torch.randint(8, (4,), generator=torch.Generator().manual_seed(trainer.args.seed)).tolist()
    batch = relevance.relevance_batch(drawn)
    policy = model.pruner.policy
    episode_inputs = policy.embed_inputs(
        batch["latents"], model.get_input_embeddings()(batch["question_ids"]), batch["question_mask"]
    )
    expected = relevance_loss(policy.episode(episode_inputs, 16).keep_logits, batch["relevant"])
    assert stats["loss/relevance"] == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(ppo.item() + 0.5 * expected.item(), rel=1e-5)
    trainer.train()
    assert any("loss/relevance" in record for record in trainer.state.log_history)
    with pytest.raises(ValueError, match="relevance_coef > 0 needs a relevance_dataset built with relevance_tokens"):
        make_trainer(base_dir, processor, vqa_dataset, tmp_path, trainer_kwargs={"relevance_coef": 1.0})


def test_rollout_weights_set_each_budgets_share_of_the_rollouts(base_dir, processor, vqa_dataset, tmp_path):
    trainer = make_trainer(
        base_dir, processor, vqa_dataset, tmp_path, keep_ratios=[1 / 3, 1 / 9], rollout_weights=[1, 1]
    )
    assert {trainer._keep_ratio_for(rollout) for rollout in range(50)} == {1 / 3, 1 / 9}
    trainer.args.rollout_weights = [0, 1]
    assert {trainer._keep_ratio_for(rollout) for rollout in range(50)} == {1 / 9}


def test_the_trainer_loop_runs_a_rollout_every_steps_per_rollout_steps(base_dir, processor, vqa_dataset, tmp_path):
    trainer = make_trainer(
        base_dir,
        processor,
        vqa_dataset,
        tmp_path,
        max_steps=6,
        num_ppo_epochs=2,
        num_mini_batches=2,
        num_generations=2,
        logging_steps=4,
        score="log_likelihood",  # the random base answers nothing right: only the likelihood tells episodes apart
    )
    rollouts = []
    original = trainer.rollout
    trainer.rollout = lambda batch, keep_ratio: rollouts.append(batch["input_ids"]) or original(batch, keep_ratio)
    trainer.train()
    assert len(rollouts) == 2  # steps 0 and 4 (6 steps of 4 per rollout)
    assert not torch.equal(rollouts[0], rollouts[1])  # new questions for the next rollout
    logged = [record for record in trainer.state.log_history if "loss" in record]
    assert [record["step"] for record in logged] == [4]
    for key in ("objective/kl", "objective/accuracy_kept", "policy/clipfrac_avg", "val/explained_variance"):
        assert key in logged[0], key


def test_resume_continues_from_the_saved_step(base_dir, processor, vqa_dataset, tmp_path):
    straight = make_trainer(base_dir, processor, vqa_dataset, tmp_path / "straight")
    straight.train()
    assert (tmp_path / "straight" / "checkpoint-1" / "model.safetensors").exists()
    resumed = make_trainer(base_dir, processor, vqa_dataset, tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "straight" / "checkpoint-1"))
    assert resumed.state.global_step == 2
    assert [log["step"] for log in resumed.state.log_history if "loss" in log] == [1, 2]
    resumed_policy = resumed.model.tprl_model.pruner.policy.state_dict()
    for name, value in straight.model.tprl_model.pruner.policy.state_dict().items():
        torch.testing.assert_close(resumed_policy[name], value, msg=name)


def test_resume_rejects_a_folder_that_is_not_a_checkpoint(base_dir, processor, vqa_dataset, tmp_path):
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path)
    with pytest.raises(ValueError, match="not a checkpoint of a TPRL stage"):
        trainer.train(resume_from_checkpoint=str(tmp_path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cliprange": 0.0}, "cliprange must be positive"),
        ({"keep_ratios": [0.5, 1.5]}, r"keep_ratio must be a number in \(0, 1\]"),
        ({"score": "bleu"}, "score must be"),
        ({"gamma": 1.5}, r"gamma and lam must be in \[0, 1\]"),
        ({"num_mini_batches": 16}, "must be at least num_mini_batches"),
        ({"num_generations": 0}, "num_generations must be at least 1"),
        ({"rollout_weights": [1]}, r"rollout_weights \[1\] must give a whole number >= 0 for each of the 3"),
        ({"rollout_weights": [0, 0, 0]}, "and not all 0"),
    ],
)
def test_bad_ppo_config_values(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TPRLPPOConfig(
            **{"output_dir": str(tmp_path), "per_device_train_batch_size": 8, "num_generations": 1, **overrides}
        )


def test_unknown_config_key_is_an_error(base_dir, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(f"output_dir: {tmp_path}\nbase_model_name_or_path: {base_dir}\nimitation_stepz: 3\n")
    assert "imitation_stepz" in command_error(main, ["--config", str(config)], capsys)


def test_bad_stage_sizes(base_dir):
    with pytest.raises(ValueError, match="imitation_steps must be positive"):
        PrunerTrainingArguments(imitation_steps=0)
    with pytest.raises(ValueError, match="the teacher 'cls_attention' does not compute: use one of"):
        PrunerTrainingArguments(teacher="cls_attention")  # the relevance target is on by default
    PrunerTrainingArguments(teacher="cls_attention", relevance_coef=0.0)
    with pytest.raises(StrictDataclassError, match="policy_hidden_size .* must be divisible by policy_num_heads"):
        TPRLModelConfig(base_model_name_or_path=base_dir, policy_hidden_size=30)  # TPRLConfig's own validation


def test_budget_out_of_reach_in_the_steps_is_refused_before_any_stage(base_dir, tmp_path, capsys):
    argv = ["--base_model_name_or_path", base_dir, "--output_dir", str(tmp_path), "--keep_ratios", "0.99"]
    assert "keep_ratio 0.99 keeps 143 of 144 visual tokens: 1 to remove in" in command_error(main, argv, capsys)
    assert not any(tmp_path.iterdir())


def test_imitation_weights_not_matching_the_keep_ratios_are_refused_before_any_stage(base_dir, tmp_path, capsys):
    argv = ["--base_model_name_or_path", base_dir, "--output_dir", str(tmp_path), "--imitation_weights", "1", "2"]
    assert "imitation_weights [1, 2] must give a positive whole number for each" in command_error(main, argv, capsys)
    assert not any(tmp_path.iterdir())


def test_stage_trained_for_another_base_is_refused(tprl_model, base_dir, tmp_path, capsys):
    shutil.copytree(base_dir, tmp_path / "other_base")
    tprl_model.save_pretrained(tmp_path / "run" / "autoencoder" / "final")  # a stage of a run on base_dir
    argv = ["--base_model_name_or_path", str(tmp_path / "other_base"), "--output_dir", str(tmp_path / "run")]
    error = command_error(main, [*argv, "--train_size", "16", "--num_demonstrations", "8", "--eval_size", "0"], capsys)
    assert re.search("was trained for the base .* not --base_model", error)


def test_missing_embedded_default_is_a_clear_error(monkeypatch, tmp_path):
    import tprl_digit_world

    monkeypatch.setattr(tprl_digit_world, "EMBEDDED_BASE_PATH", str(tmp_path / "tiny_llava"))
    with pytest.raises(ValueError, match="embedded default base is missing"):
        TPRLModelConfig(base_model_name_or_path=str(tmp_path / "tiny_llava"))
    assert TPRLModelConfig().base_model_name_or_path == EMBEDDED_BASE_PATH  # the shipped one is there


@pytest.mark.slow
def test_main_job_under_accelerate_with_two_processes(base_dir, tmp_path):
    """`accelerate launch` of two processes: every Trainer stage on both (DDP), the demonstrations shared out and
    identical to one process's, one set of checkpoints; a second launch after the PPO stage's `final` is lost skips
    the done stages and resumes PPO."""
    from conftest import launch_two_cpu_processes
    from transformers import AutoModelForImageTextToText

    # A few steps of every stage; the budget stage's batch (256) exceeds these 64 questions, so each of its steps is
    # an epoch: at the main job's 1,500 steps it would outlast the test's timeout.
    arguments = [
        *["-m", "tprl_train.train_pruner"],
        *["--config", "train/configs/digit_world.yaml", "--base_model_name_or_path", base_dir],
        *["--output_dir", str(tmp_path), "--train_size", "64", "--autoencoder_steps", "2"],
        *["--num_demonstrations", "24", "--imitation_steps", "2", "--max_steps", "4", "--num_generations", "2"],
        *["--num_ppo_epochs", "2", "--save_steps", "2", "--logging_steps", "2", "--per_device_train_batch_size", "4"],
        *["--budget_questions", "32", "--budget_steps", "2", "--eval_size", "0", "--disable_tqdm", "true"],
        *["--stage_batch_size", "8"],  # 3 batches of demonstrations to share out
    ]
    launch_two_cpu_processes(*arguments)
    assert not (tmp_path / ".demonstrations.shards").exists()
    model = TPRLForConditionalGeneration.from_pretrained(tmp_path / "autoencoder" / "final")
    processor = AutoProcessor.from_pretrained(base_dir)
    dataset = load_training_data(
        PrunerTrainingArguments(train_size=64, num_demonstrations=24), str(tmp_path / "data_cache"), 0
    )
    dataset = dataset.select(range(24))
    one_process = make_demonstrations(
        model,
        dataset,
        VQACollator(processor),
        [0.3333333333, 0.2222222222, 0.1111111111],
        8,
        "leave_one_in_or_cls_attention",
    )
    two_processes = datasets.load_from_disk(tmp_path / "demonstrations")
    assert two_processes.remove_columns("image").to_list() == one_process.remove_columns("image").to_list()
    assert sorted(p.name for p in (tmp_path / "ppo").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    for stage in ("autoencoder", "imitation", "ppo", "budget"):
        history = json.loads((tmp_path / stage / "log_history.json").read_text())
        assert history[-1]["train_runtime"] > 0, stage
    history = json.loads((tmp_path / "ppo" / "log_history.json").read_text())
    assert [r["step"] for r in history if "objective/kl" in r] == [2, 4]
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "budget" / "final")
    assert type(model).__name__ == "TPRLForConditionalGeneration"
    assert len(model.config.adaptive_operating_points) == 13  # measured once, by the main process

    shutil.rmtree(tmp_path / "ppo" / "final")  # as if the run had stopped after its last checkpoint
    result = launch_two_cpu_processes(*arguments)
    assert "Skipping the imitation stage" in result.stderr
    assert "Resuming the ppo stage from" in result.stderr and "checkpoint-4" in result.stderr
    assert (tmp_path / "ppo" / "final" / "model.safetensors").exists()


UNEVEN_METRICS = """
import json, sys
import torch
from accelerate import PartialState
from transformers import TrainingArguments
from modeling_tprl import TPRLForConditionalGeneration
from tprl_train.budget import BudgetDataset, BudgetTable, BudgetTrainer

base_dir, output_dir = sys.argv[1], sys.argv[2]
model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=64, adaptive_budgets=[8, 16])
args = TrainingArguments(output_dir=output_dir, report_to=[], use_cpu=True)
trainer = BudgetTrainer(model, args, BudgetDataset(BudgetTable(torch.zeros(4, 64), torch.zeros(4, 2))))
rank = PartialState().process_index
trainer._metrics.update({"shared": [3.0]} if rank else {"shared": [1.0], "loss/policy_avg": [5.0, 6.0]})
trainer.log({})
with open(f"{output_dir}/{rank}.json", "w") as file:
    json.dump(trainer.state.log_history[-1], file)
"""


@pytest.mark.slow
def test_metrics_one_process_lacks_are_logged_without_hanging_the_others(base_dir, tmp_path):
    """Under DDP a PPO process whose questions all tie records no loss statistics between two logs; the logged means
    are over the processes that recorded each metric, and no process waits on a reduction another skipped."""
    from conftest import launch_two_cpu_processes

    (tmp_path / "script.py").write_text(UNEVEN_METRICS)
    launch_two_cpu_processes(str(tmp_path / "script.py"), base_dir, str(tmp_path), timeout=300)
    for rank in (0, 1):
        logged = json.loads((tmp_path / f"{rank}.json").read_text())
        assert logged["shared"] == 2.0 and logged["loss/policy_avg"] == 5.5
