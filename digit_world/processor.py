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


def pixel_values_of(images: list, image_processor: CLIPImageProcessorPil) -> torch.Tensor:
    """`pixel_values` of `images` (PIL images or `[height, width, 3]` uint8 arrays), bitwise as `image_processor` makes
    them. RGB uint8 images that it neither resizes nor crops (digit-world canvases for the tiny base) are rescaled
    and normalised here in one tensor operation, about 3x faster than its PIL path (training reads tens of
    thousands of canvases); any other image goes through `image_processor`."""
    arrays = [np.asarray(image) for image in images]
    if not all(_processed_as_is(image, array, image_processor) for image, array in zip(images, arrays)):
        return image_processor(images, return_tensors="pt")["pixel_values"]
    # The processor's arithmetic: rescaled in float64, cast to float32, then normalised in float32.
    pixels = (torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() * image_processor.rescale_factor).float()
    mean, std = (
        torch.tensor(values).view(1, 3, 1, 1) for values in (image_processor.image_mean, image_processor.image_std)
    )
    return (pixels - mean) / std


def _processed_as_is(image, array: np.ndarray, image_processor) -> bool:
    """Whether `image_processor` only rescales and normalises `image`: an RGB uint8 square at its crop size, which
    its resize (to that shortest edge) leaves as it is."""
    side = array.shape[0] if array.ndim == 3 else None
    return (
        isinstance(image_processor, CLIPImageProcessorPil)
        and image_processor.do_rescale
        and image_processor.do_normalize
        and array.dtype == np.uint8
        and array.shape == (side, side, 3)
        and getattr(image, "mode", "RGB") == "RGB"
        and (not image_processor.do_resize or image_processor.size.get("shortest_edge") == side)
        and (not image_processor.do_center_crop or image_processor.crop_size == {"height": side, "width": side})
    )
