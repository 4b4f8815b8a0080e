"""The pruner's training: selection distribution, GAE, teacher, imitation, PPO updates, resume, configuration."""

import copy
import itertools
import math
import shutil

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from modeling_tprl.pruning_tprl import keep_schedule
from tprl_digit_world import EMBEDDED_BASE_PATH, DigitWorld
from tprl_train.data import VQACollator, prompt_attention_mask
from tprl_train.imitation import imitation_loss
from tprl_train.ppo_config import TPRLPPOConfig
from tprl_train.ppo_trainer import TPRLPPOTrainer, compute_gae, leave_one_out_advantages, whiten
from tprl_train.selection import pick_log_probs, sample_selection, selection_entropy, selection_log_prob
from tprl_train.teacher import teacher_demonstrations
from tprl_train.train_pruner import PrunerTrainingArguments, main


LOGITS = torch.tensor([[0.3, -1.0, 1.2, -math.inf, 0.0]])


def brute_force(logits: torch.Tensor, k: int) -> dict[tuple[int, ...], float]:
    """Probability of every ordered pick of k available tokens, by the definition of sampling without replacement."""
    available = [i for i in range(logits.shape[1]) if math.isfinite(logits[0, i])]
    probabilities = {}
    for picks in itertools.permutations(available, k):
        p, left = 1.0, list(available)
        for pick in picks:
            weights = torch.tensor([logits[0, i].exp().item() for i in left])
            p *= logits[0, pick].exp().item() / weights.sum().item()
            left.remove(pick)
        probabilities[picks] = p
    return probabilities


def test_selection_log_prob_and_entropy_match_brute_force():
    exact = brute_force(LOGITS, 2)
    assert sum(exact.values()) == pytest.approx(1.0)
    entropy = -sum(p * math.log(p) for p in exact.values())
    expected_estimate = 0.0
    for picks, p in exact.items():
        log_prob = selection_log_prob(LOGITS, torch.tensor([picks])).item()
        assert log_prob == pytest.approx(math.log(p), abs=1e-6)
        expected_estimate += p * selection_entropy(LOGITS, torch.tensor([picks])).item()
    assert expected_estimate == pytest.approx(entropy, abs=1e-6)


def test_sampling_follows_the_distribution_and_never_picks_unavailable_tokens():
    torch.manual_seed(0)
    picks = sample_selection(LOGITS.expand(20000, -1), 2)
    assert not (picks == 3).any()
    counts = {}
    for row in picks.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    for ordered, p in brute_force(LOGITS, 2).items():
        assert counts.get(ordered, 0) / 20000 == pytest.approx(p, abs=0.015)


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


def test_episodes_per_question_share_their_question_and_give_group_advantages(
    base_dir, processor, vqa_dataset, vqa_batch, tmp_path
):
    trainer = make_trainer(
        base_dir, processor, vqa_dataset, tmp_path, num_episodes_per_question=3, score="correct", kl_coef=0.0
    )
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
    assert rollout.metrics["trained_questions"] == rollout.trained.float().mean().item()
    rollout.trained[:] = False  # nothing to learn from: the PPO epochs leave the policy as it is
    before = copy.deepcopy(trainer.model.pruner.policy.state_dict())
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    trainer.ppo_update(rollout)
    for name, value in trainer.model.pruner.policy.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.fixture(scope="module")
def vqa_dataset():
    world, rng = DigitWorld("train"), np.random.default_rng(0)
    rows = [world.sample(rng) for _ in range(24)]
    return datasets.Dataset.from_list(
        [{"image": Image.fromarray(r["image"]), "question": r["question"], "answer": r["answer"]} for r in rows]
    )


@pytest.fixture()
def vqa_batch(processor, vqa_dataset):
    return VQACollator(processor)([vqa_dataset[i] for i in range(8)])


def test_policy_reads_the_question_as_at_inference_never_the_answer(tprl_model, processor, vqa_dataset):
    examples = [vqa_dataset[i] for i in range(4)]
    training = VQACollator(processor)(examples)
    prompts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": e["question"]}]}],
            add_generation_prompt=True,
        )
        for e in examples
    ]
    inference = processor(
        images=[e["image"] for e in examples],
        text=prompts,
        padding=True,
        padding_side="left",
        add_special_tokens=False,
        return_tensors="pt",
    )
    question_mask = prompt_attention_mask(training)
    trained_on, trained_mask = tprl_model.question_embeddings(training["input_ids"], question_mask, 4)
    asked, asked_mask = tprl_model.question_embeddings(inference["input_ids"], inference["attention_mask"], 4)
    assert torch.equal(trained_mask, asked_mask)
    assert torch.equal(trained_on[trained_mask], asked[asked_mask])


@pytest.mark.parametrize(
    "teacher",
    [
        "gradient",
        "leave_one_out",
        "answer_attention",
        "cls_attention",
        "cls_attention_then_leave_one_out",
        "leave_one_in_or_cls_attention",
    ],
)
def test_teacher_episode_has_the_exact_budget_per_step_and_nests(tprl_model, vqa_batch, teacher):
    features = tprl_model.get_image_features(vqa_batch["pixel_values"])
    steps = teacher_demonstrations(tprl_model, vqa_batch, features, [16], teacher)[0]
    assert [s.shape[1] for s in steps] == keep_schedule(144, 16, 3)
    for earlier, later in zip(steps, steps[1:]):
        for row in range(len(later)):
            assert set(later[row].tolist()) <= set(earlier[row].tolist())
            assert len(set(later[row].tolist())) == later.shape[1]


def test_a_selection_free_teacher_scored_once_picks_as_if_scored_at_every_step(tprl_model, vqa_batch):
    from tprl_train.teacher import cls_attention_importance

    features = tprl_model.get_image_features(vqa_batch["pixel_values"])
    steps = teacher_demonstrations(tprl_model, vqa_batch, features, [16], "cls_attention")[0]
    kept = torch.arange(144).expand(len(features), -1)
    for picks, count in zip(steps, keep_schedule(144, 16, 3)):
        expected = cls_attention_importance(tprl_model, vqa_batch, features, kept).topk(count, dim=1).indices
        assert torch.equal(picks, expected)
        kept = expected.sort(dim=1).values


def test_leave_one_out_importance_is_the_exact_drop(tprl_model, vqa_batch):
    from tprl_train.scoring import answer_scores
    from tprl_train.teacher import leave_one_out_importance

    batch = {key: value[:2] for key, value in vqa_batch.items()}
    features = tprl_model.get_image_features(batch["pixel_values"])
    kept = torch.tensor([[0, 5, 9, 40], [3, 7, 100, 143]])
    importance = leave_one_out_importance(tprl_model, batch, features, kept, chunk_size=3)
    reference = answer_scores(tprl_model, batch, features, kept).log_likelihood
    without = answer_scores(tprl_model, batch, features, torch.tensor([[0, 5, 40], [3, 7, 143]])).log_likelihood
    assert importance[0, 9].item() == pytest.approx((reference[0] - without[0]).item(), abs=1e-4)
    assert importance[1, 100].item() == pytest.approx((reference[1] - without[1]).item(), abs=1e-4)
    assert torch.isinf(importance[0, 1]) and importance[0, 1] < 0  # not kept


def test_cls_attention_then_leave_one_out_changes_only_the_last_step(tprl_model, vqa_batch):
    from tprl_train.teacher import leave_one_out_importance

    features = tprl_model.get_image_features(vqa_batch["pixel_values"])
    hybrid = teacher_demonstrations(tprl_model, vqa_batch, features, [16], "cls_attention_then_leave_one_out")[0]
    cls = teacher_demonstrations(tprl_model, vqa_batch, features, [16], "cls_attention")[0]
    assert all(torch.equal(a, b) for a, b in zip(hybrid[:-1], cls[:-1]))
    # The last step keeps the largest leave-one-out drops (up to the small cls prior) among the cls survivors.
    drop = leave_one_out_importance(tprl_model, vqa_batch, features, cls[-2].sort(dim=1).values)
    kept_drop = drop.gather(1, hybrid[-1]).min(1).values
    others = drop.scatter(1, hybrid[-1], -torch.inf).max(1).values
    assert (kept_drop >= others - 0.01 * 144).all()


def test_leave_one_in_scores_the_answer_with_each_token_alone(tprl_model, vqa_batch):
    from tprl_train.scoring import answer_scores
    from tprl_train.teacher import leave_one_in_scores

    batch = {key: value[:2] for key, value in vqa_batch.items()}
    features = tprl_model.get_image_features(batch["pixel_values"])
    alone = leave_one_in_scores(tprl_model, batch, features, chunk_size=100)
    for token in (0, 77, 143):
        expected = answer_scores(tprl_model, batch, features, torch.tensor([[token], [token]])).log_likelihood
        assert torch.allclose(alone[:, token], expected, atol=1e-4)


def test_leave_one_in_or_cls_attention_demonstrates_its_best_candidate(tprl_model, vqa_batch):
    from tprl_train.scoring import answer_scores
    from tprl_train.teacher import cls_attention_importance, leave_one_in_scores

    features = tprl_model.get_image_features(vqa_batch["pixel_values"])
    final = teacher_demonstrations(tprl_model, vqa_batch, features, [16], "leave_one_in_or_cls_attention")[0][-1]
    cls = cls_attention_importance(tprl_model, vqa_batch, features, torch.arange(144).expand(len(features), -1))
    alone = leave_one_in_scores(tprl_model, vqa_batch, features)
    candidates = [cls.topk(16, dim=1).indices]
    for size in (4, 8):  # leave-one-in's top quarter / half of the budget, then [CLS] attention
        first = alone.topk(size, dim=1).indices
        rest = cls.scatter(1, first, -torch.inf).topk(16 - size, dim=1).indices
        candidates.append(torch.cat([first, rest], dim=1))
    likelihoods = torch.stack(
        [answer_scores(tprl_model, vqa_batch, features, c.sort(dim=1).values).log_likelihood for c in candidates]
    )
    chosen = answer_scores(tprl_model, vqa_batch, features, final.sort(dim=1).values).log_likelihood
    assert torch.allclose(chosen, likelihoods.max(0).values, atol=1e-4)
    # The final picks are one of the candidates, as a set.
    for row in range(len(final)):
        assert any(set(final[row].tolist()) == set(c[row].tolist()) for c in candidates)


def test_unknown_teacher(tprl_model, vqa_batch):
    features = tprl_model.get_image_features(vqa_batch["pixel_values"])
    with pytest.raises(ValueError, match="Unknown teacher"):
        teacher_demonstrations(tprl_model, vqa_batch, features, [16], "oracle")


@pytest.mark.parametrize("teacher", ["leave_one_in_or_cls_attention", "cls_attention", "gradient"])
def test_teacher_episodes_at_several_budgets_are_each_budgets_own_episode(tprl_model, vqa_batch, teacher):
    features = tprl_model.get_image_features(vqa_batch["pixel_values"])
    together = teacher_demonstrations(tprl_model, vqa_batch, features, [48, 16], teacher)
    for budget, episode in zip([48, 16], together):
        alone = teacher_demonstrations(tprl_model, vqa_batch, features, [budget], teacher)[0]
        assert all(torch.equal(a, b) for a, b in zip(episode, alone))


def test_every_example_is_demonstrated_at_every_budget_and_weights_set_the_batches_shares(
    tprl_model, processor, vqa_dataset
):
    from tprl_train.demonstrations import demonstrated_examples, demonstration_batches, make_demonstrations

    collator = VQACollator(processor)
    ratios = [1 / 3, 1 / 9]
    demonstrations = make_demonstrations(tprl_model, vqa_dataset, collator, ratios, 8, "cls_attention")
    assert demonstrations["keep_ratio"] == [1 / 3] * len(vqa_dataset) + [1 / 9] * len(vqa_dataset)
    assert list(demonstrations["question"]) == list(vqa_dataset["question"]) * 2
    for row in demonstrations:
        assert len(row["picks"][-1]) == tprl_model.num_kept_tokens(keep_ratio=row["keep_ratio"])
    assert demonstrated_examples(demonstrations)["question"] == vqa_dataset["question"]
    batches = demonstration_batches(demonstrations, 2, seed=0, weights=[1, 2])
    smallest = [len(next(batches)[1][-1][0]) == 16 for _ in range(300)]
    assert 0.58 < sum(smallest) / 300 < 0.75  # two thirds of the batches
    examples, picks = next(batches)
    for example, last in zip(examples, picks[-1]):
        assert last.tolist() in [row["picks"][-1] for row in demonstrations if row["example"] == example]
    with pytest.raises(ValueError, match=r"3 imitation weights \[1, 1, 2\] for the demonstrations' 2 budgets"):
        next(demonstration_batches(demonstrations, 2, seed=0, weights=[1, 1, 2]))
    with pytest.raises(ValueError, match="no `example` column"):
        demonstrated_examples(demonstrations.remove_columns("example"))


def test_imitation_inputs_computed_once_are_what_the_policy_reads_at_inference(tprl_model, processor, vqa_dataset):
    from tprl_train.imitation import encode_examples

    inputs = encode_examples(tprl_model, vqa_dataset, VQACollator(processor), batch_size=5)
    batch = VQACollator(processor)([vqa_dataset[i] for i in [3, 0, 7]])
    latents, question_embeds, question_mask = inputs.batch(tprl_model, [3, 0, 7])
    with torch.no_grad():
        features = tprl_model.get_image_features(batch["pixel_values"])
        torch.testing.assert_close(latents, tprl_model.pruner.autoencoder.encode(features))
        expected = tprl_model.question_embeddings(batch["input_ids"], prompt_attention_mask(batch), 3)
    assert torch.equal(question_mask, expected[1])
    torch.testing.assert_close(question_embeds * question_mask[..., None], expected[0] * expected[1][..., None])


def test_imitation_loss_falls_when_trained_on_a_demonstration(base_dir, vqa_batch):
    from modeling_tprl import TPRLForConditionalGeneration

    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    features = model.get_image_features(vqa_batch["pixel_values"]).detach()
    steps = teacher_demonstrations(model, vqa_batch, features, [16])[0]
    with torch.no_grad():
        latents = model.pruner.autoencoder.encode(features)
        question = model.question_embeddings(vqa_batch["input_ids"], prompt_attention_mask(vqa_batch), len(features))
    optimizer = torch.optim.Adam(model.pruner.policy.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = imitation_loss(model, latents, *question, steps)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses


def make_trainer(base_dir, processor, dataset, tmp_path, **overrides):
    from modeling_tprl import TPRLForConditionalGeneration

    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    config = {
        "output_dir": str(tmp_path),
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "num_ppo_epochs": 2,
        "num_mini_batches": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
        **overrides,
    }
    args = TPRLPPOConfig(**config)
    return TPRLPPOTrainer(model, args, dataset, VQACollator(processor), processing_class=processor)


def test_one_ppo_update_lowers_the_loss_on_a_fixed_rollout(base_dir, processor, vqa_dataset, vqa_batch, tmp_path):
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path, learning_rate=3e-3, num_ppo_epochs=4)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    torch.manual_seed(0)
    rollout = trainer.rollout(vqa_batch, keep_ratio=1 / 9)
    everything = torch.arange(len(rollout.values))
    before, _ = trainer.ppo_loss(rollout, everything)
    trainer.ppo_update(rollout)
    after, _ = trainer.ppo_loss(rollout, everything)
    assert after.item() < before.item()


def test_ppo_loss_reads_each_episode_as_the_rollout_did(base_dir, processor, vqa_dataset, vqa_batch, tmp_path):
    # The rollout and the PPO epochs embed once per question and run step 0 once per question: whatever rows a
    # minibatch holds, in any order, the policy must give the rollout's own log-probabilities (ratio 1).
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path, num_episodes_per_question=3)
    torch.manual_seed(0)
    rollout = trainer.rollout(vqa_batch, keep_ratio=1 / 9)
    rows = torch.randperm(len(rollout.values))[:10]
    _, stats = trainer.ppo_loss(rollout, rows)
    assert stats["approxkl"] < 1e-10 and stats["clipfrac"] == 0.0
    policy = trainer.model.pruner.policy
    question = rollout.episode_question[rows]
    inputs = policy.embed_inputs(rollout.latents[question], rollout.question_embeds[question])
    for step in range(len(rollout.picks)):  # against the policy run on every episode separately
        logits, _ = policy(*inputs, rollout.states[step][rows], rollout.question_mask[question], step)
        expected = pick_log_probs(logits, rollout.picks[step][rows])
        torch.testing.assert_close(expected, rollout.pick_log_probs[step][rows], atol=1e-5, rtol=1e-5)


def test_rollout_weights_set_each_budgets_share_of_the_rollouts(base_dir, processor, vqa_dataset, tmp_path):
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path, keep_ratios=[1 / 3, 1 / 9])
    assert {trainer._keep_ratio_for(update) for update in range(50)} == {1 / 3, 1 / 9}
    trainer.args.rollout_weights = [0, 1]
    assert {trainer._keep_ratio_for(update) for update in range(50)} == {1 / 9}


def test_resume_continues_from_the_saved_step(base_dir, processor, vqa_dataset, tmp_path):
    straight = make_trainer(base_dir, processor, vqa_dataset, tmp_path / "straight")
    straight.train()
    assert (tmp_path / "straight" / "checkpoint-1" / "model.safetensors").exists()
    resumed = make_trainer(base_dir, processor, vqa_dataset, tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "straight" / "checkpoint-1"))
    assert resumed.state.global_step == 2
    assert [log["step"] for log in resumed.state.log_history if "loss" in log] == [1, 2]
    for name, value in straight.model.pruner.policy.state_dict().items():
        torch.testing.assert_close(resumed.model.pruner.policy.state_dict()[name], value, msg=name)


def test_resume_rejects_a_folder_that_is_not_a_checkpoint(base_dir, processor, vqa_dataset, tmp_path):
    trainer = make_trainer(base_dir, processor, vqa_dataset, tmp_path)
    with pytest.raises(ValueError, match="not a TPRL PPO checkpoint"):
        trainer.train(resume_from_checkpoint=str(tmp_path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cliprange": 0.0}, "cliprange must be positive"),
        ({"keep_ratios": [0.5, 1.5]}, r"keep_ratio must be a number in \(0, 1\]"),
        ({"score": "bleu"}, "score must be"),
        ({"gamma": 1.5}, r"gamma and lam must be in \[0, 1\]"),
        ({"num_mini_batches": 16}, "must be at least num_mini_batches"),
        ({"num_episodes_per_question": 0}, "num_episodes_per_question must be at least 1"),
        ({"rollout_weights": [1]}, r"rollout_weights \[1\] must give a whole number >= 0 for each of the 3"),
        ({"rollout_weights": [0, 0, 0]}, "and not all 0"),
    ],
)
def test_bad_ppo_config_values(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TPRLPPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, **overrides)


def test_unknown_config_key_is_an_error(base_dir, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"output_dir: {tmp_path}\nbase_model: {base_dir}\nimitation_stepz: 3\n")
    with pytest.raises(ValueError, match="imitation_stepz"):
        main(["--config", str(config)])


def test_bad_stage_sizes(base_dir):
    with pytest.raises(ValueError, match="imitation_steps must be positive"):
        PrunerTrainingArguments(base_model=base_dir, imitation_steps=0)


def test_budget_out_of_reach_in_the_steps_is_refused_before_any_stage(base_dir, tmp_path):
    with pytest.raises(ValueError, match="keep_ratio 0.99 keeps 143 of 144 visual tokens: 1 to remove in"):
        main(["--base_model", base_dir, "--output_dir", str(tmp_path), "--keep_ratios", "0.99"])
    assert not any(tmp_path.iterdir())


def test_imitation_weights_not_matching_the_keep_ratios_are_refused_before_any_stage(base_dir, tmp_path):
    with pytest.raises(ValueError, match=r"imitation_weights \[1, 2\] must give a positive whole number for each"):
        main(["--base_model", base_dir, "--output_dir", str(tmp_path), "--imitation_weights", "1", "2"])
    assert not any(tmp_path.iterdir())


def test_stage_trained_for_another_base_is_refused(tprl_model, base_dir, tmp_path):
    shutil.copytree(base_dir, tmp_path / "other_base")
    tprl_model.save_pretrained(tmp_path / "run" / "autoencoder")  # a stage of a run on base_dir
    argv = ["--base_model", str(tmp_path / "other_base"), "--output_dir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match="was trained for the base .* not --base_model"):
        main([*argv, "--train_size", "16", "--num_demonstrations", "8", "--eval_size", "0"])


def test_missing_embedded_default_is_a_clear_error(monkeypatch, tmp_path):
    import tprl_digit_world

    monkeypatch.setattr(tprl_digit_world, "EMBEDDED_BASE_PATH", str(tmp_path / "tiny_llava"))
    with pytest.raises(ValueError, match="embedded default base is missing"):
        PrunerTrainingArguments(base_model=str(tmp_path / "tiny_llava"))
    assert PrunerTrainingArguments().base_model == EMBEDDED_BASE_PATH  # the shipped one is there


def test_main_job_under_accelerate_with_two_processes(base_dir, tmp_path):
    """`accelerate launch --cpu --num_processes 2`: stages once, PPO on both processes, one set of checkpoints."""
    import json
    import subprocess
    import sys

    from transformers import AutoModelForImageTextToText

    command = [
        *[sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1"],
        *["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tprl_train.train_pruner"],
        *["--config", "train/configs/digit_world.yaml", "--base_model", base_dir, "--output_dir", str(tmp_path)],
        *["--train_size", "64", "--autoencoder_steps", "2", "--num_demonstrations", "24", "--imitation_steps", "2"],
        *["--max_steps", "2", "--save_steps", "2", "--logging_steps", "1", "--per_device_train_batch_size", "8"],
        *["--eval_size", "0", "--disable_tqdm", "true"],
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "ppo").glob("checkpoint-*")) == ["checkpoint-2"]
    history = json.loads((tmp_path / "ppo" / "log_history.json").read_text())
    assert [r["step"] for r in history if "episode_return" in r] == [1, 2]
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "ppo" / "final")
    assert type(model).__name__ == "TPRLForConditionalGeneration"
