"""Turns digit-world examples into the tiny bases' model inputs (left-padded, as for generation)."""

from functools import lru_cache

import torch
from transformers import ProcessorMixin

from .processor import canvas_token_count, pixel_values_of


class DigitWorldCollator:
    """Batches examples into `input_ids`, `attention_mask`, the image inputs (`pixel_values`; LLaVA-NeXT's
    `image_sizes`, Qwen-VL's `image_grid_thw` and `mm_token_type_ids` too) and, with answers, `labels`.

    The token ids equal what `processor(images=..., text=prompt)` gives; the tokenisation of each distinct
    question is cached and the pixels are normalised in one tensor operation, which keeps CPU training fast.

    An example may carry `follow_ups`, more `{"question", "answer"}` turns about the same image, appended as
    LLaVA-1.5 conversations continue (`... ASSISTANT : a1 </s> USER : q2 ASSISTANT : a2 </s>`); with answers, every
    turn's answer is scored.

    Args:
        processor ([`ProcessorMixin`]): the tiny base's processor (`build_processor`, `build_llava_next_processor`,
            `build_qwen2_5_vl_processor`).
        with_answers (`bool`): append the answer and `</s>` and return `labels` that score only them.
    """

    def __init__(self, processor: ProcessorMixin, with_answers: bool = False):
        self.processor = processor
        self.with_answers = with_answers
        self.pad_id = processor.tokenizer.pad_token_id
        self.eos_id = processor.tokenizer.eos_token_id
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
        self._prompt_ids = lru_cache(maxsize=None)(self._encode_prompt)
        self._turn_ids = lru_cache(maxsize=None)(self._encode_turn)

    def _encode_prompt(self, question: str, image_shape: tuple[int, int]) -> tuple[int, ...]:
        # The processor expands each <image> into one placeholder per visual token, as done here.
        image_token = self.processor.image_token
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        text = prompt.replace(image_token, image_token * canvas_token_count(self.processor, image_shape))
        return tuple(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode_turn(self, question: str) -> tuple[int, ...]:
        return tuple(self.processor.tokenizer(f"USER : {question} ASSISTANT :", add_special_tokens=False)["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        return self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.eos_id]

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        sequences, targets = [], []
        for example in examples:
            prompt = list(self._prompt_ids(example["question"], example["image"].shape[:2]))
            answer = self.answer_ids(example["answer"]) if self.with_answers else []
            sequence, target = prompt + answer, [-100] * len(prompt) + answer
            for turn in example.get("follow_ups", []) if self.with_answers else []:
                prompt = list(self._turn_ids(turn["question"]))
                answer = self.answer_ids(turn["answer"])
                sequence, target = sequence + prompt + answer, target + [-100] * len(prompt) + answer
            sequences.append(sequence)
            targets.append(target)
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(examples), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), length), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, (sequence, target) in enumerate(zip(sequences, targets)):
            input_ids[row, length - len(sequence) :] = torch.tensor(sequence)
            labels[row, length - len(sequence) :] = torch.tensor(target)
            attention_mask[row, length - len(sequence) :] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        images = [example["image"] for example in examples]
        image_processor = self.processor.image_processor
        if image_processor.model_input_names != ["pixel_values"]:  # image_grid_thw, image_sizes
            batch |= image_processor(images, return_tensors="pt")
        else:
            batch["pixel_values"] = pixel_values_of(images, image_processor)
        if "mm_token_type_ids" in self.processor.model_input_names:
            batch["mm_token_type_ids"] = input_ids.eq(self.image_token_id).int()
        if self.with_answers:
            batch["labels"] = labels
        return batch
