# Copyright 2026 The tprl authors.

"""Loading the base's processor, also where torchvision is missing: Qwen-VL and LLaVA-OneVision processors then fall
back to their images."""

import os

from transformers import AutoConfig, AutoProcessor, LlavaOnevisionProcessor, ProcessorMixin, Qwen2_5_VLProcessor


class ImageOnlyQwenVLProcessor(Qwen2_5_VLProcessor):
    """
    Qwen2-VL / Qwen2.5-VL's processor for images and text, without the video processor, whose torchvision
    transforms cannot load on a machine without torchvision: the same tokenisation, image patches, `image_grid_thw`
    and `mm_token_type_ids`. It saves as `Qwen2_5_VLProcessor`, so that `AutoProcessor` loads the full processor where
    torchvision is installed.

    Args:
        image_processor: the image processor (e.g. `Qwen2VLImageProcessorPil`).
        tokenizer: the tokenizer, with the `<|image_pad|>` and `<|video_pad|>` tokens.
        chat_template (`str`, *optional*): the chat template.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "processor_class": "Qwen2_5_VLProcessor"}


class ImageOnlyLlavaOnevisionProcessor(LlavaOnevisionProcessor):
    """
    LLaVA-OneVision's processor for images and text, without the video processor (torchvision): the same
    tokenisation, crops, `image_sizes` and `batch_num_images`. It saves as `LlavaOnevisionProcessor`.

    Args:
        image_processor: the image processor (e.g. `LlavaOnevisionImageProcessorPil`).
        tokenizer: the tokenizer, with the `<image>` token.
        num_image_tokens (`int`): tokens of one crop.
        vision_feature_select_strategy (`str`): as the model's config.
        chat_template (`str`, *optional*): the chat template.
        vision_aspect_ratio (`str`): as the model's config (`"anyres_max_9"`).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
        **kwargs,
    ):
        self.num_image_tokens = num_image_tokens
        self.vision_feature_select_strategy = vision_feature_select_strategy
        self.image_token = getattr(tokenizer, "image_token", None) or image_token
        self.video_token = getattr(tokenizer, "video_token", None) or video_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        self.vision_aspect_ratio = vision_aspect_ratio
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "processor_class": "LlavaOnevisionProcessor"}


IMAGE_ONLY_PROCESSORS = {
    "qwen2_vl": ImageOnlyQwenVLProcessor,
    "qwen2_5_vl": ImageOnlyQwenVLProcessor,
    "llava_onevision": ImageOnlyLlavaOnevisionProcessor,
}


def load_processor(name_or_path: str | os.PathLike, **kwargs) -> ProcessorMixin:
    """
    `AutoProcessor.from_pretrained(name_or_path)`, the base's processor (of a base, or of a TPRL checkpoint that saved
    its base's). Without torchvision, a Qwen-VL processor cannot build its video processor: its image-only form
    (`ImageOnlyQwenVLProcessor`) then loads from the same files.
    """
    try:
        return AutoProcessor.from_pretrained(name_or_path, **kwargs)
    except (OSError, AttributeError, ImportError, ValueError) as error:
        try:
            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
        except (OSError, ValueError):
            raise error from None
        model_type = getattr(getattr(config, "base_config", None) or config, "model_type", None)
        if model_type not in IMAGE_ONLY_PROCESSORS:
            raise
        return IMAGE_ONLY_PROCESSORS[model_type].from_pretrained(name_or_path, **kwargs)


__all__ = ["ImageOnlyLlavaOnevisionProcessor", "ImageOnlyQwenVLProcessor", "load_processor"]
