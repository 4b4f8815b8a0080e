"""The tiny bases' processors: a word-level tokenizer with a LLaVA-1.5 chat template, and the family's image
processor (CLIP's for the tiny LLaVA, LLaVA-NeXT's for the tiny LLaVA-NeXT, Qwen2-VL's for the tiny Qwen2.5-VL)."""

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPImageProcessorPil,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    Qwen2VLImageProcessorPil,
)

from modeling_tprl.processing_tprl import ImageOnlyQwenVLProcessor

from .canvas import CANVAS_SIZE, TILED_CANVAS_SHAPES, vocabulary


PATCH_SIZE = 8
TILE_SIZE = CANVAS_SIZE // 2
"""Pixels on a side of the tiny LLaVA-NeXT's crops: a 96x96 canvas is a base view and 2x2 tiles."""
SPECIAL_TOKENS = ["<pad>", "<unk>", "</s>", "<image>"]
QWEN_VISION_TOKENS = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
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


def _word_tokenizer(special_tokens: list[str], **kwargs) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of the digit world's words, its special tokens first (`<pad>` is id 0)."""
    vocab = {token: i for i, token in enumerate(special_tokens + vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="</s>",
        padding_side="left",
        model_max_length=512,
        **kwargs,
    )


def _llava_style_processor(processor_class: type, image_processor) -> LlavaProcessor | LlavaNextProcessor:
    """A LLaVA-style processor of the digit world's words and chat template: 8-px patches, a [CLS] token per crop."""
    return processor_class(
        image_processor=image_processor,
        tokenizer=_word_tokenizer(SPECIAL_TOKENS, extra_special_tokens={"image_token": "<image>"}),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_processor() -> LlavaProcessor:
    """Builds the `LlavaProcessor` of the tiny digit-world LLaVA (no torchvision needed)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": CANVAS_SIZE}, crop_size={"height": CANVAS_SIZE, "width": CANVAS_SIZE}
    )
    return _llava_style_processor(LlavaProcessor, image_processor)


def build_llava_next_processor() -> LlavaNextProcessor:
    """Builds the `LlavaNextProcessor` of the tiny digit-world LLaVA-NeXT: the tiny LLaVA's words and chat template,
    48-px crops of 8-px patches (6x6 tokens and a [CLS] each), and the tiled digit world's canvas shapes as the grid
    pinpoints, so a canvas is tiled at its own resolution: its tiles' tokens are its 8-px patches."""
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": TILE_SIZE},
        crop_size={"height": TILE_SIZE, "width": TILE_SIZE},
        image_grid_pinpoints=[list(shape) for shape in TILED_CANVAS_SHAPES],
    )
    return _llava_style_processor(LlavaNextProcessor, image_processor)


def build_qwen2_5_vl_processor(image_processor: Qwen2VLImageProcessorPil | None = None) -> ImageOnlyQwenVLProcessor:
    """Builds the processor of the tiny digit-world Qwen2.5-VL: the same words and chat template as the tiny LLaVA's,
    the image between Qwen's `<|vision_start|>` and `<|vision_end|>`, and Qwen2-VL's image processor at the canvas
    size (8-px patches, no merge: the 12x12 token grid of the tiny LLaVA), or `image_processor` (the dry run's, at
    a real base's patches). It saves as `Qwen2_5_VLProcessor`."""
    tokenizer = _word_tokenizer(SPECIAL_TOKENS[:3] + QWEN_VISION_TOKENS)
    tokenizer.add_special_tokens({"additional_special_tokens": QWEN_VISION_TOKENS})  # matched before words split
    tokenizer.image_token, tokenizer.video_token = "<|image_pad|>", "<|video_pad|>"
    if image_processor is None:
        image_processor = Qwen2VLImageProcessorPil(
            patch_size=PATCH_SIZE,
            merge_size=1,
            temporal_patch_size=2,
            min_pixels=CANVAS_SIZE**2,
            max_pixels=CANVAS_SIZE**2,
        )
    chat_template = CHAT_TEMPLATE.replace("<image> ", "<|vision_start|><|image_pad|><|vision_end|> ")
    return ImageOnlyQwenVLProcessor(image_processor, tokenizer, chat_template=chat_template)


def token_patch_size(processor) -> int:
    """Pixels on a side of one visual token: LLaVA's patch, or Qwen-VL's patch times its merge size."""
    image_processor = processor.image_processor
    if hasattr(image_processor, "merge_size"):
        return image_processor.patch_size * image_processor.merge_size
    return processor.patch_size


def num_canvas_tokens(processor) -> int:
    """Visual tokens of one square digit-world canvas (144 for the tiny LLaVA and the tiny Qwen2.5-VL)."""
    return (CANVAS_SIZE // token_patch_size(processor)) ** 2


def canvas_shapes_of(processor) -> tuple[tuple[int, int], ...]:
    """The (height, width) of the digit-world canvases a tiny base reads: its grid pinpoints for a tiled base (each
    canvas tiled at its own resolution), else the square canvas."""
    pinpoints = getattr(processor.image_processor, "image_grid_pinpoints", None)
    return tuple(tuple(shape) for shape in pinpoints) if pinpoints else ((CANVAS_SIZE, CANVAS_SIZE),)


def base_view_tokens(processor) -> int:
    """Tokens of a tiled base's base view, which come before the tiles' (0 for an untiled base)."""
    if getattr(processor.image_processor, "image_grid_pinpoints", None) is None:
        return 0
    return (processor.image_processor.crop_size["height"] // processor.patch_size) ** 2


def canvas_token_grid(processor, shape: tuple[int, int]) -> torch.LongTensor:
    """`[rows, columns]` where each patch of a canvas of `shape` (height, width) sits among the image's visual tokens:
    row-major for an untiled base; for the tiny LLaVA-NeXT after the base view, each row of tiles' tokens closed by
    its newline token (the canvas is tiled at its own resolution, so its tile tokens are its patches)."""
    patch = token_patch_size(processor)
    rows, columns = shape[0] // patch, shape[1] // patch
    newline = int(base_view_tokens(processor) > 0)
    grid = torch.arange(rows)[:, None] * (columns + newline) + torch.arange(columns)
    return base_view_tokens(processor) + grid


def content_tokens(processor, shape: tuple[int, int]) -> list[int]:
    """The content tokens of a canvas of `shape`: a tiled base's base view, then the patches' tokens (not the row
    newlines)."""
    return list(range(base_view_tokens(processor))) + canvas_token_grid(processor, shape).flatten().tolist()


def canvas_token_count(processor, shape: tuple[int, int]) -> int:
    """Visual tokens of one canvas of `shape` (height, width), as the processor expands its `<image>`."""
    grid = canvas_token_grid(processor, shape)
    return int(grid[-1, -1]) + 1 + int(base_view_tokens(processor) > 0)


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
