"""A tiny LLaVA-NeXT and its processor, built from configs (no downloads): what the anyres tests share."""

import torch
from PIL import Image
from transformers import LlavaNextConfig, LlavaNextImageProcessorPil, LlavaNextProcessor

from tprl_digit_world import build_processor
from tprl_digit_world.processor import CHAT_TEMPLATE


CROP, PATCH = 16, 4  # a 16x16 crop of 4x4 patches: 16 tokens a crop
PINPOINTS = [[16, 32], [32, 16], [32, 32]]  # tile grids 1x2, 2x1, 2x2


TINY_VISION = {
    "image_size": CROP,
    "patch_size": PATCH,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def tiny_text_config(model_type: str, tokenizer) -> dict:
    """A two-layer language model of `model_type` over the digit world's vocabulary."""
    return {
        "model_type": model_type,
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def base_view_attentions(base, pixel_values: torch.Tensor) -> torch.Tensor:
    """`[images, heads, tokens, tokens]`: the eager attention weights of the vision tower's last layer on each image's
    first crop (its base view), as the tower itself gives them."""
    tower = base.model.vision_tower
    implementation = tower.config._attn_implementation
    tower.config._attn_implementation = "eager"
    try:
        return tower(pixel_values[:, 0], output_attentions=True).attentions[-1]
    finally:
        tower.config._attn_implementation = implementation


def random_images(shapes: list[tuple[int, int]], seed: int = 0) -> list[Image.Image]:
    """Images of noise of the given (width, height)s."""
    generator = torch.Generator().manual_seed(seed)
    return [
        Image.fromarray((torch.rand(height, width, 3, generator=generator) * 255).byte().numpy())
        for width, height in shapes
    ]


def prompt(question: str, images: int = 1) -> str:
    """The digit world's chat format with `images` image placeholders."""
    return f"USER : {'<image> ' * images}{question} ASSISTANT :"


def build_llava_next_processor() -> LlavaNextProcessor:
    """LLaVA-NeXT's processor with the digit world's word-level tokenizer and its PIL image processor (no
    torchvision), at 16x16 crops and the pinpoints above."""
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": CROP}, crop_size={"height": CROP, "width": CROP}, image_grid_pinpoints=PINPOINTS
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=build_processor().tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_llava_next_config(processor: LlavaNextProcessor) -> LlavaNextConfig:
    tokenizer = processor.tokenizer
    return LlavaNextConfig(
        vision_config={**TINY_VISION, "model_type": "clip_vision_model", "projection_dim": 32},
        text_config=tiny_text_config("llama", tokenizer),
        image_grid_pinpoints=PINPOINTS,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(CROP // PATCH) ** 2,
    )


def build_llava_onevision_processor(vision_aspect_ratio: str = "anyres_max_9"):
    """LLaVA-OneVision's image-only processor (no torchvision) with the digit world's tokenizer, at 16x16 crops."""
    from transformers import LlavaOnevisionImageProcessorPil

    from modeling_tprl.processing_tprl import ImageOnlyLlavaOnevisionProcessor

    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": CROP, "width": CROP}, image_grid_pinpoints=PINPOINTS, do_pad=True
    )
    return ImageOnlyLlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=build_processor().tokenizer,
        num_image_tokens=(CROP // PATCH) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio=vision_aspect_ratio,
    )


def tiny_llava_onevision_config(processor):
    from transformers import LlavaOnevisionConfig

    tokenizer = processor.tokenizer
    return LlavaOnevisionConfig(
        vision_config={**TINY_VISION, "model_type": "siglip_vision_model"},
        text_config=tiny_text_config("qwen2", tokenizer),
        image_grid_pinpoints=PINPOINTS,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_id=tokenizer.unk_token_id,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        vision_aspect_ratio=processor.vision_aspect_ratio,
    )
