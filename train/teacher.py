"""The imitation teacher: a multi-step greedy pruner that follows the pruner's step schedule.

At each step the teacher ranks the tokens still kept by an importance score and keeps the top ones. Scores:

- `leave_one_out` (loss-based, knows the answer): the exact drop in the frozen LLaVA's log-likelihood of the
  correct answer when that one token is removed from the current selection (one forward per kept token).
- `gradient` (loss-based, knows the answer): the same drop to first order, `grad_i . x_i`, from one backward pass.
- `cls_attention` (training-free): the vision tower's [CLS] attention to each patch, the best training-free method
  on the digit world.
- `answer_attention` (knows the answer): FastV's score taken where the answer is: the attention of the last token
  of the prompt *followed by the correct answer* to each visual token at an early LM layer (`fastv_layer`).
- `cls_attention_then_leave_one_out` (knows the answer at the last step): `cls_attention` for the early steps,
  which drop the background, then the exact leave-one-out drop for the last step among the few tokens left, with
  `cls_attention`'s order as a small prior for the tokens whose removal changes nothing (one forward per token
  left, so ~5x cheaper than `leave_one_out` at 16 of 144 kept).
- `leave_one_in_or_cls_attention` (knows the answer, question-aware): leave-one-in is the answer's log-likelihood
  with that one token *alone* kept, so it finds the tokens the question is about (a token's twin patches do not
  hide it, as they do from leave-one-out) but not the coverage a count needs, which [CLS] attention gives. Per
  example, the best of five rankings at the episode's budget k: [CLS] attention, or leave-one-in's top k/4, k/2,
  3k/4 or k first and then [CLS] attention (`LEAVE_ONE_IN_SHARES`); each top k is scored by the frozen LLaVA on the
  answer, and the best ranks every step of the episode (one short forward per visual token, with that token alone).
  The larger shares matter on crowded images: with 6 digits on a canvas and 16 tokens kept, the top k/4 or k/2
  alone left the teacher at 89.2% where the five rankings reach 91.6%.

The loss-based teachers need the answer, so they exist only on training data; the policy learns to make the same
choices from the question alone. `scripts/compare_teachers.py` measures them against each other; the default is chosen
from its figures (see `train/configs/digit_world.yaml`).
"""

from dataclasses import replace

import torch

from modeling_tprl import TPRLForConditionalGeneration, run_episode
from modeling_tprl.families import VisualTokens
from modeling_tprl.pruning_methods import fastv_scores, vision_attention_scores

from .scoring import answer_scores


def gradient_importance(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    kept_visual_indices: torch.Tensor,
) -> torch.Tensor:
    """`[images, tokens]` first-order drop in answer log-likelihood if each kept token were removed; -inf if dropped."""
    features = image_features.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = answer_scores(model, batch, features, kept_visual_indices)
        (gradient,) = torch.autograd.grad(scores.log_likelihood.sum(), features)
    importance = (gradient * features.detach()).sum(-1).float()
    kept = torch.zeros_like(importance, dtype=torch.bool).scatter(1, kept_visual_indices, True)
    return importance.masked_fill(~kept, -torch.inf)


def _log_likelihoods_of_selections(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    rows: torch.Tensor,
    selections: torch.Tensor,
    chunk_size: int,
) -> torch.Tensor:
    """Answer log-likelihood of each selection `selections[i]` of image `rows[i]`, in chunks of `chunk_size`
    (`image_features`: as `answer_scores` takes them)."""
    scores = []
    for start in range(0, len(rows), chunk_size):
        part = rows[start : start + chunk_size]
        # Per row: the text, and the family's other image inputs (one image per row; Qwen's image_grid_thw).
        image_side = [name for name in model.image_inputs(batch) if name != "pixel_values"]
        sub_batch = {key: batch[key][part] for key in ("input_ids", "attention_mask", "labels", *image_side)}
        if not isinstance(image_features, VisualTokens):
            features = image_features[part]
        else:
            features = replace(
                image_features,
                features=image_features.features[part],
                counts=image_features.counts[part],
                grids=image_features.grids[part],
                image_inputs={name: sub_batch[name] for name in image_side},
                content=image_features.content[part],
            )
        scores.append(answer_scores(model, sub_batch, features, selections[start : start + chunk_size]).log_likelihood)
    return torch.cat(scores)


@torch.no_grad()
def leave_one_out_importance(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    kept_visual_indices: torch.Tensor,
    chunk_size: int = 512,
) -> torch.Tensor:
    """`[images, tokens]` exact drop in answer log-likelihood if each kept token alone were removed; -inf if dropped."""
    images, count = kept_visual_indices.shape
    reference = answer_scores(model, batch, image_features, kept_visual_indices).log_likelihood
    others = ~torch.eye(count, dtype=torch.bool, device=kept_visual_indices.device)
    variants = kept_visual_indices[:, None, :].expand(images, count, count)[:, others].view(images * count, count - 1)
    rows = torch.arange(images, device=variants.device).repeat_interleave(count)
    without = _log_likelihoods_of_selections(model, batch, image_features, rows, variants, chunk_size)
    drop = (reference[:, None] - without.view(images, count)).float()
    importance = torch.full(image_features.shape[:2], -torch.inf, device=drop.device)
    return importance.scatter(1, kept_visual_indices, drop)


@torch.no_grad()
def answer_attention_importance(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    kept_visual_indices: torch.Tensor,
) -> torch.Tensor:
    """
    `[images, tokens]` attention of the answer's last token to each visual token on the full prompt + answer (`batch`
    holds the answer; the scores do not depend on the selection); -inf where already dropped.
    """
    scores = fastv_scores(model, image_features, batch["input_ids"], batch["attention_mask"])
    return _mask_dropped(scores.float(), kept_visual_indices)


@torch.no_grad()
def cls_attention_importance(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    kept_visual_indices: torch.Tensor,
) -> torch.Tensor:
    """`[images, tokens]` the vision pass's attention score of each token (the vision_attention method: LLaVA's [CLS]
    attention, what Qwen's tokens receive in a full-attention block); -inf if dropped."""
    image_inputs = model.image_inputs(batch)
    scores = vision_attention_scores(model, **image_inputs)
    slots = model.policy_slots(image_inputs)
    if slots is not None:  # an anyres base's tokens onto the policy's slots, nothing in the empty ones
        slots = slots.to(scores.device)
        scores = scores.gather(1, slots.clamp(min=0)).masked_fill(slots < 0, 0.0)
    return _mask_dropped(scores.float(), kept_visual_indices)


@torch.no_grad()
def leave_one_out_with_cls_prior(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    kept_visual_indices: torch.Tensor,
) -> torch.Tensor:
    """
    The exact leave-one-out drop plus 0.01 nat per rank of the token's [CLS] attention among the kept ones: the
    drop decides, and where removing a token changes nothing (a second patch of a digit, a count's other digits)
    the [CLS] attention does.
    """
    drop = leave_one_out_importance(model, batch, image_features, kept_visual_indices)
    cls = cls_attention_importance(model, batch, image_features, kept_visual_indices)
    rank = cls.argsort(dim=1).argsort(dim=1).float()  # the dropped tokens rank lowest and stay -inf in `drop`
    return drop + 0.01 * rank


LEAVE_ONE_IN_MAX_CHUNK = 2048
LEAVE_ONE_IN_CHUNK_ELEMENTS = 2**28


def leave_one_in_chunk_size(sequence_length: int, hidden_size: int) -> int:
    """Selections leave-one-in scores in one forward of the base, its memory peak whatever the batch: at most 2048,
    fewer when their sequences, visual tokens inserted, would pass 2^28 elements (0.5 GiB in bf16; at LLaVA-1.5-7B's
    576 + 64 tokens of 4096, 102 selections)."""
    return max(1, min(LEAVE_ONE_IN_MAX_CHUNK, LEAVE_ONE_IN_CHUNK_ELEMENTS // (sequence_length * hidden_size)))


@torch.no_grad()
def leave_one_in_scores(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """`[images, tokens]` the answer's log-likelihood when each visual token alone is kept (one image per row)."""
    images, total, hidden = image_features.shape
    chunk_size = chunk_size or leave_one_in_chunk_size(batch["input_ids"].shape[1], hidden)
    image_inputs = {name: value for name, value in model.image_inputs(batch).items() if name != "pixel_values"}
    slots = model.policy_slots(image_inputs)
    if slots is not None:  # an anyres base: each slot's token alone, scored on the packed tokens (built once)
        slots = slots.to(image_features.device)
        rows, alone = (slots >= 0).nonzero(as_tuple=True)
        scores = torch.full((images, total), -torch.inf, device=image_features.device)
        scores[rows, alone] = _log_likelihoods_of_selections(
            model,
            batch,
            model.packed_tokens(image_inputs, image_features),
            rows,
            slots[rows, alone][:, None],
            chunk_size,
        ).float()
        return scores
    rows = torch.arange(images, device=image_features.device).repeat_interleave(total)
    alone = torch.arange(total, device=image_features.device).repeat(images)[:, None]
    return (
        _log_likelihoods_of_selections(model, batch, image_features, rows, alone, chunk_size)
        .view(images, total)
        .float()
    )


LEAVE_ONE_IN_SHARES = (1 / 4, 1 / 2, 3 / 4, 1)
"""The shares of the budget that `leave_one_in_or_cls_attention`'s candidate rankings fill from leave-one-in."""


@torch.no_grad()
def leave_one_in_or_cls_attention(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    budgets: list[int | torch.Tensor],
    alone: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """
    For each budget k of `budgets` (one for all images, or one per image), `[images, tokens]` per example the ranking
    whose k tokens give the frozen LLaVA the highest answer log-likelihood among: log [CLS] attention, and
    leave-one-in's top k x each of `LEAVE_ONE_IN_SHARES` ahead of it. Leave-one-in, the costly part, does not depend
    on the budget: it is scored once for all of them (or given: `alone`, `leave_one_in_scores`).
    """
    every_token = torch.arange(image_features.shape[1], device=image_features.device).expand(len(image_features), -1)
    cls = cls_attention_importance(model, batch, image_features, every_token).log()
    alone = leave_one_in_scores(model, batch, image_features) if alone is None else alone
    lowest = alone.masked_fill(alone.isinf(), torch.inf).min()  # of the tokens there are (an anyres base's slots)
    rankings = []
    for num_kept in budgets:
        candidates = [cls]
        for share in LEAVE_ONE_IN_SHARES:
            if isinstance(num_kept, int):
                top = alone.topk(max(1, round(num_kept * share)), dim=1)
                candidates.append(cls.scatter(1, top.indices, top.values - lowest + cls.max() + 1))
            else:  # each image its own top: the others keep their [CLS] score
                top = top_k(alone, (num_kept * share).round().long().clamp(min=1))
                boosted = alone.gather(1, top.clamp(min=0)) - lowest + cls.max() + 1
                boosted = torch.where(top >= 0, boosted, cls.gather(1, top.clamp(min=0)))
                candidates.append(cls.scatter(1, top.clamp(min=0), boosted))
        likelihoods = torch.stack(
            [
                answer_scores(model, batch, image_features, top_k(scores, num_kept).sort(dim=1).values).log_likelihood
                for scores in candidates
            ],
            dim=1,
        )
        best = likelihoods.argmax(dim=1)
        rankings.append(torch.stack(candidates, dim=1)[torch.arange(len(best), device=best.device), best])
    return rankings


def top_k(scores: torch.Tensor, count: int | torch.Tensor) -> torch.Tensor:
    """Each row's `count` highest-scoring tokens (`count`: one for all rows, or one per row, when the rows are
    right-padded with -1), in decreasing order of score."""
    if isinstance(count, int):
        return scores.topk(count, dim=1).indices
    indices = scores.topk(int(count.max()), dim=1).indices
    return indices.masked_fill(torch.arange(indices.shape[1], device=indices.device) >= count[:, None], -1)


def _mask_dropped(scores: torch.Tensor, kept_visual_indices: torch.Tensor) -> torch.Tensor:
    kept = torch.zeros_like(scores, dtype=torch.bool).scatter(1, kept_visual_indices, True)
    return scores.masked_fill(~kept, -torch.inf)


TEACHERS = {
    "leave_one_out": leave_one_out_importance,
    "gradient": gradient_importance,
    "answer_attention": answer_attention_importance,
    "cls_attention": cls_attention_importance,
    "cls_attention_then_leave_one_out": cls_attention_importance,
    "leave_one_in_or_cls_attention": leave_one_in_or_cls_attention,
}
# Teachers that score the episode's last step differently from the earlier ones.
LAST_STEP_TEACHERS = {"cls_attention_then_leave_one_out": leave_one_out_with_cls_prior}
# Teachers whose (earlier steps') scores do not depend on the selection: scored once per batch, then masked.
SELECTION_FREE_TEACHERS = {"answer_attention", "cls_attention", "cls_attention_then_leave_one_out"}
# Teachers whose scores do not depend on the selection but on the episode's budget: scored once for all budgets.
BUDGET_TEACHERS = {"leave_one_in_or_cls_attention"}
# Teachers that rank an anyres base's images, whose token counts and budgets differ, by scores made once.
ANYRES_TEACHERS = ("cls_attention", "leave_one_in_or_cls_attention")


def teacher_demonstrations(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor,
    budgets: list[int | torch.Tensor],
    teacher: str,
    leave_one_in: torch.Tensor | None = None,
) -> list[list[torch.Tensor]]:
    """
    The teacher's episode at each budget of `budgets`: for each step, `[images, k_step]` picks ordered by decreasing
    importance (the order is the Plackett-Luce action the policy imitates). Each step's picks are a subset of the
    previous step's. Scores that do not depend on the selection are computed once for all budgets; a budget teacher
    takes the `leave_one_in` scores if they are given. For an anyres base (`image_features` on the policy's slots) a
    budget is one per image, the picks right-padded with -1, and each episode starts from the slots an image has.
    """
    if teacher not in TEACHERS:
        raise ValueError(f"Unknown teacher {teacher!r}; choose from {tuple(TEACHERS)}.")
    present = model.policy_present(model.image_inputs(batch))
    if present is not None and teacher not in ANYRES_TEACHERS:
        raise ValueError(
            f"Teacher {teacher!r} scores selections of a fixed size; on an anyres base (images of different token "
            f"counts) use one of {ANYRES_TEACHERS}."
        )
    images, total, _ = image_features.shape
    every_token = torch.arange(total, device=image_features.device).expand(images, -1)
    if teacher in BUDGET_TEACHERS:
        fixed_scores = TEACHERS[teacher](model, batch, image_features, budgets, leave_one_in)
    elif teacher in SELECTION_FREE_TEACHERS:
        fixed_scores = [TEACHERS[teacher](model, batch, image_features, every_token)] * len(budgets)
    else:
        fixed_scores = [None] * len(budgets)
    num_steps = model.config.num_pruning_steps
    episodes = []
    for num_kept, scores_of_episode in zip(budgets, fixed_scores):

        def rank(step: int, kept_mask: torch.Tensor, count: int, scores_of_episode=scores_of_episode) -> torch.Tensor:
            if present is not None:  # the images keep different counts: masked, not gathered
                return top_k(scores_of_episode.masked_fill(~kept_mask, -torch.inf), count)
            kept = kept_mask.nonzero()[:, 1].view(images, -1)
            if step == num_steps - 1 and teacher in LAST_STEP_TEACHERS:
                scores = LAST_STEP_TEACHERS[teacher](model, batch, image_features, kept)
            elif scores_of_episode is not None:
                scores = _mask_dropped(scores_of_episode, kept)
            else:
                scores = TEACHERS[teacher](model, batch, image_features, kept)
            return scores.topk(count, dim=1).indices

        start = torch.ones(images, total, dtype=torch.bool, device=image_features.device)
        start = start if present is None else present.to(start.device)
        episodes.append([picks for _, picks in run_episode(rank, start, num_kept, num_steps)])
    return episodes
