"""The task score of the frozen LLaVA on a selection of visual tokens: what the teacher and the rewards measure."""

from dataclasses import dataclass

import torch

from modeling_tprl import TPRLForConditionalGeneration
from modeling_tprl.families import VisualTokens


@dataclass
class AnswerScores:
    """Per example: `log_likelihood` of the labelled answer tokens and whether the first of them is the argmax."""

    log_likelihood: torch.Tensor
    correct: torch.Tensor


def answer_scores(
    model: TPRLForConditionalGeneration,
    batch: dict[str, torch.Tensor],
    image_features: torch.Tensor | VisualTokens,
    kept_visual_indices: torch.Tensor,
) -> AnswerScores:
    """
    Runs the frozen base on the kept visual tokens and scores the answers in `batch["labels"]`.

    Args:
        model ([`TPRLForConditionalGeneration`]): the model; only its base and insertion path are used.
        batch (`dict`): `input_ids`, `attention_mask`, `labels` (answer tokens, `-100` elsewhere).
        image_features (`torch.Tensor` or `VisualTokens`): `[images, tokens, hidden]` projected visual tokens of
            `pixel_values` (`model.visual_tokens`: for an anyres base, on the policy's slots), or an anyres base's
            `packed_tokens`.
        kept_visual_indices (`torch.Tensor`): `[images, kept]` the selection to score (right-padded with -1): tokens
            of `image_features` (slots, or the packed content tokens), the layout tokens `config.layout_tokens` keeps
            added.
    """
    # The family's other image inputs (Qwen's image_grid_thw): the kept tokens' positions are read from them.
    image_inputs = {name: value for name, value in model.image_inputs(batch).items() if name != "pixel_values"}
    if isinstance(image_features, VisualTokens):  # packed already: only the newlines to add
        kept_visual_indices = model.family.complete_selection(
            model.config.base_config, kept_visual_indices, image_features, model.config.layout_tokens
        )
    elif model.policy_slots(image_inputs) is not None:  # an anyres base: its packed tokens and their newlines
        image_features, kept_visual_indices = model.tokens_from_slots(
            image_inputs, image_features, kept_visual_indices
        )
    pruned = model.prune_inputs(
        batch["input_ids"],
        pixel_values=None,
        **image_inputs,
        attention_mask=batch["attention_mask"],
        labels=batch["labels"],
        kept_visual_indices=kept_visual_indices,
        image_features=image_features,
    )
    # The answers end every (left-padded) row: the LM head runs on their positions alone, not on the whole vocabulary
    # at every position (at LLaVA-1.5-7B's 32k vocabulary, thousands of selections at once would not fit). The slice
    # is made contiguous first: a strided one sends CPU bf16 matmuls down a path that copies the head per row.
    length = pruned.labels.shape[1]
    span = min(length - 1, length - int(pruned.labels.ne(-100).int().argmax(1).min()))
    hidden = model.base.model(
        inputs_embeds=pruned.inputs_embeds, attention_mask=pruned.attention_mask, position_ids=pruned.position_ids
    ).last_hidden_state
    logits = model.base.lm_head(hidden[:, -(span + 1) : -1].contiguous())
    labels = pruned.labels[:, -span:]
    scored = labels.ne(-100)
    token_log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    log_likelihood = (token_log_probs * scored).sum(1)
    first = scored.int().argmax(1)
    rows = torch.arange(len(labels), device=labels.device)
    correct = logits[rows, first].argmax(-1).eq(labels[rows, first])
    return AnswerScores(log_likelihood=log_likelihood, correct=correct)
