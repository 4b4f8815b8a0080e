"""The tiny digit-world bases' architectures: a real `LlavaForConditionalGeneration`,
`LlavaNextForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration`, built from small configs."""

import math

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from .canvas import CANVAS_SIZE
from .processor import QWEN_VISION_TOKENS


def build_tiny_llava(processor) -> LlavaForConditionalGeneration:
    """The tiny LLaVA's architecture: 144 visual tokens (96 px, patch 8), CLIP width 64, Llama width 128."""
    config = LlavaConfig(
        vision_config=_tiny_clip_config(CANVAS_SIZE, processor.patch_size),
        text_config=_tiny_llama_config(processor.tokenizer),
        image_token_id=processor.tokenizer.convert_tokens_to_ids(processor.image_token),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(CANVAS_SIZE // processor.patch_size) ** 2,
        projector_hidden_act="gelu",
    )
    return _with_generation_ids(LlavaForConditionalGeneration(config), processor.tokenizer)


def build_tiny_llava_next(processor) -> LlavaNextForConditionalGeneration:
    """The tiny LLaVA-NeXT's architecture: the tiny LLaVA's CLIP and Llama widths, 48-px crops of 6x6 tokens; a
    96x96 canvas gives a base view and 2x2 tiles (192 tokens with the row newlines), a 96-wide, 48-high one 1x2 tiles
    (114)."""
    image_processor = processor.image_processor
    crop = image_processor.crop_size["height"]
    config = LlavaNextConfig(
        vision_config=_tiny_clip_config(crop, processor.patch_size),
        text_config=_tiny_llama_config(processor.tokenizer),
        image_token_id=processor.tokenizer.convert_tokens_to_ids(processor.image_token),
        image_grid_pinpoints=image_processor.image_grid_pinpoints,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=(crop // processor.patch_size) ** 2,
        projector_hidden_act="gelu",
    )
    return _with_generation_ids(LlavaNextForConditionalGeneration(config), processor.tokenizer)


def _tiny_clip_config(image_size: int, patch_size: int) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=64,
    )


def _tiny_llama_config(tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def _with_generation_ids(model, tokenizer):
    """The model with the tokenizer's padding and end ids for generation, and 2-D sin-cos patch positions."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    _init_sincos_positions(model.model.vision_tower.embeddings.position_embedding.weight)
    return model


@torch.no_grad()
def _init_sincos_positions(weight: torch.Tensor) -> None:
    """2-D sin-cos position embedding for the patches (row 0, the CLS token, gets zeros)."""
    side = int(math.isqrt(weight.shape[0] - 1))
    quarter = weight.shape[1] // 4
    freqs = 1.0 / (100.0 ** (torch.arange(quarter) / quarter))
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    parts = []
    for coord in (rows.flatten(), cols.flatten()):
        angles = coord[:, None].float() * freqs[None]
        parts += [angles.sin(), angles.cos()]
    weight.zero_()
    weight[1:, : 4 * quarter] = torch.cat(parts, dim=1)


def build_tiny_qwen2_5_vl(processor) -> Qwen2_5_VLForConditionalGeneration:
    """The tiny Qwen2.5-VL's architecture: 144 visual tokens (96 px, patch 8, no merge), a 64-wide vision tower whose
    first block attends within 6x6-token windows and second over the image, and a 128-wide Qwen2 LM with mRoPE."""
    tokenizer = processor.tokenizer
    image_processor = processor.image_processor
    vision_config = {
        "depth": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 4,
        "patch_size": image_processor.patch_size,
        "spatial_merge_size": image_processor.merge_size,
        "temporal_patch_size": image_processor.temporal_patch_size,
        "window_size": CANVAS_SIZE // 2,
        "fullatt_block_indexes": [1],
        "out_hidden_size": 128,
    }
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
        # Head width 32: 16 rotary frequencies, split between time, height and width.
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
        "tie_word_embeddings": False,
    }
    start, image, end, video = tokenizer.convert_tokens_to_ids(QWEN_VISION_TOKENS)
    config = Qwen2_5_VLConfig(
        vision_config=vision_config,
        text_config=text_config,
        vision_start_token_id=start,
        image_token_id=image,
        vision_end_token_id=end,
        video_token_id=video,
    )
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
