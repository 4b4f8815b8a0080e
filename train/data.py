"""Training data for the pruner: (image, question, answer) examples chat-formatted with the base's own processor."""

import os
from pathlib import Path

import datasets
import torch
from transformers import ProcessorMixin

from tprl_digit_world import pixel_values_of


def load_split(path: str, split: str, config: str | None = None) -> datasets.Dataset:
    """A split from a `save_to_disk` directory, or through `datasets.load_dataset` (a Hub id or a local copy in a Hub
    layout, with its `config`)."""
    if os.path.isdir(path) and any(Path(path, name).exists() for name in ("dataset_dict.json", "state.json")):
        dataset = datasets.load_from_disk(path)
        return dataset[split] if isinstance(dataset, datasets.DatasetDict) else dataset
    return datasets.load_dataset(path, config, split=split)


class VQACollator:
    """Batches `{"image", "question", "answer"}` examples into left-padded LLaVA inputs whose `labels` score only the
    answer (and the end-of-turn tokens the chat template puts after it).

    The prompt is the processor's chat template for one user turn holding the image and the question, exactly as
    at inference; the answer is the assistant turn that follows it.

    Args:
        processor ([`ProcessorMixin`]): the base model's processor (with a chat template).
    """

    def __init__(self, processor: ProcessorMixin):
        if getattr(processor, "chat_template", None) is None:
            raise ValueError("The base model's processor has no chat template; set `processor.chat_template` first.")
        self.processor = processor

    def _conversation(self, question: str, answer: str | None) -> list[dict]:
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        if answer is not None:
            conversation.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return conversation

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        template = self.processor.apply_chat_template
        prompts = [template(self._conversation(e["question"], None), add_generation_prompt=True) for e in examples]
        texts = [template(self._conversation(e["question"], e["answer"])) for e in examples]
        tokenizer = self.processor.tokenizer
        # The answer span's length, from the text alone: the expanded image tokens are in the shared prompt part.
        answer_lengths = [
            len(tokenizer(text, add_special_tokens=False)["input_ids"])
            - len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            for prompt, text in zip(prompts, texts)
        ]
        images = [example["image"] for example in examples]
        batch = self.processor(
            images=images, text=texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt"
        )
        labels = torch.full_like(batch["input_ids"], -100)
        for row, length in enumerate(answer_lengths):
            if length < 1:
                raise ValueError(
                    f"Example {row} has an empty answer after chat formatting: {examples[row]['answer']!r}."
                )
            labels[row, -length:] = batch["input_ids"][row, -length:]
        batch["labels"] = labels
        return dict(batch)


class ImageCollator:
    """Batches the images of `{"image", ...}` examples into the image inputs alone (`pixel_values`, and LLaVA-NeXT's
    `image_sizes` or Qwen's `image_grid_thw`), as the processor makes them: what the autoencoder stage reads (it reads no text, and tokenising
    the prompts cost it a fifth of its time).

    Args:
        processor ([`ProcessorMixin`]): the base model's processor.
    """

    def __init__(self, processor: ProcessorMixin):
        self.image_processor = processor.image_processor

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        images = [example["image"] for example in examples]
        if self.image_processor.model_input_names != ["pixel_values"]:  # image_grid_thw, image_sizes
            return dict(self.image_processor(images, return_tensors="pt"))
        return {"pixel_values": pixel_values_of(images, self.image_processor)}


def prompt_attention_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The attention mask of the prompt alone: the policy reads the question as at inference, never the answer
    that `labels` score (and that training batches hold after the prompt)."""
    return batch["attention_mask"] * batch["labels"].eq(-100)
