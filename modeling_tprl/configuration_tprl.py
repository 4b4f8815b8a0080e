# Copyright 2026 The tprl authors.

"""TPRL model configuration."""

import difflib
import math

from huggingface_hub.dataclasses import as_validated_field, strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .families import SUPPORTED_BASE_MODEL_TYPES, family_of
from .pruning_methods import check_pruning_method


@as_validated_field
def _keep_ratio(value: float | int | None) -> None:
    if value is not None:
        check_keep_ratio(value)


@as_validated_field
def _at_least_one(value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"must be at least 1, got {value}.")


@as_validated_field
def _odd(value: int) -> None:
    if value < 1 or value % 2 == 0:
        raise ValueError(f"must be an odd number >= 1, got {value}.")


@as_validated_field
def _not_negative(value: int | float) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}.")


_known_pruning_method = as_validated_field(check_pruning_method)

LAYOUT_TOKEN_CHOICES = ("all", "rows", "none")


@as_validated_field
def _layout_tokens(value: str) -> None:
    if value not in LAYOUT_TOKEN_CHOICES:
        raise ValueError(f"must be one of {LAYOUT_TOKEN_CHOICES}, got {value!r}.")


@strict
class TPRLConfig(PreTrainedConfig):
    r"""
    Configuration of a [`TPRLForConditionalGeneration`]: an image-text-to-text base model (LLaVA, Qwen2.5-VL; see
    `modeling_tprl.families`) and the learned pruner that drops its projected visual tokens before the language model.

    Args:
        base_model_name_or_path (`str`, *optional*):
            Hub id or local directory of the base model. A pruner-only checkpoint loads the base from here.
        base_config (`dict` or `PreTrainedConfig`, *optional*):
            The base's config (`LlavaConfig`, `Qwen2_5_VLConfig`), a sub-config as LLaVA's `text_config` is: the model holds its base with
            this very object, so a change to it reaches the base and stays within this config. The base's attributes
            read and set through this config too (`config.text_config`, `config.vision_feature_layer`, ...), as on the
            base's own config: `generate` and transformers' tests read a TPRL model's config as they read LLaVA's.
        keep_ratio (`float`, *optional*, defaults to 1/3):
            Share of each image's own visual tokens kept, in (0, 1]. `1.0` turns pruning off.
        num_kept_tokens (`int`, *optional*):
            Visual tokens kept per image (at most the image's own count); takes the place of `keep_ratio` when set.
        visual_grid (`list[int]`, *optional*):
            `[rows, columns]` of the visual-token grid of the images the learned policy reads. Fixed by the base for
            families whose images all give the same tokens (LLaVA: derived, leave it unset); for families whose token
            count follows the image size (Qwen2.5-VL) the grid the policy is trained on (default `[16, 16]`, 448x448
            pixels). For anyres families (LLaVA-NeXT, OneVision) the largest tile grid the policy reads, besides the
            base view (default: the largest the grid pinpoints give); each image's tiles fill its top-left corner. The
            training-free methods take images of any size.
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
        layout_tokens (`str`, *optional*, defaults to `"rows"`):
            What a pruned image keeps of its layout tokens (LLaVA-NeXT's newline after each row of tiles), which
            budgets do not count and methods never choose: `"all"`, `"rows"` (the newlines of rows that keep a
            content token) or `"none"`. No effect on families without layout tokens.
        adaptive_budgets (`list[int]`, *optional*):
            Visual tokens per image that the policy may choose to keep, per image and question (increasing), e.g.
            `[4, 8, 12, 16, 24, 32, 48]`: `keep_ratio="adaptive"` then lets it choose, paying `compute_weight` per
            share of tokens kept. `None`: fixed budgets only.
        adaptive_operating_points (`list[list[float]]`, *optional*):
            `[compute_weight, mean keep ratio]` pairs measured on training questions after training (set by the
            trainer): `target_keep_ratio` is turned into a compute weight through them.
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
    sub_configs_defaults = {
        "base_config": SubConfigSpec(config_class=AutoConfig, model_type="llava", optional=True),
    }

    base_model_name_or_path: str | None = None
    base_config: dict | PreTrainedConfig | None = None
    keep_ratio: float | int | None = _keep_ratio(default=1 / 3)
    num_kept_tokens: int | None = _at_least_one(default=None)
    visual_grid: list[int] | None = None
    num_pruning_steps: int = _at_least_one(default=3)
    autoencoder_latent_size: int | None = _at_least_one(default=None)
    policy_hidden_size: int = _at_least_one(default=256)
    policy_num_layers: int = _at_least_one(default=2)
    policy_num_heads: int = _at_least_one(default=4)
    policy_kernel_size: int = _odd(default=3)
    pruning_method: str = _known_pruning_method(default="tprl")
    fastv_layer: int = _not_negative(default=2)
    layout_tokens: str = _layout_tokens(default="rows")
    adaptive_budgets: list[int] | None = None
    adaptive_operating_points: list[list[float]] | None = None
    pruner_only: bool = True
    initializer_range: float = _not_negative(default=0.02)

    def __post_init__(self, **kwargs):
        # Typed fields are checked by @strict on creation and on every assignment (e.g. `from_pretrained(...,
        # keep_ratio=5)`); a key that is a near miss of a field name is a typo, not an extra attribute to keep.
        for key in kwargs:
            near = difflib.get_close_matches(key, TPRLConfig.__annotations__, n=1, cutoff=0.8)
            if near and key not in TPRLConfig.__annotations__:
                raise ValueError(f"Unknown TPRLConfig field {key!r}: did you mean {near[0]!r}?")
        # With no attention implementation asked for, the base's config keeps its own: set to None, it would reset a
        # loaded base's (the base then ran another attention and gave other tokens).
        if kwargs.get("attn_implementation") is None:
            kwargs["attn_implementation"] = {"": None}
        super().__post_init__(**kwargs)
        if self.base_config is not None:
            self.attach_base(self.base_config)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "TPRLConfig":
        """A TPRL config, or, for a supported base's config, a TPRL config with a fresh pruner around that base (so
        that `TPRLForConditionalGeneration.from_pretrained` of a base checkpoint loads the base's weights)."""
        if config_dict.get("model_type") in SUPPORTED_BASE_MODEL_TYPES:
            config_dict = {"base_config": config_dict, "pruner_only": False}
        return super().from_dict(config_dict, **kwargs)

    def __getattr__(self, name: str):
        # Only for names this config does not have: the base's attributes (`image_token_id`, `vision_feature_layer`,
        # `tie_word_embeddings`...) read through, as a model built from this config reads them.
        base_config = self.__dict__.get("base_config")
        if name.startswith("__") or name == "base_config" or not isinstance(base_config, PreTrainedConfig):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(base_config, name)

    def __setattr__(self, name: str, value) -> None:
        # An attribute of the base's config that this config does not have itself is set on the base's config, so
        # that it reaches the base (e.g. `config.vision_feature_layer = [-1, -2]`, as one does on a `LlavaConfig`).
        base_config = self.__dict__.get("base_config")
        if (
            isinstance(base_config, PreTrainedConfig)
            and not name.startswith("_")
            and name not in self.__dataclass_fields__
            and not hasattr(type(self), name)
            and hasattr(base_config, name)
        ):
            setattr(base_config, name, value)
        else:
            super().__setattr__(name, value)

    def attach_base(self, base_config: PreTrainedConfig) -> None:
        """Sets the base's config and what it decides: the autoencoder's default latent width."""
        self.base_config = base_config
        if self.autoencoder_latent_size is None:
            self.autoencoder_latent_size = max(16, self.base_text_hidden_size // 16)

    def validate_pruner(self) -> None:
        """The checks that read several fields (run on creation and by `validate()`)."""
        if self.keep_ratio is None and self.num_kept_tokens is None:
            raise ValueError("Set a budget: keep_ratio in (0, 1] or num_kept_tokens >= 1.")
        if self.policy_hidden_size % self.policy_num_heads:
            raise ValueError(
                f"policy_hidden_size ({self.policy_hidden_size}) must be divisible by policy_num_heads "
                f"({self.policy_num_heads})."
            )
        budgets = self.adaptive_budgets
        if budgets is not None and (not budgets or min(budgets) < 1 or budgets != sorted(set(budgets))):
            raise ValueError(f"adaptive_budgets must be increasing whole numbers >= 1, got {budgets}.")
        if self.base_config is None:
            return
        if budgets is not None and max(budgets) > self.num_visual_tokens - self.num_pruning_steps:
            raise ValueError(
                f"adaptive_budgets {budgets} must leave each of the num_pruning_steps={self.num_pruning_steps} steps "
                f"a token to remove of the {self.num_visual_tokens}: lower the largest budget."
            )
        family_of(self.base_config)  # a clear error for an unsupported family
        grid = self.visual_grid
        if grid is not None and (len(grid) != 2 or min(grid) < 1):
            raise ValueError(f"visual_grid must be [rows, columns] of whole numbers >= 1, got {grid}.")
        fixed = family_of(self.base_config).default_visual_grid(self.base_config)
        if grid is not None and fixed is not None and tuple(grid) != tuple(fixed):
            raise ValueError(
                f"visual_grid {grid} does not match this base, whose images all give a {fixed[0]}x{fixed[1]} grid: "
                "leave visual_grid unset."
            )
        if self.policy_kernel_size > 1 and self.policy_grid[0] == 1:
            raise ValueError(
                f"policy_kernel_size {self.policy_kernel_size} needs the visual tokens on a square grid, but this "
                f"base gives {self.num_visual_tokens} per image (vision_feature_select_strategy 'full' adds the "
                "[CLS] token); set policy_kernel_size=1."
            )

    def compute_weight_for(self, target_keep_ratio: float) -> float:
        """
        The compute weight at which the adaptive policy keeps `target_keep_ratio` of the visual tokens on average
        (over the training questions), interpolated in log space between `adaptive_operating_points`.
        """
        if (
            isinstance(target_keep_ratio, bool)
            or not isinstance(target_keep_ratio, (int, float))
            or not 0 < target_keep_ratio <= 1
        ):
            raise ValueError(f"target_keep_ratio must be a number in (0, 1], got {target_keep_ratio!r}.")
        if not self.adaptive_budgets or not self.adaptive_operating_points:
            raise ValueError(
                "keep_ratio='adaptive' needs a pruner trained for adaptive budgets (config.adaptive_budgets and "
                "config.adaptive_operating_points, set by tprl-train with compute_weights); this one has fixed "
                "budgets only: give a number as keep_ratio, or num_kept_tokens."
            )
        low, high = self.adaptive_keep_ratio_range
        if not low <= target_keep_ratio <= high:
            raise ValueError(
                f"target_keep_ratio {target_keep_ratio} is outside what this adaptive pruner was measured to keep on "
                f"average, [{low:.4f}, {high:.4f}] (config.adaptive_operating_points): choose a target within, or a "
                "fixed keep_ratio."
            )
        # By mean keep ratio, and among equal ones by decreasing weight: a target between two measured ratios then
        # falls between the two weights nearest the change of choice.
        points = sorted(self.adaptive_operating_points, key=lambda point: (point[1], -point[0]))
        for (low_weight, low), (high_weight, high) in zip(points, points[1:]):
            if low <= target_keep_ratio <= high:
                share = 0.0 if high == low else (target_keep_ratio - low) / (high - low)
                return math.exp(math.log(low_weight) + share * (math.log(high_weight) - math.log(low_weight)))
        return points[0][0]

    @property
    def adaptive_keep_ratio_range(self) -> tuple[float, float] | None:
        """The smallest and the largest mean keep ratio measured for the adaptive policy (`None`: not measured)."""
        ratios = [ratio for _, ratio in self.adaptive_operating_points or []]
        return (min(ratios), max(ratios)) if ratios else None

    @property
    def base_text_hidden_size(self) -> int:
        return self.text_config.hidden_size

    @property
    def policy_grids(self) -> list[tuple[int, int]]:
        """`(rows, columns)` of each grid of slots the policy reads per image, one after the other: the base's fixed
        grid, else `visual_grid` (default 16x16); an anyres family's base view, then its tile grid."""
        return family_of(self.base_config).policy_grids(self.base_config, self.visual_grid)

    @property
    def policy_grid(self) -> tuple[int, int]:
        """`(rows, columns)` of the (last) grid the policy reads: its only one, or an anyres family's tile grid."""
        return self.policy_grids[-1]

    @property
    def num_visual_tokens(self) -> int:
        """Slots the policy reads per image: the visual tokens of an image of its grid, or an anyres family's base view
        and largest tile grid."""
        return sum(rows * columns for rows, columns in self.policy_grids)

    @property
    def visual_grid_side(self) -> int | None:
        """Side of the square grid the visual tokens form (row-major patches), or `None` if they do not form one."""
        rows, columns = self.policy_grid
        return rows if rows == columns else None


def check_keep_ratio(keep_ratio: float) -> None:
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be a number in (0, 1] (1.0 keeps every token), got {keep_ratio!r}.")


def num_kept_for_ratio(num_visual_tokens: int, keep_ratio: float) -> int:
    """Visual tokens a keep ratio keeps per image (at least one)."""
    check_keep_ratio(keep_ratio)
    return max(1, round(num_visual_tokens * keep_ratio))


__all__ = ["TPRLConfig"]
