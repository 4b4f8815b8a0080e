"""Adaptive budgets: the policy chooses how many visual tokens each image keeps, for a price per kept token."""

import itertools
import math
import re

import pytest
import torch
from conftest import BUDGETS, GREEDY, assert_same_tokens, unpad_row
from huggingface_hub.errors import StrictDataclassError
from transformers import TrainingArguments

from modeling_tprl import PlackettLuce, TPRLConfig, TPRLForConditionalGeneration
from tprl_train.budget import BudgetDataset, BudgetTrainer, budget_table
from tprl_train.data import VQACollator, prompt_attention_mask
from tprl_train.operating_points import compute_weight_grid, measure_operating_points
from tprl_train.scoring import answer_scores
from tprl_train.train_pruner import PrunerTrainingArguments, main


def brute_force_log_prob(logits: torch.Tensor, picks: list[int]) -> float:
    """Sequential softmax over the tokens not yet picked, one pick at a time."""
    remaining, total = [i for i in range(len(logits)) if math.isfinite(logits[i])], 0.0
    for pick in picks:
        total += float(logits[pick] - torch.logsumexp(logits[remaining], 0))
        remaining.remove(pick)
    return total


def test_plackett_luce_with_a_count_per_row_against_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    logits[0, 4] = -math.inf
    distribution = PlackettLuce(logits, torch.tensor([2, 3, 1]))
    picks = distribution.sample()
    assert picks.shape == (3, 3) and picks[0, 2] == -1 and (picks[2, 1:] == -1).all()
    log_probs = distribution.log_prob(picks)
    for row, count in enumerate([2, 3, 1]):
        assert log_probs[row].sum().item() == pytest.approx(brute_force_log_prob(logits[row], picks[row, :count]))
        assert (log_probs[row, count:] == 0).all() and (distribution.entropy(picks)[row, count:] == 0).all()
        # Every ordered pick of `count` available tokens: the probabilities sum to 1.
        available = [i for i in range(5) if math.isfinite(logits[row, i])]
        every = torch.tensor([list(p) for p in itertools.permutations(available, count)])
        rows = PlackettLuce(logits[row].expand(len(every), -1), count)
        assert rows.log_prob(every).sum(1).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    # Gradients stay finite where rows pick fewer (padding never meets -inf - -inf).
    leaf = logits.clone().requires_grad_()
    (PlackettLuce(leaf, torch.tensor([2, 3, 1])).log_prob(picks).sum() + distribution.entropy(picks).sum()).backward()
    assert torch.isfinite(leaf.grad).all()
    with pytest.raises(ValueError, match="do not match"):
        distribution.log_prob(picks.masked_fill(picks < 0, 0))


def test_adaptive_episode_log_prob_is_the_budget_choice_plus_each_pick(adaptive_model, batch):
    model, policy = adaptive_model, adaptive_model.pruner.policy
    features = model.visual_tokens(batch["pixel_values"])
    inputs = model.pruner.episode_inputs(
        features, *model.question_embeddings(batch["input_ids"], batch["attention_mask"], 3)
    )
    prices = torch.tensor([0.05, 1.0, 20.0])
    torch.manual_seed(0)
    with torch.no_grad():
        episode = policy.episode(inputs, None, sample=True, compute_weight=prices)
        budget_logits = policy.budget_logits(inputs, prices)
    for row in range(3):
        choice = BUDGETS.index(int(episode.num_kept[row]))
        expected = float(budget_logits[row].log_softmax(-1)[choice])
        assert episode.budget_log_probs[row].item() == pytest.approx(expected, abs=1e-5)
        kept = torch.ones(1, model.num_visual_tokens, dtype=torch.bool)
        for step, picks in enumerate(episode.picks):
            with torch.no_grad():
                logits, _ = policy(
                    inputs.visual[row : row + 1],
                    inputs.question[row : row + 1],
                    kept,
                    inputs.question_mask[row : row + 1],
                    step,
                )
            row_picks = [int(p) for p in picks[row] if p >= 0]
            assert episode.log_probs[step][row].sum().item() == pytest.approx(
                brute_force_log_prob(logits[0], row_picks), abs=1e-4
            )
            kept = torch.zeros_like(kept)
            kept[0, row_picks] = True
        assert int(kept.sum()) == int(episode.num_kept[row])


def test_batched_adaptive_generation_equals_one_at_a_time(adaptive_model, batch):
    model = adaptive_model
    kwargs = {"keep_ratio": "adaptive", "target_keep_ratio": 0.1}
    with torch.no_grad():
        outputs = model(**batch, **kwargs)
    counts = outputs.num_visual_tokens_kept
    assert isinstance(counts, torch.Tensor) and len(set(counts.tolist())) > 1  # the images chose different budgets
    assert set(counts.tolist()) <= set(BUDGETS)
    assert ((outputs.kept_visual_indices >= 0).sum(1) == counts).all()
    batched = model.generate(**batch, **GREEDY, **kwargs)
    prompt = batch["input_ids"].shape[1]
    for row in range(3):
        single_inputs = unpad_row(batch, row)
        single = model.generate(**single_inputs, **GREEDY, **kwargs)
        assert_same_tokens(batched[row, prompt:], single[0, single_inputs["input_ids"].shape[1] :])
        indices = model.kept_visual_indices(**single_inputs, **kwargs)
        assert indices[0].tolist() == outputs.kept_visual_indices[row, : int(counts[row])].tolist()


def test_a_higher_price_keeps_fewer_tokens_through_the_target(adaptive_model):
    config = adaptive_model.config
    assert config.compute_weight_for(0.2) == pytest.approx(0.01)
    assert config.compute_weight_for(0.03) == pytest.approx(100.0)
    assert 1.0 < config.compute_weight_for(0.05) < 100.0  # interpolated in log space
    # Weights that choose alike: a target above their ratio lies between the smallest of them and the next one.
    config = TPRLConfig(adaptive_budgets=[8, 16], adaptive_operating_points=[[0.1, 0.2], [0.5, 0.1], [2.0, 0.1]])
    assert config.compute_weight_for(0.15) == pytest.approx((0.1 * 0.5) ** 0.5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_ratio": "adaptive", "target_keep_ratio": 0.0}, "target_keep_ratio must be a number in"),
        ({"keep_ratio": "adaptive", "target_keep_ratio": 1.5}, "target_keep_ratio must be a number in"),
        ({"keep_ratio": "adaptive", "target_keep_ratio": 0.5}, "outside what this adaptive pruner"),
        ({"keep_ratio": "adaptive"}, "needs target_keep_ratio"),
        ({"keep_ratio": 0.5, "target_keep_ratio": 0.1}, "pass keep_ratio='adaptive'"),
        ({"keep_ratio": "adaptive", "target_keep_ratio": 0.1, "pruning_method": "cls_attention"}, "learned policy"),
    ],
)
def test_bad_adaptive_input(adaptive_model, batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        adaptive_model(**batch, **kwargs)


def test_adaptive_call_on_a_fixed_budget_pruner_is_refused(tprl_model, batch):
    with pytest.raises(ValueError, match="needs a pruner trained for adaptive budgets"):
        tprl_model.generate(**batch, **GREEDY, keep_ratio="adaptive", target_keep_ratio=0.1)


@pytest.mark.parametrize(
    "budgets, message", [([8, 4], "increasing"), ([0, 4], "increasing"), ([8, 143], "leave each of")]
)
def test_bad_adaptive_budgets(base_dir, budgets, message):
    with pytest.raises(StrictDataclassError, match=message):
        TPRLForConditionalGeneration.from_base(base_dir, adaptive_budgets=budgets)


def test_budget_stage_learns_each_budgets_score_and_chooses_the_best_reward(
    base_dir, processor, vqa_dataset, tmp_path
):
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32, adaptive_budgets=BUDGETS)
    collator = VQACollator(processor)
    table = budget_table(model, vqa_dataset, collator, batch_size=16)
    assert table.states.shape == (24, 64) and table.scores.shape == (24, len(BUDGETS))
    # Each column: whether the policy's most likely episode at that budget, run alone, answers right.
    batch = collator([vqa_dataset[i] for i in range(8)])
    features = model.visual_tokens(batch["pixel_values"])
    question = model.question_embeddings(batch["input_ids"], prompt_attention_mask(batch), 8)
    inputs = model.pruner.episode_inputs(features, *question)
    for column, budget in enumerate(BUDGETS):
        kept = model.pruner.policy.episode(inputs, budget).kept_visual_indices()
        expected = answer_scores(model, batch, features, kept).correct.float()
        assert table.scores[:8, column].tolist() == expected.tolist()
    # Random answers score alike at every budget: make 16 tokens and more answer right.
    table.scores[:, :2], table.scores[:, 2:] = 0.0, 1.0
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=60,
        learning_rate=1e-2,
        per_device_train_batch_size=24,
        remove_unused_columns=False,
        report_to=[],
        disable_tqdm=True,
    )
    trainer = BudgetTrainer(model, args, BudgetDataset(table))
    head = model.pruner.policy.budget_head
    inputs = {"state": table.states, "scores": table.scores}
    loss, _ = trainer.stage_loss(model, inputs)
    predicted = head.score_logits(table.states).sigmoid().detach()
    brute_force = -(table.scores * predicted.log() + (1 - table.scores) * (1 - predicted).log()).mean()
    assert loss.item() == pytest.approx(brute_force.item(), abs=1e-5)
    trainer.train()
    assert trainer.stage_loss(model, inputs)[0].item() < 0.2 < loss.item()
    # The policy, base and autoencoder are untouched: only the budget head trains.
    assert all(not p.requires_grad for name, p in model.named_parameters() if "budget_head" not in name)
    # A cheap price keeps the fewest tokens that answer (16), a high one the fewest of all; the choice is the mode
    # of the Boltzmann policy over the predicted reward.
    assert (head(table.states, torch.full((24,), 0.1)).argmax(-1) == 2).all()
    assert (head(table.states, torch.full((24,), 100.0)).argmax(-1) == 0).all()
    predicted = head.score_logits(table.states).sigmoid()
    rewards = predicted - 0.1 * torch.tensor(BUDGETS) / 144
    assert torch.allclose(head(table.states, torch.full((24,), 0.1)), rewards / head.temperature, atol=1e-4)


def test_adaptive_budgets_need_a_compute_weight_range_before_any_stage(base_dir, tmp_path, capsys):
    from conftest import command_error

    argv = ["--base_model_name_or_path", base_dir, "--output_dir", str(tmp_path), "--adaptive_budgets", "8", "16"]
    assert re.search("need both adaptive_budgets .* and compute_weight_range", command_error(main, argv, capsys))
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="compute_weight_range must be"):
        PrunerTrainingArguments(compute_weight_range=[4.0, 0.25])


def test_operating_points_span_the_trained_compute_weights(base_dir, processor, vqa_dataset):
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32, adaptive_budgets=BUDGETS)
    grid = compute_weight_grid([0.1, 10.0], num_points=5)
    assert grid == [0.1, 0.316228, 1.0, 3.16228, 10.0]
    points = measure_operating_points(model, vqa_dataset, VQACollator(processor), grid, batch_size=16)
    assert [weight for weight, _ in points] == grid
    assert all(min(BUDGETS) / 144 <= ratio <= max(BUDGETS) / 144 for _, ratio in points)


def test_tprl_eval_refuses_adaptive_targets_for_a_fixed_budget_checkpoint(tprl_model, processor, tmp_path):
    from tprl_eval.cli import EvalArguments, run

    tprl_model.save_pretrained(tmp_path / "fixed", processor=processor)
    arguments = EvalArguments(model=str(tmp_path / "fixed"), methods="tprl", adaptive_targets="0.1", num_examples=8)
    with pytest.raises(ValueError, match="needs a pruner trained for adaptive budgets"):
        run(arguments)
