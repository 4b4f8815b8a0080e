"""The stages before PPO: the teachers' demonstrations, imitation's data and its training."""

import math

import pytest
import torch
from transformers import TrainingArguments

from modeling_tprl import TPRLForConditionalGeneration, keep_schedule
from tprl_train.data import VQACollator, prompt_attention_mask
from tprl_train.demonstrations import demonstrated_examples, make_demonstrations
from tprl_train.imitation import (
    BudgetBatchSampler,
    DemonstrationDataset,
    ImitationTrainer,
    collate_demonstrations,
    encode_examples,
    relevance_loss,
)
from tprl_train.teacher import leave_one_in_scores, teacher_demonstrations


def imitation_arguments(output_dir) -> TrainingArguments:
    """30 imitation steps at a high learning rate, a log record each, a checkpoint at the end."""
    return TrainingArguments(
        output_dir=str(output_dir),
        max_steps=30,
        learning_rate=1e-2,
        logging_steps=1,
        save_steps=30,
        report_to="none",
        disable_tqdm=True,
        remove_unused_columns=False,
    )


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
    features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
    steps = teacher_demonstrations(tprl_model, vqa_batch, features, [16], teacher)[0]
    assert [s.shape[1] for s in steps] == keep_schedule(144, 16, 3)
    for earlier, later in zip(steps, steps[1:]):
        for row in range(len(later)):
            assert set(later[row].tolist()) <= set(earlier[row].tolist())
            assert len(set(later[row].tolist())) == later.shape[1]


def test_a_selection_free_teacher_scored_once_picks_as_if_scored_at_every_step(tprl_model, vqa_batch):
    from tprl_train.teacher import cls_attention_importance

    features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
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
    features = tprl_model.visual_tokens(batch["pixel_values"])
    kept = torch.tensor([[0, 5, 9, 40], [3, 7, 100, 143]])
    importance = leave_one_out_importance(tprl_model, batch, features, kept, chunk_size=3)
    reference = answer_scores(tprl_model, batch, features, kept).log_likelihood
    without = answer_scores(tprl_model, batch, features, torch.tensor([[0, 5, 40], [3, 7, 143]])).log_likelihood
    assert importance[0, 9].item() == pytest.approx((reference[0] - without[0]).item(), abs=1e-4)
    assert importance[1, 100].item() == pytest.approx((reference[1] - without[1]).item(), abs=1e-4)
    assert torch.isinf(importance[0, 1]) and importance[0, 1] < 0  # not kept


def test_cls_attention_then_leave_one_out_changes_only_the_last_step(tprl_model, vqa_batch):
    from tprl_train.teacher import leave_one_out_importance

    features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
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
    features = tprl_model.visual_tokens(batch["pixel_values"])
    alone = leave_one_in_scores(tprl_model, batch, features, chunk_size=100)
    for token in (0, 77, 143):
        expected = answer_scores(tprl_model, batch, features, torch.tensor([[token], [token]])).log_likelihood
        assert torch.allclose(alone[:, token], expected, atol=1e-4)


def test_leave_one_in_or_cls_attention_demonstrates_its_best_candidate(tprl_model, vqa_batch):
    from tprl_train.scoring import answer_scores
    from tprl_train.teacher import cls_attention_importance, leave_one_in_scores

    features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
    final = teacher_demonstrations(tprl_model, vqa_batch, features, [16], "leave_one_in_or_cls_attention")[0][-1]
    cls = cls_attention_importance(tprl_model, vqa_batch, features, torch.arange(144).expand(len(features), -1))
    alone = leave_one_in_scores(tprl_model, vqa_batch, features)
    candidates = [cls.topk(16, dim=1).indices]
    for size in (4, 8, 12, 16):  # leave-one-in's top quarter ... all of the budget, then [CLS] attention
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
    features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
    with pytest.raises(ValueError, match="Unknown teacher"):
        teacher_demonstrations(tprl_model, vqa_batch, features, [16], "oracle")


@pytest.mark.parametrize("teacher", ["leave_one_in_or_cls_attention", "cls_attention", "gradient"])
def test_teacher_episodes_at_several_budgets_are_each_budgets_own_episode(tprl_model, vqa_batch, teacher):
    features = tprl_model.visual_tokens(vqa_batch["pixel_values"])
    together = teacher_demonstrations(tprl_model, vqa_batch, features, [48, 16], teacher)
    for budget, episode in zip([48, 16], together):
        alone = teacher_demonstrations(tprl_model, vqa_batch, features, [budget], teacher)[0]
        assert all(torch.equal(a, b) for a, b in zip(episode, alone))


def test_every_example_is_demonstrated_at_every_budget_and_weights_set_the_batches_shares(
    tprl_model, processor, vqa_dataset
):
    ratios = [1 / 3, 1 / 9]
    demonstrations = make_demonstrations(tprl_model, vqa_dataset, VQACollator(processor), ratios, 8, "cls_attention")
    assert demonstrations["keep_ratio"] == [1 / 3] * len(vqa_dataset) + [1 / 9] * len(vqa_dataset)
    assert list(demonstrations["question"]) == list(vqa_dataset["question"]) * 2
    for row in demonstrations:
        assert len(row["picks"][-1]) == tprl_model.num_kept_tokens(keep_ratio=row["keep_ratio"])
    assert demonstrated_examples(demonstrations)["question"] == vqa_dataset["question"]
    sampler = BudgetBatchSampler(demonstrations["keep_ratio"], [1, 2], batch_size=2, num_batches=300, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 300
    smallest = [demonstrations["keep_ratio"][batch[0]] == 1 / 9 for batch in batches]
    assert 0.58 < sum(smallest) / 300 < 0.75  # two thirds of the batches
    assert all(len({demonstrations["keep_ratio"][row] for row in batch}) == 1 for batch in batches)  # one budget
    assert batches == list(sampler)  # seeded
    sampler.set_epoch(1)
    assert batches != list(sampler)
    with pytest.raises(ValueError, match=r"3 imitation weights \[1, 1, 2\] for the demonstrations' 2 budgets"):
        BudgetBatchSampler(demonstrations["keep_ratio"], [1, 1, 2], 2, 10, 0)
    with pytest.raises(ValueError, match="no `example` column"):
        demonstrated_examples(demonstrations.remove_columns("example"))


def test_an_interrupted_demonstration_stage_resumes_from_its_shards(
    tprl_model, processor, vqa_dataset, tmp_path, monkeypatch
):
    """Each batch is written as it is done; a rerun reads those back and demonstrates the rest, giving the rows of an
    uninterrupted run. Shards of other settings are not read."""
    import tprl_train.demonstrations as stage

    collator, ratios = VQACollator(processor), [1 / 3, 1 / 9]
    expected = make_demonstrations(tprl_model, vqa_dataset, collator, ratios, 8, "leave_one_in_or_cls_attention")
    demonstrate, calls, interrupt = stage.teacher_demonstrations, [], [True]

    def interrupted_after_two_batches(*args):
        calls.append(len(calls))
        if interrupt[0] and len(calls) > 2:
            raise RuntimeError("interrupted")
        return demonstrate(*args)

    monkeypatch.setattr(stage, "teacher_demonstrations", interrupted_after_two_batches)
    shards = tmp_path / "shards"
    with pytest.raises(RuntimeError, match="interrupted"):
        make_demonstrations(tprl_model, vqa_dataset, collator, ratios, 8, "leave_one_in_or_cls_attention", shards)
    assert sorted(path.name for path in shards.glob("batch-*")) == ["batch-000000.json", "batch-000001.json"]
    calls.clear()
    interrupt[0] = False
    resumed = make_demonstrations(
        tprl_model, vqa_dataset, collator, ratios, 8, "leave_one_in_or_cls_attention", shards
    )
    assert len(calls) == len(vqa_dataset) // 8 - 2  # only the batches not written
    assert resumed.to_list() == expected.to_list()
    calls.clear()
    make_demonstrations(tprl_model, vqa_dataset, collator, [1 / 9], 8, "leave_one_in_or_cls_attention", shards)
    assert len(calls) == len(vqa_dataset) // 8  # other budgets: every batch again


def test_imitation_batches_hold_what_the_policy_reads_at_inference(tprl_model, processor, vqa_dataset):
    demonstrations = make_demonstrations(tprl_model, vqa_dataset, VQACollator(processor), [1 / 9], 8, "cls_attention")
    inputs = encode_examples(tprl_model, demonstrated_examples(demonstrations), VQACollator(processor), batch_size=5)
    dataset = DemonstrationDataset(demonstrations, inputs)
    batch = collate_demonstrations([dataset[i] for i in [3, 0, 7]])
    expected = VQACollator(processor)([vqa_dataset[i] for i in [3, 0, 7]])
    with torch.no_grad():
        features = tprl_model.visual_tokens(expected["pixel_values"])
        torch.testing.assert_close(batch["latents"], tprl_model.pruner.autoencoder.encode(features))
        question, mask = tprl_model.question_embeddings(expected["input_ids"], prompt_attention_mask(expected), 3)
        embedded = tprl_model.get_input_embeddings()(batch["question_ids"])
    assert torch.equal(batch["question_mask"], mask)
    torch.testing.assert_close(embedded * mask[..., None], question * mask[..., None])
    assert [step.tolist() for step in batch["picks"]] == [
        [demonstrations[i]["picks"][step] for i in [3, 0, 7]] for step in range(3)
    ]


def test_imitation_trainer_learns_the_teachers_picks_and_saves_a_pruner_checkpoint(
    base_dir, processor, vqa_dataset, tmp_path
):
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    collator = VQACollator(processor)
    demonstrations = make_demonstrations(model, vqa_dataset.select(range(8)), collator, [1 / 9], 8, "gradient")
    inputs = encode_examples(model, demonstrated_examples(demonstrations), collator, batch_size=8)
    args = imitation_arguments(tmp_path)
    sampler = BudgetBatchSampler(demonstrations["keep_ratio"], [1], batch_size=8, num_batches=30, seed=0)
    before = {k: v.clone() for k, v in model.pruner.autoencoder.state_dict().items()}
    trainer = ImitationTrainer(
        model, args, DemonstrationDataset(demonstrations, inputs), sampler, processing_class=processor
    )
    trainer.train()
    losses = [record["loss"] for record in trainer.state.log_history if "loss" in record]
    assert losses[-1] < losses[0] - 0.3, losses
    for name, value in model.pruner.autoencoder.state_dict().items():  # only the policy trains
        assert torch.equal(value, before[name]), name
    reloaded = TPRLForConditionalGeneration.from_pretrained(tmp_path / "checkpoint-30")
    for name, value in model.pruner.policy.state_dict().items():
        torch.testing.assert_close(reloaded.pruner.policy.state_dict()[name], value, msg=name)


def test_relevance_loss_against_a_hand_computed_example():
    inf = float("inf")
    keep_logits = [
        torch.tensor([[0.0, 1.0, -1.0, 2.0], [5.0, 5.0, 5.0, 5.0]]),
        torch.tensor([[-inf, 3.0, -inf, -2.0], [5.0, -inf, -inf, 5.0]]),
    ]
    # Row 0: token 2 is dropped after the first step, so the second step does not score it. Row 1 has no relevant
    # token (a question no token answers alone): it does not count.
    relevant = torch.tensor([[False, True, True, False], [False, False, False, False]])

    def bce(logit, target):
        return -math.log(torch.sigmoid(torch.tensor(logit if target else -logit)).item())

    first = (bce(0.0, 0) + bce(1.0, 1) + bce(-1.0, 1) + bce(2.0, 0)) / 4
    second = (bce(3.0, 1) + bce(-2.0, 0)) / 2
    assert relevance_loss(keep_logits, relevant).item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_the_relevance_target_is_the_top_of_the_teachers_leave_one_in_scores(
    base_dir, processor, vqa_dataset, tmp_path
):
    torch.manual_seed(0)
    model = TPRLForConditionalGeneration.from_base(base_dir, policy_hidden_size=32)
    collator, examples = VQACollator(processor), vqa_dataset.select(range(8))
    teacher = "leave_one_in_or_cls_attention"
    demonstrations = make_demonstrations(model, examples, collator, [1 / 3, 1 / 9], 8, teacher)
    batch = collator([examples[i] for i in range(8)])
    with torch.no_grad():
        alone = leave_one_in_scores(model, batch, model.visual_tokens(batch["pixel_values"]))
    torch.testing.assert_close(torch.tensor(demonstrations["leave_one_in"][8:]), alone)  # per example, every budget
    inputs = encode_examples(model, demonstrated_examples(demonstrations), collator, batch_size=8)
    top_4 = torch.zeros(len(alone), alone.shape[1], dtype=torch.bool).scatter(1, alone.topk(4).indices, True)
    strict = DemonstrationDataset(demonstrations, inputs, relevance_tokens=4, relevance_threshold=0.5)
    assert torch.equal(strict.relevant, top_4 & (alone.exp() >= 0.5))
    dataset = DemonstrationDataset(demonstrations, inputs, relevance_tokens=4, relevance_threshold=0.0)
    assert torch.equal(dataset[9]["relevant"], top_4[1])  # row 9: example 1 at 1/9
    args = imitation_arguments(tmp_path)
    sampler = BudgetBatchSampler(demonstrations["keep_ratio"], [1, 1], batch_size=8, num_batches=30, seed=0)
    trainer = ImitationTrainer(model, args, dataset, sampler, relevance_coef=1.0, processing_class=processor)
    # The target trains each step's keep logits, which the imitated episode already computes.
    batch = collate_demonstrations([dataset[row] for row in range(8)])
    policy = model.pruner.policy
    inputs = policy.embed_inputs(
        batch["latents"], model.get_input_embeddings()(batch["question_ids"]), batch["question_mask"]
    )
    episode = policy.episode(inputs, batch["picks"][-1].shape[1], actions=batch["picks"])
    for step, kept_mask in enumerate(episode.kept_masks):
        logits, _ = policy.logits_and_values(inputs, kept_mask, step)
        torch.testing.assert_close(episode.keep_logits[step], logits)
    trainer.train()
    relevance = [record["relevance_loss"] for record in trainer.state.log_history if "relevance_loss" in record]
    assert len(relevance) == 30 and relevance[-1] < relevance[0] / 2, relevance
    with pytest.raises(ValueError, match="needs the teacher's leave-one-in scores"):
        DemonstrationDataset(demonstrations.remove_columns("leave_one_in"), inputs, relevance_tokens=4)
