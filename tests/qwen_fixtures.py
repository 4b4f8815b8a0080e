"""A tiny Qwen2.5-VL and its processor, built from configs (no downloads): what the Qwen-VL tests share."""

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2VLImageProcessorPil

from modeling_tprl.processing_tprl import ImageOnlyQwenVLProcessor


PAD, EOS, VISION_START, VISION_END, IMAGE = 0, 1, 2, 3, 4
PATCH, MERGE, TEMPORAL = 4, 2, 2
SPECIAL_TOKENS = ["<pad>", "</s>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
WORDS = ["user", "assistant", ":", "what", "is", "shown", "how", "many", "red", "blue", "a", "the"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|> "
    "{% elif item['type'] == 'text' %}{{ item['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}assistant :{% endif %}"
)


def build_qwen_processor(words: list[str] = WORDS, min_pixels: int = 16 * 16, max_pixels: int = 64 * 64):
    """An image-only Qwen2.5-VL processor: a word-level tokenizer whose ids match `tiny_qwen_config`'s special
    tokens, and Qwen2-VL's PIL image processor at patch 4, merge 2."""
    vocabulary = dict.fromkeys(SPECIAL_TOKENS + WORDS + list(words))
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(vocabulary)}, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", padding_side="left", model_max_length=512
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:]})
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH, merge_size=MERGE, temporal_patch_size=TEMPORAL, min_pixels=min_pixels, max_pixels=max_pixels
    )
    return ImageOnlyQwenVLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def tiny_qwen_config() -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL small enough for CPU tests: windows of 2x2 merged tokens, one full-attention block of two."""
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0},
            "pad_token_id": PAD,
            "eos_token_id": EOS,
            "bos_token_id": None,
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 4,
            "out_hidden_size": 32,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "temporal_patch_size": TEMPORAL,
            "window_size": 2 * PATCH * MERGE,
            "fullatt_block_indexes": [1],
            "in_channels": 3,
        },
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        image_token_id=IMAGE,
        video_token_id=5,
    )
