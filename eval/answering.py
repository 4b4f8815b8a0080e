"""Greedy answers of a (pruning) LLaVA to benchmark prompts, batched, through the processor's chat template."""

import torch
from PIL import Image


@torch.no_grad()
def generate_answers(
    model,
    processor,
    prompts: list[str],
    images: list[Image.Image],
    batch_size: int = 8,
    max_new_tokens: int = 16,
    **pruning_kwargs,
) -> list[str]:
    """One greedy answer per (image, prompt), as LLaVA-1.5's evaluation asks: the image first, then the prompt.

    `pruning_kwargs` (`keep_ratio`, `num_kept_tokens`) reach a TPRL model's `generate`.
    """
    processor.tokenizer.padding_side = "left"  # batched generation continues every row at the same position
    answers = []
    for start in range(0, len(prompts), batch_size):
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
                add_generation_prompt=True,
            )
            for prompt in prompts[start : start + batch_size]
        ]
        inputs = processor(images=images[start : start + batch_size], text=texts, return_tensors="pt", padding=True)
        inputs = inputs.to(model.device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **pruning_kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        answers += [answer.strip() for answer in processor.batch_decode(new_tokens, skip_special_tokens=True)]
    return answers
