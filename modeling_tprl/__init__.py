# Copyright 2026 The tprl authors.

"""TPRL for transformers: image-text-to-text models (LLaVA, Qwen2-VL, Qwen2.5-VL) with a learned, question-aware
visual-token pruner."""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_tprl import TPRLConfig
from .families import ALL_FAMILIES, ImageTextFamily
from .modeling_tprl import TPRLCausalLMOutputWithPast, TPRLForConditionalGeneration, TPRLPreTrainedModel
from .pipeline_tprl import TPRLImageTextToTextPipeline
from .plackett_luce import PlackettLuce
from .processing_tprl import ImageOnlyQwenVLProcessor, load_processor
from .pruning_methods import ALL_PRUNING_METHODS
from .pruning_tprl import EpisodeInputs, PolicyEpisode, TPRLPolicy, TPRLPruner, keep_schedule, run_episode


AutoConfig.register(TPRLConfig.model_type, TPRLConfig)
AutoModel.register(TPRLConfig, TPRLForConditionalGeneration)
AutoModelForImageTextToText.register(TPRLConfig, TPRLForConditionalGeneration)
# save_pretrained copies the code files and writes an auto_map, so trust_remote_code loads work without us.
TPRLConfig.register_for_auto_class()
TPRLForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "ALL_FAMILIES",
    "ALL_PRUNING_METHODS",
    "EpisodeInputs",
    "ImageOnlyQwenVLProcessor",
    "ImageTextFamily",
    "PlackettLuce",
    "PolicyEpisode",
    "TPRLCausalLMOutputWithPast",
    "TPRLConfig",
    "TPRLForConditionalGeneration",
    "TPRLImageTextToTextPipeline",
    "TPRLPreTrainedModel",
    "TPRLPolicy",
    "TPRLPruner",
    "keep_schedule",
    "load_processor",
    "run_episode",
]
