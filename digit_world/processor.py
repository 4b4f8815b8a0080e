"""The tiny base's processor: a word-level tokenizer with a LLaVA-1.5 chat template and a CLIP image processor."""

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPImageProcessorPil, LlavaProcessor, PreTrainedTokenizerFast

from .canvas import CANVAS_SIZE, vocabulary


PATCH_SIZE = 8
SPECIAL_TOKENS = ["<pad>", "<unk>", "</s>", "<image>"]
# LLaVA-1.5's conversation format, on whitespace-separated words.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER : {% else %}ASSISTANT : {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }} "
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image> {% elif item['type'] == 'text' %}{{ item['text'] }} {% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] != 'user' %}</s> {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT :{% endif %}"
)


def build_processor() -> LlavaProcessor:
    """Builds the `LlavaProcessor` of the tiny digit-world LLaVA (no torchvision needed)."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
        padding_side="left",
        model_max_length=512,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": CANVAS_SIZE}, crop_size={"height": CANVAS_SIZE, "width": CANVAS_SIZE}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def prompt_for(question: str) -> str:
    """The chat-formatted prompt for one question about one image, as the processor's template writes it."""
    return f"USER : <image> {question} ASSISTANT :"


def canvases_to_pixel_values(images: np.ndarray, image_processor: CLIPImageProcessorPil) -> torch.Tensor:
    """Normalises a batch of uint8 canvases exactly as `image_processor` does, without PIL (fast path for training).

    Args:
        images (`np.ndarray`): `[batch, 96, 96, 3]` uint8 RGB canvases.
    """
    if images.ndim != 4 or images.shape[1:] != (CANVAS_SIZE, CANVAS_SIZE, 3):
        raise ValueError(
            f"Expected uint8 RGB canvases of shape [batch, {CANVAS_SIZE}, {CANVAS_SIZE}, 3], got {images.shape}; "
            "use the processor for images of other sizes."
        )
    if images.dtype != np.uint8:
        raise ValueError(f"Expected uint8 canvases, got {images.dtype}.")
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() * image_processor.rescale_factor
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    return (pixels - mean) / std
