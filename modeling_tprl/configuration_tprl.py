"""TPRL model configuration."""

from transformers import LlavaConfig, PreTrainedConfig

from .pruning_methods import ALL_PRUNING_METHODS


SUPPORTED_BASE_MODEL_TYPES = ("llava",)


class TPRLConfig(PreTrainedConfig):
    r"""
    Configuration of a [`TPRLForConditionalGeneration`]: a LLaVA base model and the learned pruner that drops its
    projected visual tokens before the language model.

    Args:
        base_model_name_or_path (`str`, *optional*):
            Hub id or local directory of the llava-hf base model. A pruner-only checkpoint loads the base from here.
        base_config (`dict`, *optional*):
            The base's `LlavaConfig` as a dictionary (a copy: sharing the base's config object would let this model's
            initialisation change the base's attention implementation).
        keep_ratio (`float`, *optional*, defaults to 1/3):
            Share of each image's visual tokens kept, in (0, 1]. `1.0` turns pruning off.
        num_kept_tokens (`int`, *optional*):
            Visual tokens kept per image; takes the place of `keep_ratio` when set.
        num_pruning_steps (`int`, *optional*, defaults to 3):
            Decisions per episode: each step keeps part of the tokens still kept, down to the budget.
        autoencoder_latent_size (`int`, *optional*):
            Width of the state autoencoder's latent; defaults to the base LM's hidden size / 16 (at least 16).
        policy_hidden_size (`int`, *optional*, defaults to 256):
            Width of the policy transformer.
        policy_num_layers (`int`, *optional*, defaults to 2):
            Layers of the policy transformer.
        policy_num_heads (`int`, *optional*, defaults to 4):
            Attention heads of the policy transformer.
        policy_kernel_size (`int`, *optional*, defaults to 3):
            Side of the neighbourhood, on the square grid of visual tokens, that the policy reads each token's state
            with (the states of the `kernel x kernel` tokens around it, normalised together), since an object spans
            several patches. `1` reads each token alone: the only choice for visual tokens that are not a square grid.
        pruning_method (`str`, *optional*, defaults to `"tprl"`):
            The default way tokens are chosen (each call can name another): `"tprl"` (the learned policy), or a
            training-free method: `"random"`, `"uniform"` (stride), `"cls_attention"` ([CLS] attention in the vision
            layer LLaVA reads) or `"fastv"` (the last prompt token's attention in LM layer `fastv_layer`, on the full
            sequence); see `ALL_PRUNING_METHODS`.
        fastv_layer (`int`, *optional*, defaults to 2):
            LM layer (0-based) whose attention ranks the tokens for `"fastv"`; the last layer if the LM is shallower.
        pruner_only (`bool`, *optional*, defaults to `True`):
            Whether a saved checkpoint holds the pruner's weights only (the base is loaded from
            `base_model_name_or_path`) or the base's as well.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the pruner's weight initialisation.

    Example:

    ```python
    >>> from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration

    >>> model = TPRLForConditionalGeneration.from_base("llava-hf/llava-1.5-7b-hf", keep_ratio=1 / 3)
    >>> model.config.keep_ratio
    0.3333333333333333
    ```"""

    model_type = "tprl"

    base_model_name_or_path: str | None = None
    base_config: dict | None = None
    keep_ratio: float | None = 1 / 3
    num_kept_tokens: int | None = None
    num_pruning_steps: int = 3
    autoencoder_latent_size: int | None = None
    policy_hidden_size: int = 256
    policy_num_layers: int = 2
    policy_num_heads: int = 4
    policy_kernel_size: int = 3
    pruning_method: str = "tprl"
    fastv_layer: int = 2
    pruner_only: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        if isinstance(self.base_config, PreTrainedConfig):
            self.base_config = self.base_config.to_dict()
        self._check_types()
        if self.keep_ratio is not None:
            check_keep_ratio(self.keep_ratio)
        if self.num_kept_tokens is not None and self.num_kept_tokens < 1:
            raise ValueError(f"num_kept_tokens must be at least 1, got {self.num_kept_tokens}.")
        if self.keep_ratio is None and self.num_kept_tokens is None:
            raise ValueError("Set a budget: keep_ratio in (0, 1] or num_kept_tokens >= 1.")
        if self.fastv_layer < 0:
            raise ValueError(f"fastv_layer must not be negative, got {self.fastv_layer}.")
        for name in ("num_pruning_steps", "policy_hidden_size", "policy_num_layers", "policy_num_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.policy_hidden_size % self.policy_num_heads:
            raise ValueError(
                f"policy_hidden_size ({self.policy_hidden_size}) must be divisible by policy_num_heads "
                f"({self.policy_num_heads})."
            )
        if self.policy_kernel_size < 1 or self.policy_kernel_size % 2 == 0:
            raise ValueError(f"policy_kernel_size must be an odd number >= 1, got {self.policy_kernel_size}.")
        if self.pruning_method not in ALL_PRUNING_METHODS:
            raise ValueError(
                f"Unknown pruning_method {self.pruning_method!r}; choose one of {tuple(ALL_PRUNING_METHODS)}."
            )
        if self.base_config is not None:
            model_type = self.base_config.get("model_type")
            if model_type not in SUPPORTED_BASE_MODEL_TYPES:
                raise ValueError(
                    f"TPRL prunes LLaVA models; the base has model_type {model_type!r}. "
                    f"Supported base model types: {SUPPORTED_BASE_MODEL_TYPES}."
                )
            if self.autoencoder_latent_size is None:
                self.autoencoder_latent_size = max(16, self.base_text_hidden_size // 16)
            if self.policy_kernel_size > 1 and self.visual_grid_side is None:
                raise ValueError(
                    f"policy_kernel_size {self.policy_kernel_size} needs the visual tokens on a square grid, but this "
                    f"base gives {self.num_visual_tokens} per image (vision_feature_select_strategy 'full' adds the "
                    "[CLS] token); set policy_kernel_size=1."
                )
        super().__post_init__(**kwargs)

    def _check_types(self) -> None:
        # Custom fields are not type-checked by PreTrainedConfig: a string keep ratio must fail here, not mid-run.
        expected = {
            "base_model_name_or_path": (str, type(None)),
            "base_config": (dict, type(None)),
            "keep_ratio": (float, int, type(None)),
            "num_kept_tokens": (int, type(None)),
            "num_pruning_steps": (int,),
            "autoencoder_latent_size": (int, type(None)),
            "policy_hidden_size": (int,),
            "policy_num_layers": (int,),
            "policy_num_heads": (int,),
            "policy_kernel_size": (int,),
            "pruning_method": (str,),
            "fastv_layer": (int,),
            "pruner_only": (bool,),
            "initializer_range": (float, int),
        }
        for name, types in expected.items():
            value = getattr(self, name)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
                raise TypeError(f"TPRLConfig.{name} must be {names}, got {type(value).__name__} {value!r}.")

    @property
    def base_llava_config(self) -> LlavaConfig:
        """A fresh `LlavaConfig` of the base, built from the stored copy."""
        if self.base_config is None:
            raise ValueError(
                "This TPRLConfig has no base_config; build the model with TPRLForConditionalGeneration.from_base."
            )
        return LlavaConfig.from_dict(self.base_config)

    @property
    def base_text_hidden_size(self) -> int:
        return self.base_config["text_config"]["hidden_size"]

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens per image that reach the language model (before pruning)."""
        vision = self.base_config["vision_config"]
        tokens = (vision["image_size"] // vision["patch_size"]) ** 2
        return tokens + (self.base_config.get("vision_feature_select_strategy") == "full")

    @property
    def visual_grid_side(self) -> int | None:
        """Side of the square grid the visual tokens form (row-major patches), or `None` if they do not form one."""
        side = round(self.num_visual_tokens**0.5)
        return side if side * side == self.num_visual_tokens else None


def check_keep_ratio(keep_ratio: float) -> None:
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be a number in (0, 1] (1.0 keeps every token), got {keep_ratio!r}.")


def num_kept_for_ratio(num_visual_tokens: int, keep_ratio: float) -> int:
    """Visual tokens a keep ratio keeps per image (at least one)."""
    check_keep_ratio(keep_ratio)
    return max(1, round(num_visual_tokens * keep_ratio))


__all__ = ["TPRLConfig"]
