"""The policy's distribution and its episode: one runner for inference, imitation, PPO and the teachers."""

import itertools
import math

import pytest
import torch

from modeling_tprl import PlackettLuce, keep_schedule, run_episode
from tprl_train.data import prompt_attention_mask


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


def test_log_prob_and_entropy_match_brute_force():
    exact = brute_force(LOGITS, 2)
    assert sum(exact.values()) == pytest.approx(1.0)
    entropy = -sum(p * math.log(p) for p in exact.values())
    distribution, expected_estimate = PlackettLuce(LOGITS, 2), 0.0
    for picks, p in exact.items():
        assert distribution.log_prob(torch.tensor([picks])).sum().item() == pytest.approx(math.log(p), abs=1e-6)
        expected_estimate += p * distribution.entropy(torch.tensor([picks])).sum().item()
    assert expected_estimate == pytest.approx(entropy, abs=1e-6)


def test_sampling_follows_the_distribution_and_the_mode_is_the_most_likely_pick():
    torch.manual_seed(0)
    exact = brute_force(LOGITS, 2)
    picks = PlackettLuce(LOGITS.expand(20000, -1), 2).sample()
    assert not (picks == 3).any()
    counts = {}
    for row in picks.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    for ordered, p in exact.items():
        assert counts.get(ordered, 0) / 20000 == pytest.approx(p, abs=0.015)
    assert tuple(PlackettLuce(LOGITS, 2).mode()[0].tolist()) == max(exact, key=exact.get)


def test_more_picks_than_available_tokens_is_refused():
    with pytest.raises(ValueError, match="Cannot pick 5 of 4 available tokens"):
        PlackettLuce(LOGITS, 5)


def test_run_episode_follows_the_schedule_and_each_step_keeps_its_picks():
    seen = []

    def choose(step, kept_mask, count):
        seen.append(kept_mask.sum(1).tolist())
        return kept_mask.float().multinomial(count)  # any `count` of the tokens still kept

    torch.manual_seed(0)
    steps = run_episode(choose, torch.ones(2, 144, dtype=torch.bool), 16, 3)
    assert [picks.shape[1] for _, picks in steps] == keep_schedule(144, 16, 3)
    schedule = keep_schedule(144, 16, 3)
    assert seen == [[144, 144]] + [[count, count] for count in schedule[:-1]]  # what each step chose among
    for (kept_mask, _), (_, previous) in zip(steps[1:], steps[:-1]):
        assert torch.equal(kept_mask, torch.zeros_like(kept_mask).scatter(1, previous, True))
    with pytest.raises(ValueError, match=f"Step 0 must pick {keep_schedule(144, 16, 3)[0]} tokens per row"):
        run_episode(lambda step, kept, count: kept.float().multinomial(3), torch.ones(2, 144, dtype=torch.bool), 16, 3)


@pytest.fixture()
def episode_inputs(tprl_model, vqa_batch):
    with torch.no_grad():
        features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
        question = tprl_model.question_embeddings(vqa_batch["input_ids"], prompt_attention_mask(vqa_batch), 8)
        return tprl_model.pruner.episode_inputs(features, *question)


def test_inference_is_the_policys_most_likely_episode(tprl_model, vqa_batch, episode_inputs):
    mask = prompt_attention_mask(vqa_batch)
    kept = tprl_model.kept_visual_indices(vqa_batch["input_ids"], vqa_batch["pixel_values"], mask, num_kept_tokens=16)
    with torch.no_grad():
        episode = tprl_model.pruner.policy.episode(episode_inputs, 16)
    assert torch.equal(kept, episode.kept_visual_indices())


def test_an_episode_replayed_along_its_picks_gives_its_log_probs_and_values(tprl_model, episode_inputs):
    # How imitation scores a teacher's picks and PPO's update rescores a rollout: same picks, same numbers; with
    # episodes sharing questions (step 0 once per question) as without.
    policy = tprl_model.pruner.policy
    episode_question = torch.tensor([0, 0, 1, 5, 5, 5])
    torch.manual_seed(0)
    with torch.no_grad():
        sampled = policy.episode(episode_inputs, 16, sample=True, episode_question=episode_question)
        shared = policy.episode(episode_inputs, 16, actions=sampled.picks, episode_question=episode_question)
        per_episode = type(episode_inputs)(
            *(None if value is None else value[episode_question] for value in vars(episode_inputs).values())
        )
        separate = policy.episode(per_episode, 16, actions=sampled.picks)
    assert not torch.equal(sampled.picks[-1][3], sampled.picks[-1][4])  # sampled apart
    for replay in (shared, separate):
        for a, b in zip(replay.log_probs, sampled.log_probs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(replay.values, sampled.values, atol=1e-5, rtol=1e-5)
