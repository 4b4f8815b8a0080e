"""TPRL for transformers: LLaVA with a learned, question-aware visual-token pruner."""

from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from .configuration_tprl import TPRLConfig
from .modeling_tprl import TPRLCausalLMOutputWithPast, TPRLForConditionalGeneration, TPRLPreTrainedModel
from .pruning_tprl import TPRLPruner, keep_schedule


AutoConfig.register(TPRLConfig.model_type, TPRLConfig)
AutoModel.register(TPRLConfig, TPRLForConditionalGeneration)
AutoModelForImageTextToText.register(TPRLConfig, TPRLForConditionalGeneration)
# save_pretrained copies the code files and writes an auto_map, so trust_remote_code loads work without us.
TPRLConfig.register_for_auto_class()
TPRLForConditionalGeneration.register_for_auto_class("AutoModelForImageTextToText")

__all__ = [
    "TPRLCausalLMOutputWithPast",
    "TPRLConfig",
    "TPRLForConditionalGeneration",
    "TPRLPreTrainedModel",
    "TPRLPruner",
    "keep_schedule",
]
