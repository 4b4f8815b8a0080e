# Copyright 2026 The tprl authors.

"""TPRL: LLaVA whose projected visual tokens are pruned by a learned, question-aware policy before the LM."""

import copy
import inspect
import os
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn
from transformers import (
    AutoConfig,
    GenerationConfig,
    GenerationMixin,
    PreTrainedModel,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, cached_file, can_return_tuple, logging

from .configuration_tprl import LAYOUT_TOKEN_CHOICES, TPRLConfig, num_kept_for_ratio
from .families import ALL_FAMILIES, SUPPORTED_BASE_MODEL_TYPES, VisualTokens, family_of
from .processing_tprl import load_processor
from .pruning_methods import ALL_PRUNING_METHODS, as_visual_tokens, check_pruning_method, tprl_selection
from .pruning_tprl import TPRLPruner, kept_mask_of, sorted_kept


logger = logging.get_logger(__name__)

WEIGHTS_NAME = "model.safetensors"
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "subfolder", "token")


@dataclass
class TPRLCausalLMOutputWithPast(ModelOutput):
    r"""
    Outputs of [`TPRLForConditionalGeneration`]: LLaVA's, on the pruned sequence, plus what was kept.

    Args:
        loss (`torch.FloatTensor`, *optional*): language-modelling loss on the pruned sequence, when `labels` are given.
        logits (`torch.FloatTensor` of shape `(batch_size, pruned_length, vocab_size)`).
        past_key_values (`Cache`, *optional*): the language model's cache of the pruned sequence.
        hidden_states, attentions (`tuple(torch.FloatTensor)`, *optional*): as in LLaVA, on the pruned sequence.
        image_hidden_states (`torch.FloatTensor`, *optional*): projected visual tokens of all images, before pruning.
        kept_visual_indices (`torch.LongTensor` of shape `(num_images, num_kept)`, *optional*):
            indices of the kept visual tokens of each image, increasing; `None` when nothing was pruned. With
            adaptive budgets, right-padded with -1 to the largest count.
        num_visual_tokens_kept (`int` or `torch.LongTensor` of shape `(num_images,)`, *optional*): visual tokens
            that reached the LM per image (a tensor, one count per image, with adaptive budgets).
        attention_mask (`torch.LongTensor`, *optional*): attention mask of the pruned sequence.
        labels (`torch.LongTensor`, *optional*): labels of the pruned sequence.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    past_key_values: object | None = None
    hidden_states: tuple[torch.FloatTensor] | None = None
    attentions: tuple[torch.FloatTensor] | None = None
    image_hidden_states: torch.FloatTensor | None = None
    kept_visual_indices: torch.LongTensor | None = None
    num_visual_tokens_kept: int | torch.LongTensor | None = None
    attention_mask: torch.LongTensor | None = None
    labels: torch.LongTensor | None = None


@dataclass
class PrunedInputs:
    """The language model's inputs after pruning."""

    inputs_embeds: torch.FloatTensor
    attention_mask: torch.LongTensor
    position_ids: torch.LongTensor
    labels: torch.LongTensor | None
    kept_visual_indices: torch.LongTensor
    image_features: torch.FloatTensor
    mm_token_type_ids: torch.Tensor | None = None


@dataclass
class PrunedPrompt:
    """
    What a cache filled by a pruned forward holds of the prompt, kept on the cache (`cache.pruned_prompt`): the
    prompt's length before pruning, and the attention mask and positions of the pruned prompt that the cache holds.
    A continuation that gives the whole sequence (prompt, generated tokens, new tokens) and its mask is mapped
    through it.
    """

    length: int
    attention_mask: torch.LongTensor
    position_ids: torch.LongTensor

    def cached_mask(self, attention_mask: torch.LongTensor | None, length: int) -> torch.LongTensor:
        """The mask of the sequence the cache sees, for `attention_mask` of the whole (unpruned) sequence of `length`
        tokens (`None`: no padding)."""
        if attention_mask is None:
            attention_mask = self.attention_mask.new_ones(len(self.attention_mask), length)
        return torch.cat([self.attention_mask, attention_mask[:, self.length :]], dim=1)

    def cached_positions(self, family, attention_mask: torch.LongTensor) -> torch.LongTensor:
        """The positions of the sequence the cache sees, whose mask is `attention_mask` (see `cached_mask`)."""
        return family.continue_positions(self.position_ids, attention_mask)

    @property
    def num_dropped(self) -> int:
        """Positions of the whole sequence that the cache does not hold."""
        return self.length - self.attention_mask.shape[1]


AUTO_MAP = {
    "AutoConfig": "configuration_tprl.TPRLConfig",
    "AutoModel": "modeling_tprl.TPRLForConditionalGeneration",
    "AutoModelForImageTextToText": "modeling_tprl.TPRLForConditionalGeneration",
}
"""What a saved checkpoint's config maps the Auto classes to, in the code files saved beside it."""


class TPRLPreTrainedModel(PreTrainedModel):
    config: TPRLConfig
    base_model_prefix = "base"
    input_modalities = ("image", "text")
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    # The language model that runs is the base's, unchanged: what LLaVA supports, decoding with a static cache
    # compiled included, TPRL does (tests/test_transformers_parity.py).
    _can_compile_fullgraph = True
    _supports_attention_backend = True
    _no_split_modules = ["TPRLPruner"]
    _skip_keys_device_placement = ["past_key_values"]

    @classmethod
    def is_custom_code(cls) -> bool:
        # transformers treats custom code as writing weights in place outside its guarded init functions, and then skips
        # initialising every module without parameters of its own, in the base's towers too (their attention blocks
        # initialise their projections). Our `_init_weights` uses transformers' and `torch.nn.init`'s functions, which
        # it guards: initialisation from `from_pretrained` then equals `__init__`'s, as for LLaVA.
        return False

    @torch.no_grad()
    def _init_weights(self, module: torch.nn.Module) -> None:
        # The base, a `PreTrainedModel` itself, is initialised by its own class. The pruner's linear layers start from
        # PyTorch's own (fan-in scaled) initialisation and its embeddings from transformers' N(0, 0.02): small
        # position/type/step embeddings leave each token's content (its normalised state or word) in charge. From
        # N(0, 1) they drowned it, and the policy hardly learned to match the question's words to the patches; from
        # N(0, 0.02) the autoencoder's latents kept less of what the policy needs (README, "What the main job gives").
        super()._init_weights(module)
        in_pruner = any(module is layer for layer in self.pruner.modules())
        if in_pruner and not isinstance(module, torch.nn.Embedding) and hasattr(module, "reset_parameters"):
            module.reset_parameters()


class TPRLForConditionalGeneration(TPRLPreTrainedModel, GenerationMixin):
    r"""
    An image-text-to-text model (LLaVA, Qwen2-VL, Qwen2.5-VL: `modeling_tprl.families`) with a TPRL pruner. The pruner drops
    projected visual tokens after the projector and before the language model, guided by the question, so the
    language model runs unmodified (SDPA / FlashAttention kept) on a shorter sequence, with the base's own positions
    of the kept tokens. The base is frozen. With `keep_ratio=1.0` the model is exactly its base.

    Args:
        config ([`TPRLConfig`]): the model configuration.
        base (`LlavaForConditionalGeneration`, `Qwen2_5_VLForConditionalGeneration`, *optional*): an already-loaded
            base; built from `config` otherwise.

    Example:

    ```python
    >>> from transformers import AutoProcessor
    >>> from modeling_tprl import TPRLForConditionalGeneration

    >>> model = TPRLForConditionalGeneration.from_pretrained("path/to/tprl-checkpoint")
    >>> processor = AutoProcessor.from_pretrained("path/to/tprl-checkpoint")
    >>> inputs = processor(images=image, text="USER: <image>\nWhat is shown? ASSISTANT:", return_tensors="pt")
    >>> output = model.generate(**inputs, max_new_tokens=20, keep_ratio=1 / 3)
    >>> processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    ```
    """

    supports_gradient_checkpointing = True  # of the frozen base, when a loss backpropagates through it

    def __init__(self, config: TPRLConfig, base: PreTrainedModel | None = None):
        if config.base_config is None and base is None:
            raise ValueError(
                "This TPRLConfig has no base_config (the base model's config): build the model with "
                "TPRLForConditionalGeneration.from_base, or load a checkpoint with from_pretrained."
            )
        super().__init__(config)
        # What differs per family (image features, token grids, positions, attention scores), and only that.
        self.family = family_of(config.base_config if base is None else base.config)
        if base is None:
            # Built from the config's own sub-config, as LLaVA builds its language model from `text_config`.
            base = self.family.model_class(config.base_config)
        else:
            _check_base_fits(config, base)
            # The config describes the base it holds, so a change to `config.text_config` reaches the base.
            config.attach_base(base.config)
            # The given base is trained: keep post_init's weight initialisation away from it.
            for module in base.modules():
                module._is_hf_initialized = True
        self.base = base
        # One attention implementation, the base's: the LM that runs is the base's. Set on this config alone (the
        # setter would reset the base's sub-configs).
        self.config._attn_implementation_internal = base.config._attn_implementation
        self.pruner = TPRLPruner(config)
        self.generation_config = copy.deepcopy(base.generation_config)
        self.post_init()

    # ---- construction and loading -------------------------------------------------------------------------------

    @classmethod
    def from_base(
        cls,
        base: "str | os.PathLike | PreTrainedModel",
        base_model_kwargs: dict | None = None,
        **config_kwargs,
    ) -> "TPRLForConditionalGeneration":
        """
        A TPRL model with a fresh pruner on top of `base`: a Hub id, a local directory or a loaded model of a supported
        family (`LlavaForConditionalGeneration`, `Qwen2VLForConditionalGeneration`,
        `Qwen2_5_VLForConditionalGeneration`). `base_model_kwargs` (e.g. `dtype`, `device_map`) reach the base's
        `from_pretrained`; `config_kwargs` set [`TPRLConfig`] fields.
        """
        if isinstance(base, (str, os.PathLike)):
            # A local directory is stored absolute, so that the saved checkpoint loads from anywhere.
            base = str(base)
            base = load_base_model(os.path.abspath(base) if os.path.isdir(base) else base, **(base_model_kwargs or {}))
        elif not isinstance(base, tuple(family.model_class for family in ALL_FAMILIES.values())):
            classes = ", ".join(family.model_class.__name__ for family in ALL_FAMILIES.values())
            raise TypeError(
                f"base must be a model of a supported family ({classes}), a Hub id or a local directory, got "
                f"{type(base).__name__}. Supported base model types: {SUPPORTED_BASE_MODEL_TYPES}."
            )
        config_kwargs.setdefault("base_model_name_or_path", base.config._name_or_path or None)
        config = TPRLConfig(base_config=base.config, **config_kwargs)
        model = cls(config, base=base)
        model.pruner.to(device=base.device, dtype=base.dtype)
        return model.eval()  # as from_pretrained returns models: call .train() to train the pruner

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        config: TPRLConfig | None = None,
        base_model_name_or_path: str | None = None,
        **kwargs,
    ) -> "TPRLForConditionalGeneration":
        """
        Loads a TPRL checkpoint: a pruner-only one (the base comes from the config's `base_model_name_or_path`,
        or from `base_model_name_or_path` given here; a path starting with "./" or "../" is read relative to the
        checkpoint's directory) or a full one. `dtype`, `device_map` and similar kwargs
        reach the base.
        """
        hub_kwargs = {name: kwargs[name] for name in _HUB_KWARGS if name in kwargs}
        config_overrides = {name: kwargs.pop(name) for name in list(kwargs) if name in TPRLConfig.__annotations__}
        if config is None:
            not_a_checkpoint = (
                f"Cannot load a TPRL checkpoint from {str(pretrained_model_name_or_path)!r}: give a local directory "
                "holding its config.json (as written by save_pretrained) or a Hub id."
            )
            local = os.path.join(pretrained_model_name_or_path, hub_kwargs.get("subfolder", ""))
            if os.path.isdir(local) and not os.path.isfile(os.path.join(local, "config.json")):
                raise OSError(f"{not_a_checkpoint} The directory has no config.json.")
            try:
                config = TPRLConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
            except OSError as error:  # transformers reads a missing local directory as a malformed Hub id
                raise OSError(f"{not_a_checkpoint} Cause: {error}") from error
        for name, value in config_overrides.items():  # each assignment is validated (@strict)
            setattr(config, name, value)
        if not config.pruner_only or pretrained_model_name_or_path is None:  # the base's weights are in the checkpoint
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)

        base_path = base_model_name_or_path or config.base_model_name_or_path
        if base_path is None:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds pruner weights only and its config names no base model: "
                "pass base_model_name_or_path=<Hub id or local llava-hf directory>."
            )
        beside = os.path.join(pretrained_model_name_or_path, base_path)
        if base_path.startswith(("./", "../")) and os.path.isdir(beside):  # a base shipped next to the checkpoint
            base_path = os.path.normpath(beside)
        base_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_") and k not in _HUB_KWARGS}
        base_kwargs.pop("trust_remote_code", None)
        base_kwargs.pop("adapter_kwargs", None)  # the Auto classes put this repo's revision there, not the base's
        # The Auto classes put a requested attention implementation in the config, the model class gets it as kwarg.
        attn_implementation = base_kwargs.pop("attn_implementation", None) or config._attn_implementation
        if attn_implementation is not None:
            base_kwargs["attn_implementation"] = attn_implementation
        for name in ("token", "cache_dir", "local_files_only", "force_download", "proxies"):
            if name in hub_kwargs:
                base_kwargs[name] = hub_kwargs[name]
        base = load_base_model(base_path, **base_kwargs)
        config.base_model_name_or_path = base_path
        if config.base_config is None:  # a hand-written config: the base's own describes it
            config.attach_base(base.config)
            config.validate()
        model = cls(config, base=base)
        try:
            model.pruner.load_state_dict(load_pruner_weights(pretrained_model_name_or_path, hub_kwargs))
        except RuntimeError as error:
            raise ValueError(
                f"The pruner weights in {pretrained_model_name_or_path} do not fit its config.json (was a width or "
                f"layer count edited?): load the checkpoint as saved, or train a pruner for the new config. {error}"
            ) from error
        model.pruner.to(device=base.device, dtype=base.dtype)
        try:
            model.generation_config = GenerationConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        except OSError:
            pass  # no generation config of its own: keep the base's
        model.name_or_path = str(pretrained_model_name_or_path)
        model.eval()
        return model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        full_checkpoint: bool | None = None,
        processor=None,
        **kwargs,
    ) -> None:
        """
        Saves the model. Where the config names the base (`base_model_name_or_path`), by default a small, adapter-like
        checkpoint: the config, the pruner's weights, the code files with an `auto_map`, and the processor
        (`processor`, else the one of the checkpoint the model was loaded from or the base's, if it is on this
        machine). `full_checkpoint=True`, the default for a model whose base has no path (built from a config),
        saves the base's weights too, for a self-contained checkpoint.
        """
        if full_checkpoint is None:
            full_checkpoint = self.config.base_model_name_or_path is None
        if not full_checkpoint and self.config.base_model_name_or_path is None:
            raise ValueError(
                "A pruner-only checkpoint needs config.base_model_name_or_path (the base's Hub id or directory); "
                "set it, or save with full_checkpoint=True."
            )
        self.config.auto_map = dict(AUTO_MAP)
        if not full_checkpoint:  # also when a Trainer passes the whole state dict
            state_dict = kwargs.get("state_dict") or self.state_dict()
            kwargs["state_dict"] = {k: v for k, v in state_dict.items() if k.startswith("pruner.")}
        live = self.config.pruner_only
        self.config.pruner_only = not full_checkpoint  # for the written config only: the live model keeps its own
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            self.config.pruner_only = live
        # The processor of the checkpoint this model was loaded from, else the base's, from this machine only (a local
        # directory or the Hub cache): saving never waits on the network.
        sources = [self.name_or_path, self.config.base_model_name_or_path] if processor is None else []
        for source in dict.fromkeys(source for source in sources if source):
            try:
                processor = load_processor(source, local_files_only=True)
                break
            except (OSError, ValueError):
                continue
        if processor is None and sources:
            logger.warning(
                "Saved without a processor: neither this checkpoint's nor the base's is on this machine. Pass "
                "save_pretrained(..., processor=AutoProcessor.from_pretrained(<base>))."
            )
        if processor is not None and kwargs.get("is_main_process", True):
            processor.save_pretrained(save_directory)

    # ---- budget ------------------------------------------------------------------------------------------------

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens per image of the grid the policy reads (every image's count, for LLaVA)."""
        return self.config.num_visual_tokens

    def num_kept_tokens(self, keep_ratio: float | None = None, num_kept_tokens: int | None = None) -> int:
        """Visual tokens kept of an image of the policy's grid for a per-call budget (or the config's)."""
        counts = torch.tensor([self.num_visual_tokens])
        return int(self.visual_budgets(counts, keep_ratio, num_kept_tokens)[0])

    def visual_budgets(
        self, counts: torch.LongTensor, keep_ratio: float | None = None, num_kept_tokens: int | None = None
    ) -> torch.LongTensor:
        """`[images]` visual tokens each image keeps, of its own `counts[image]`: `keep_ratio` of them (at least one),
        or `num_kept_tokens` capped by the count (the config's budget when neither is given)."""
        if keep_ratio is not None and num_kept_tokens is not None:
            raise ValueError("Give either keep_ratio or num_kept_tokens, not both.")
        if keep_ratio is None and num_kept_tokens is None:
            keep_ratio, num_kept_tokens = self.config.keep_ratio, self.config.num_kept_tokens
        if num_kept_tokens is not None:
            if isinstance(num_kept_tokens, bool) or not isinstance(num_kept_tokens, int) or num_kept_tokens < 1:
                raise ValueError(
                    f"num_kept_tokens must be a whole number >= 1 (visual tokens kept per image, at most each image's "
                    f"own count), got {num_kept_tokens!r}."
                )
            return counts.clamp(max=num_kept_tokens)
        return torch.tensor([num_kept_for_ratio(int(count), keep_ratio) for count in counts], device=counts.device)

    def adaptive_compute_weight(self, keep_ratio: float | str | None, target_keep_ratio: float | None) -> float | None:
        """
        For `keep_ratio="adaptive"`, the compute weight (price per share of kept tokens) at which the policy keeps
        `target_keep_ratio` of the tokens on average; `None` for a fixed budget.
        """
        if keep_ratio != "adaptive":
            if target_keep_ratio is not None:
                raise ValueError("target_keep_ratio applies to adaptive budgets: pass keep_ratio='adaptive' with it.")
            return None
        if target_keep_ratio is None:
            raise ValueError(
                "keep_ratio='adaptive' needs target_keep_ratio, the mean share of visual tokens to keep (e.g. 0.11)."
            )
        return self.config.compute_weight_for(target_keep_ratio)

    # ---- pruning -----------------------------------------------------------------------------------------------

    @property
    def base_model(self) -> nn.Module:
        """The base's body (`LlavaModel` for LLaVA), as `LlavaForConditionalGeneration.base_model` is."""
        return self.base.base_model

    @property
    def model(self) -> nn.Module:
        """The base's body, as `LlavaForConditionalGeneration.model`: code written for the base's modules (e.g.
        `model.model.vision_tower`) runs on TPRL."""
        return self.base.base_model

    def get_input_embeddings(self) -> torch.nn.Module:
        return self.base.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.base.set_input_embeddings(value)

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.base.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.base.set_output_embeddings(new_embeddings)

    def resize_token_embeddings(self, *args, **kwargs):
        raise NotImplementedError(
            "TPRL does not resize the base's token embeddings: a pruner-only checkpoint does not carry them, so new "
            "ones would not be saved, and the pruner was trained on the base's embeddings of the question. Resize and "
            "fine-tune the base itself (LlavaForConditionalGeneration.resize_token_embeddings), save it, then build a "
            "pruner on it with TPRLForConditionalGeneration.from_base."
        )

    @can_return_tuple
    def get_image_features(
        self, pixel_values: torch.FloatTensor, **kwargs: Unpack[TransformersKwargs]
    ) -> BaseModelOutputWithPooling:
        """The base's `get_image_features`: its output, with the projected features of each image as `pooler_output`."""
        return self.base.get_image_features(pixel_values=pixel_values, return_dict=True, **kwargs)

    def image_inputs(self, batch: dict) -> dict:
        """The family's image inputs in a batch or a call's arguments (`pixel_values`, and e.g. `image_grid_thw`)."""
        names = self.family.image_input_names + self.family.optional_image_input_names
        return {name: batch[name] for name in names if batch.get(name) is not None}

    def encode_images(self, keep_vision_layer_input: bool = False, **image_inputs) -> VisualTokens:
        """
        The images' projected visual tokens as the base inserts them ([`VisualTokens`]: features right-padded per
        image, counts, grids). `keep_vision_layer_input` keeps what the vision layer that attention scores read
        received, so that `cls_attention` / `vision_attention` need no second vision pass (as VisionZip reads the one).
        """
        missing = [name for name in self.family.image_input_names if image_inputs.get(name) is None]
        if missing:
            raise ValueError(f"{self.family.model_type} images need {', '.join(missing)} (as its processor returns).")
        captured = {}

        def keep_input(module, args, kwargs):
            captured["input"] = (args, kwargs)

        handle = (
            self.family.vision_score_layer(self.base).register_forward_pre_hook(keep_input, with_kwargs=True)
            if keep_vision_layer_input
            else None
        )
        try:
            features = self.family.image_features(self.base, image_inputs)
        finally:
            if handle is not None:
                handle.remove()
        config = self.base.config
        return VisualTokens(
            features=nn.utils.rnn.pad_sequence(features, batch_first=True),
            counts=self.family.token_counts(config, image_inputs).to(features[0].device),
            grids=self.family.grids(config, image_inputs).to(features[0].device),
            image_inputs=image_inputs,
            vision_layer_input=captured.get("input"),
            content=self.family.content_mask(config, image_inputs),
        )

    def visual_tokens(
        self, pixel_values: torch.FloatTensor, keep_vision_layer_input: bool = False, **image_inputs
    ) -> torch.FloatTensor:
        """
        Projected visual tokens of images that all give as many, `[num_images, num_visual_tokens, hidden]`, as the
        base inserts them (what the trainers read); for an anyres family, on the policy's slots (`policy_inputs`;
        zeros in the slots an image leaves empty, `policy_slots` says which). `keep_vision_layer_input` keeps, for
        these `pixel_values`, the input of the vision layer the attention methods read (`pop_vision_layer_input`).
        """
        visual = self.encode_images(keep_vision_layer_input, pixel_values=pixel_values, **image_inputs)
        if keep_vision_layer_input:
            self._vision_layer_input = (pixel_values, visual)
        if self.policy_slots(visual.image_inputs) is not None:
            return self.policy_inputs(visual)[0]
        if bool((visual.counts != visual.counts[0]).any()):
            raise ValueError(
                f"These images give different numbers of visual tokens ({visual.counts.tolist()}); use encode_images, "
                "which pads them, or images of one size."
            )
        return visual.features

    def pop_vision_layer_input(self, pixel_values: torch.FloatTensor) -> VisualTokens | None:
        """The `VisualTokens` (with their vision layer's input) `visual_tokens(pixel_values, keep_vision_layer_input=True)`
        kept, once; `None` if it kept none for these very `pixel_values`."""
        kept = getattr(self, "_vision_layer_input", None)
        self._vision_layer_input = None
        return kept[1] if kept is not None and kept[0] is pixel_values else None

    def _pruning_method(self, pruning_method: str | None) -> str:
        """This call's pruning method: `pruning_method`, else the config's."""
        return self.config.pruning_method if pruning_method is None else pruning_method

    def policy_slots(self, image_inputs: dict) -> torch.LongTensor | None:
        """`[images, slots]` which of each image's tokens the policy reads in each of its slots (-1: none, the
        image's tile grid being smaller than the policy's); `None` where the tokens are the slots (every family but
        the anyres ones)."""
        return self.family.policy_slots(self.config.base_config, image_inputs, self.config.policy_grids)

    def policy_inputs(self, visual: VisualTokens) -> tuple[torch.Tensor, torch.BoolTensor | None, torch.Tensor | None]:
        """What the learned policy reads of these images: `[images, slots, hidden]` features on its slots (zeros where
        an image has no token), the slots each image has a token in, and which token (`policy_slots`); for
        families whose tokens are the slots, the features and `None`s."""
        slots = self.policy_slots(visual.image_inputs)
        if slots is None:
            self.check_policy_grid(visual)
            return visual.features, None, None
        slots = slots.to(visual.features.device)
        present = slots >= 0
        hidden = visual.features.shape[-1]
        features = visual.features.gather(1, slots.clamp(min=0)[..., None].expand(-1, -1, hidden))
        return features * present[..., None].to(features.dtype), present, slots

    def policy_present(self, image_inputs: dict) -> torch.BoolTensor | None:
        """`[images, slots]` the policy's slots each image has a token in (`None`: all of them)."""
        slots = self.policy_slots(image_inputs)
        return None if slots is None else slots >= 0

    @staticmethod
    def tokens_of_slots(picks: torch.LongTensor, slots: torch.LongTensor) -> torch.LongTensor:
        """The tokens (increasing, right-padded with -1) that `picks` (slot indices, -1 padding) name."""
        return sorted_kept(slots.gather(1, picks.clamp(min=0)).masked_fill(picks < 0, -1))

    def packed_tokens(self, image_inputs: dict, features: torch.Tensor) -> VisualTokens:
        """For an anyres family, the images' tokens in the base's packed order from their features on the policy's
        slots (`visual_tokens`), the row newlines being the base's `image_newline`."""
        config = self.config.base_config
        slots = self.policy_slots(image_inputs).to(features.device)
        counts = self.family.token_counts(config, image_inputs).to(features.device)
        content = self.family.content_mask(config, image_inputs).to(features.device)
        valid = torch.arange(int(counts.max()), device=features.device) < counts[:, None]
        packed = (
            self.base.model.image_newline.to(features.dtype).expand(*valid.shape, -1) * (valid & ~content)[..., None]
        )
        rows, columns = (slots >= 0).nonzero(as_tuple=True)
        packed = packed.index_put((rows, slots[rows, columns]), features[rows, columns])
        return VisualTokens(packed, counts, self.family.grids(config, image_inputs), image_inputs, content=content)

    def tokens_from_slots(
        self, image_inputs: dict, features: torch.Tensor, picks: torch.LongTensor
    ) -> tuple[VisualTokens, torch.LongTensor]:
        """The images' `packed_tokens`, and the tokens `picks` (slot indices) keep with the layout tokens
        `config.layout_tokens` keeps: what `prune_inputs` takes."""
        visual = self.packed_tokens(image_inputs, features)
        slots = self.policy_slots(image_inputs).to(features.device)
        kept = self.family.complete_selection(
            self.config.base_config, self.tokens_of_slots(picks, slots), visual, self.config.layout_tokens
        )
        return visual, kept

    def check_policy_grid(self, visual: VisualTokens) -> None:
        """The learned policy reads images of the grid it was built for: a clear error for others."""
        grid = torch.tensor(self.config.policy_grid, device=visual.grids.device)
        if not bool((visual.grids == grid).all()):
            raise ValueError(
                f"The learned pruner reads images of a {grid[0]}x{grid[1]} visual-token grid (config.visual_grid), but "
                f"these give {visual.grids.tolist()}: resize the images to that grid, choose a training-free "
                "pruning_method ('uniform', 'fastv', 'vision_attention', 'random'), or train a pruner for this size."
            )

    def _image_rows(self, input_ids: torch.LongTensor, counts: torch.LongTensor) -> torch.LongTensor:
        """The batch row of each image, checking that images and image placeholders match."""
        per_row = (input_ids == self.config.image_token_id).sum(1)
        # Images fill the rows in order: each row's placeholders must end exactly where one of the images ends.
        image_ends, row_ends = counts.cumsum(0), per_row.cumsum(0).to(counts.device)
        if int(per_row.sum()) != int(counts.sum()) or not set(row_ends[per_row > 0].tolist()) <= set(
            image_ends.tolist()
        ):
            raise ValueError(
                f"Image features and image tokens do not match: got {len(counts)} image(s) giving "
                f"{counts.tolist()} visual tokens, but the prompts hold {per_row.tolist()} image placeholder tokens per "
                "row. Give one image per image placeholder (<image>, <|image_pad|>...) in the text and build the inputs "
                "with the model's processor, which expands each into the right number of tokens."
            )
        return torch.searchsorted(row_ends, image_ends)

    def question_token_ids(
        self, input_ids: torch.LongTensor, attention_mask: torch.LongTensor
    ) -> tuple[torch.LongTensor, torch.BoolTensor]:
        """Each row's text tokens (the prompt without its image placeholders), right-padded, and their mask."""
        is_text = attention_mask.bool() & (input_ids != self.config.image_token_id)
        length = max(1, int(is_text.sum(1).max()))
        order = torch.sort(is_text.int(), dim=1, descending=True, stable=True).indices[:, :length]
        return input_ids.gather(1, order), is_text.gather(1, order)

    def insert_visual_tokens(
        self, input_ids: torch.LongTensor, image_features: "torch.FloatTensor | VisualTokens"
    ) -> tuple[torch.FloatTensor, torch.BoolTensor]:
        """The LM's input embeddings with every visual token in its placeholder, as the base inserts them."""
        features = (
            image_features.features[image_features.valid]
            if isinstance(image_features, VisualTokens)
            else image_features
        )
        image_mask = input_ids == self.config.image_token_id
        embeds = self.get_input_embeddings()(input_ids)
        return embeds.masked_scatter(image_mask.unsqueeze(-1), features.to(embeds.dtype)), image_mask

    def question_embeddings(
        self, input_ids: torch.LongTensor, attention_mask: torch.LongTensor, images: "int | VisualTokens | dict"
    ) -> tuple[torch.FloatTensor, torch.BoolTensor]:
        """The pruner's question input for each image (`images`: their `VisualTokens`, or how many images of the
        policy's grid, or their image inputs): `[num_images, text_len, hidden]` embeddings of its row's text tokens
        and their mask."""
        if isinstance(images, dict):
            counts = self.family.token_counts(self.config.base_config, images)
        elif isinstance(images, VisualTokens):
            counts = images.counts
        else:
            counts = torch.full((images,), self.num_visual_tokens)
        image_rows = self._image_rows(input_ids, counts.to(input_ids.device))
        question_ids, question_mask = self.question_token_ids(input_ids, attention_mask)
        return self.get_input_embeddings()(question_ids)[image_rows], question_mask[image_rows]

    def select_visual_tokens(
        self,
        visual: VisualTokens,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor,
        num_kept: torch.LongTensor | None,
        pruning_method: str | None = None,
        compute_weight: float | None = None,
        layout_tokens: str | None = None,
    ) -> torch.LongTensor:
        """
        Indices of the visual tokens each image keeps under `pruning_method` (the config's by default), increasing,
        right-padded with -1: `num_kept[image]` content tokens per image, or with `compute_weight` as many as the
        learned policy chooses, and the layout tokens (LLaVA-NeXT's row newlines) that `layout_tokens` keeps (the
        config's by default).
        """
        method = self._pruning_method(pruning_method)
        check_pruning_method(method)
        if compute_weight is not None:
            if method != "tprl":
                raise ValueError(f"Adaptive budgets are the learned policy's (pruning_method 'tprl'), not {method!r}.")
            kept = tprl_selection(self, visual, input_ids, attention_mask, None, compute_weight)
        else:
            kept = ALL_PRUNING_METHODS[method](self, visual, input_ids, attention_mask, num_kept)
        layout_tokens = self.config.layout_tokens if layout_tokens is None else layout_tokens
        if layout_tokens not in LAYOUT_TOKEN_CHOICES:
            raise ValueError(f"layout_tokens must be one of {LAYOUT_TOKEN_CHOICES}, got {layout_tokens!r}.")
        return self.family.complete_selection(self.config.base_config, kept, visual, layout_tokens)

    def _visual_tokens_for(self, pruning_method: str | None, image_inputs: dict) -> VisualTokens:
        attention = self._pruning_method(pruning_method) in ("cls_attention", "vision_attention")
        return self.encode_images(keep_vision_layer_input=attention, **image_inputs)

    def kept_visual_indices(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.LongTensor | None = None,
        keep_ratio: float | str | None = None,
        num_kept_tokens: int | None = None,
        pruning_method: str | None = None,
        target_keep_ratio: float | None = None,
        **image_inputs,
    ) -> torch.LongTensor:
        """
        The visual tokens each image keeps for these inputs, `[num_images, num_kept]` indices into its row-major
        token grid (for analysis and plots), right-padded with -1 where images keep fewer. `image_inputs`: the
        family's other image inputs (`image_grid_thw` for Qwen2.5-VL).
        """
        with torch.no_grad():
            visual = self._visual_tokens_for(
                pruning_method, self.image_inputs({**image_inputs, "pixel_values": pixel_values})
            )
            self._image_rows(input_ids, visual.counts)
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            compute_weight = self.adaptive_compute_weight(keep_ratio, target_keep_ratio)
            budgets = (
                None
                if compute_weight is not None
                else self.visual_budgets(visual.content_counts, keep_ratio, num_kept_tokens)
            )
            return self.select_visual_tokens(
                visual, input_ids, attention_mask, budgets, pruning_method, compute_weight
            )

    def prune_inputs(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor | None,
        attention_mask: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        num_kept: int | torch.LongTensor | None = None,
        kept_visual_indices: torch.LongTensor | None = None,
        image_features: "torch.FloatTensor | VisualTokens | None" = None,
        pruning_method: str | None = None,
        compute_weight: float | None = None,
        position_ids: torch.LongTensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
        **image_inputs,
    ) -> PrunedInputs:
        """
        Inserts the visual tokens as the base does, then removes the dropped ones (`kept_visual_indices` if given, -1
        entries being padding, else `pruning_method`'s choice of `num_kept` per image (an int, or one per image), or
        the policy's own for a `compute_weight`) and re-pads the batch on its padding side. The kept tokens get the
        base's positions: contiguous for LLaVA, their own 3-D positions for mRoPE families (from `position_ids` of
        the whole prompt if given, else computed). `image_features` (from [`~TPRLForConditionalGeneration.encode_images`]
        or `visual_tokens`) skip the vision tower, e.g. when training evaluates several selections of the same images.
        """
        image_inputs = self.image_inputs({**image_inputs, "pixel_values": pixel_values})
        if image_features is None:
            method = pruning_method if kept_visual_indices is None else "tprl"
            visual = self._visual_tokens_for(method, image_inputs)
        else:
            visual = as_visual_tokens(self, image_features, image_inputs)
        self._image_rows(input_ids, visual.counts)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if kept_visual_indices is None:
            budgets = num_kept
            if isinstance(num_kept, int):
                budgets = visual.content_counts.clamp(max=num_kept)
            kept_visual_indices = self.select_visual_tokens(
                visual, input_ids, attention_mask, budgets, pruning_method, compute_weight
            )
        kept_visual_indices = _check_indices(kept_visual_indices, visual.counts).to(input_ids.device)

        # Only the kept tokens are embedded and moved, each once: inserting every visual token first and removing the
        # dropped ones cost the teacher, which scores thousands of one-token selections per batch, half its time.
        image_mask = input_ids == self.config.image_token_id
        valid = visual.valid.to(input_ids.device)
        kept_mask = kept_mask_of(kept_visual_indices, valid.shape[1])
        keep = ~image_mask
        keep[image_mask] = kept_mask[valid]
        keep &= attention_mask.bool()
        lengths = keep.sum(1)
        length = int(lengths.max())
        left_padded = not bool((attention_mask[:, -1] == 0).any())
        rows, columns = keep.nonzero(as_tuple=True)  # row-major: each image's visual tokens in its features' order
        start = length - lengths if left_padded else torch.zeros_like(lengths)
        destination = start[rows] + keep.cumsum(1)[rows, columns] - 1
        embeds = self.get_input_embeddings()(input_ids[rows, columns])
        hidden = visual.features.shape[-1]
        visual_kept = visual.features[(kept_mask & valid).to(visual.features.device)].to(embeds.dtype)
        # Out of place: with gradient checkpointing the embeddings are a leaf that requires grad.
        embeds = embeds.index_put((image_mask[rows, columns],), visual_kept)
        batch = len(input_ids)
        new_embeds = embeds.new_zeros(batch, length, hidden).index_put((rows, destination), embeds)
        new_mask = attention_mask.new_zeros(batch, length)
        new_mask[rows, destination] = 1

        def pruned(tensor: torch.Tensor, fill: int) -> torch.Tensor:
            new = tensor.new_full((batch, length), fill)
            new[rows, destination] = tensor[rows, columns]
            return new

        new_labels = None if labels is None else pruned(labels, -100)
        new_token_types = None if mm_token_type_ids is None else pruned(mm_token_type_ids, 0)
        if position_ids is None or position_ids.dim() != self.family.position_ndim:
            position_ids = self.family.prompt_positions(
                self.base, input_ids, attention_mask, image_inputs, mm_token_type_ids
            )
        new_positions = self.family.pruned_positions(position_ids, (rows, columns, destination), new_mask)
        return PrunedInputs(
            new_embeds, new_mask, new_positions, new_labels, kept_visual_indices, visual.features, new_token_types
        )

    def _is_pruning(
        self, pixel_values, keep_ratio, num_kept_tokens, kept_visual_indices, pruning_method, image_inputs=None
    ) -> bool:
        if pruning_method is not None:  # checked even when nothing is pruned, so a typo never passes silently
            check_pruning_method(pruning_method)
        if pixel_values is None:
            return False
        if kept_visual_indices is not None or keep_ratio == "adaptive":
            return True
        image_inputs = self.image_inputs({**(image_inputs or {}), "pixel_values": pixel_values})
        counts = self.family.content_counts(self.config.base_config, image_inputs)
        return bool((self.visual_budgets(counts, keep_ratio, num_kept_tokens) < counts).any())

    # ---- forward and generate ----------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        keep_ratio: float | str | None = None,
        num_kept_tokens: int | None = None,
        kept_visual_indices: torch.LongTensor | None = None,
        pruning_method: str | None = None,
        target_keep_ratio: float | None = None,
        image_features: torch.FloatTensor | None = None,
        return_dict: bool | None = None,
        image_sizes: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TPRLCausalLMOutputWithPast | tuple:
        r"""
        The base's forward on the pruned sequence. `keep_ratio` / `num_kept_tokens` (of each image's own tokens) and
        `pruning_method` override the configured budget and method for this call; `kept_visual_indices`
        (`[num_images, num_kept]`, right-padded with -1) imposes a selection. `keep_ratio="adaptive"` with
        `target_keep_ratio` (a policy trained with `adaptive_budgets`) lets the policy choose each image's budget,
        `target_keep_ratio` of the tokens on average. Logits, labels and the returned `attention_mask` are those of
        the pruned sequence. Its positions are the base's: contiguous over the kept tokens for LLaVA, each kept
        token's own 3-D position for mRoPE families (Qwen2.5-VL; from `position_ids` of the whole prompt when given).
        `image_sizes` and other keyword arguments (`image_grid_thw`, `mm_token_type_ids`, ...) are the base's. `image_features`
        ([`visual_tokens`] of these `pixel_values`) spare a pruned forward the vision tower, e.g. when comparing
        selections of the same images; unpruned, the base runs its own. `generate` calls it as the base's: the images
        and the pruning on the first step, the cache of the pruned prompt after it.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if image_sizes is not None:  # in the signature, as in the anyres bases' (callers filter inputs by it)
            kwargs["image_sizes"] = image_sizes
        compute_weight = self.adaptive_compute_weight(keep_ratio, target_keep_ratio)
        image_inputs = self.image_inputs({**kwargs, "pixel_values": pixel_values})
        pruning = self._is_pruning(
            pixel_values, keep_ratio, num_kept_tokens, kept_visual_indices, pruning_method, image_inputs
        )
        if not pruning:
            outputs = self.base(
                input_ids=input_ids,
                pixel_values=pixel_values,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                return_dict=True,
                **kwargs,
            )
            kept = None
            if pixel_values is not None:
                counts = self.family.token_counts(self.config.base_config, image_inputs)
                kept = int(counts[0]) if bool((counts == counts[0]).all()) else counts
            output = TPRLCausalLMOutputWithPast(**outputs, num_visual_tokens_kept=kept)
            return output if return_dict else output.to_tuple()
        if input_ids is None or inputs_embeds is not None:
            raise ValueError("Pruning needs the prompt's input_ids and pixel_values (not inputs_embeds).")
        if past_key_values is not None and past_key_values.get_seq_length() > 0:
            raise ValueError("Pruning needs a whole prompt: the images come with the first forward, before any cache.")
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(
                "Pruning needs the 2-D attention mask of the prompt (batch, length): it removes tokens, so a custom "
                "4-D mask over the unpruned sequence cannot apply. Pass a 2-D mask, or keep_ratio=1.0."
            )
        for name in self.family.image_input_names[1:] + self.family.optional_image_input_names:
            kwargs.pop(name, None)
        mm_token_type_ids = kwargs.pop("mm_token_type_ids", None)
        fixed = kept_visual_indices is None and compute_weight is None
        if fixed:
            counts = self.family.content_counts(self.config.base_config, image_inputs)
            num_kept = self.visual_budgets(counts, keep_ratio, num_kept_tokens)
        pruned = self.prune_inputs(
            input_ids,
            attention_mask=attention_mask,
            labels=labels,
            num_kept=num_kept if fixed else None,
            kept_visual_indices=kept_visual_indices,
            image_features=image_features,
            pruning_method=pruning_method,
            compute_weight=compute_weight,
            position_ids=position_ids,
            mm_token_type_ids=mm_token_type_ids,
            **image_inputs,
        )
        if pruned.mm_token_type_ids is not None:
            kwargs["mm_token_type_ids"] = pruned.mm_token_type_ids
        outputs = self.base(
            inputs_embeds=pruned.inputs_embeds,
            attention_mask=pruned.attention_mask,
            position_ids=pruned.position_ids,
            past_key_values=past_key_values,
            labels=pruned.labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            return_dict=True,
            **kwargs,
        )
        self.family.after_pruned_prefill(self.base, pruned.position_ids, pruned.attention_mask)
        if outputs.past_key_values is not None:  # so that generation can continue from this cache
            outputs.past_key_values.pruned_prompt = PrunedPrompt(
                input_ids.shape[1], pruned.attention_mask, pruned.position_ids
            )
        output = TPRLCausalLMOutputWithPast(
            loss=outputs.loss,
            logits=outputs.logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=pruned.image_features,
            kept_visual_indices=pruned.kept_visual_indices,
            num_visual_tokens_kept=_kept_counts(pruned.kept_visual_indices),
            attention_mask=pruned.attention_mask,
            labels=pruned.labels,
        )
        return output if return_dict else output.to_tuple()

    def _validate_model_kwargs(self, model_kwargs: dict) -> None:
        # The base's own arguments (`image_grid_thw`, `mm_token_type_ids`, ...) reach it through forward's kwargs.
        base_arguments = set(inspect.signature(self.base.forward).parameters)
        super()._validate_model_kwargs({k: v for k, v in model_kwargs.items() if k not in base_arguments})

    def _prepare_position_ids_for_generation(self, inputs_tensor: torch.Tensor, model_kwargs: dict) -> torch.Tensor:
        # The base's own positions of the whole prompt (3-D ones for mRoPE families); pruning maps them.
        return self.base._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)

    def _expand_inputs_for_generation(
        self, expand_size: int = 1, is_encoder_decoder: bool = False, input_ids=None, **model_kwargs
    ) -> tuple[torch.LongTensor, dict]:
        # Beams and `num_return_sequences` repeat each row; its images must be repeated with it, as a group ([A, B] ->
        # [A, B, A, B]), not tensor row by tensor row (for Qwen2.5-VL a row of `pixel_values` is a patch).
        # Where the prompt is given as inputs_embeds, its placeholders cannot be read: the default, as the base's.
        image_inputs = self.image_inputs(model_kwargs)
        placeholders = input_ids is not None and bool((input_ids == self.config.image_token_id).any())
        if expand_size == 1 or "pixel_values" not in image_inputs or not placeholders:
            return super()._expand_inputs_for_generation(expand_size, is_encoder_decoder, input_ids, **model_kwargs)
        for name in image_inputs:
            model_kwargs.pop(name)
        input_ids_before = input_ids
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size, is_encoder_decoder, input_ids, **model_kwargs
        )
        config = self.config.base_config
        images = self.family.split_images(config, image_inputs)
        image_rows = self._image_rows(input_ids_before, self.family.token_counts(config, image_inputs)).tolist()
        expanded = [
            image
            for row in range(len(input_ids_before))
            for _ in range(expand_size)
            for image, image_row in zip(images, image_rows)
            if image_row == row
        ]
        model_kwargs.update(self.family.join_images(expanded))
        return input_ids, model_kwargs

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        past_key_values=None,
        attention_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ) -> dict:
        pruned_prompt = getattr(past_key_values, "pruned_prompt", None)
        if is_first_iteration and pruned_prompt is not None:
            # A continuation of a pruned cache, given the whole sequence (and its mask, if any): feed what the cache
            # lacks, with the mask and positions of the pruned sequence that the cache holds.
            if attention_mask is not None and attention_mask.dim() != 2:
                raise ValueError(
                    "Continuing from a pruned cache needs the 2-D attention mask of the whole sequence (prompt, "
                    "generated and new tokens): it tells which tokens the cache already holds."
                )
            attention_mask = pruned_prompt.cached_mask(attention_mask, input_ids.shape[1])
            next_sequence_length = attention_mask.shape[1] - past_key_values.get_seq_length()
            if not 0 < next_sequence_length <= input_ids.shape[1]:
                raise ValueError(
                    f"The attention mask ({attention_mask.shape[1]} tokens once pruned) does not extend the pruned cache "
                    f"({past_key_values.get_seq_length()} tokens) by 1 to {input_ids.shape[1]} new tokens: continue "
                    "with the whole sequence the cache came from, followed by the new tokens, and its mask."
                )
            if kwargs.get("position_ids") is not None:
                kwargs["position_ids"] = pruned_prompt.cached_positions(self.family, attention_mask)
        model_inputs = super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        pruning = self._is_pruning(
            model_inputs.get("pixel_values"),
            kwargs.get("keep_ratio"),
            kwargs.get("num_kept_tokens"),
            kwargs.get("kept_visual_indices"),
            kwargs.get("pruning_method"),
            model_inputs,
        )
        if pruning and (attention_mask is None or attention_mask.dim() == 2):
            # The pruner reads the prompt's 2-D mask, if any (a compilable cache would have one made 4-D over the
            # unpruned prompt); the base then makes its own 4-D mask of the pruned sequence.
            model_inputs["attention_mask"] = attention_mask
        return model_inputs

    def _update_model_kwargs_for_generation(
        self, outputs: ModelOutput, model_kwargs: dict, is_encoder_decoder: bool = False, num_new_tokens: int = 1
    ) -> dict:
        # `input_ids` keep the whole prompt, so outputs, logits processors and `max_length` see what they see with
        # the base. With a cache of a pruned prompt, the next steps continue the mask and positions of the pruned
        # sequence it holds. Without a cache, each step runs the whole sequence again: with the first step's selection.
        cache = getattr(outputs, "past_key_values", None)
        pruned_prompt = getattr(cache, "pruned_prompt", None)
        attention_mask = model_kwargs.get("attention_mask")
        if pruned_prompt is not None and (attention_mask is None or attention_mask.shape[1] != cache.get_seq_length()):
            length = cache.get_seq_length() + pruned_prompt.num_dropped
            attention_mask = model_kwargs["attention_mask"] = pruned_prompt.cached_mask(attention_mask, length)
            if model_kwargs.get("position_ids") is not None:
                model_kwargs["position_ids"] = pruned_prompt.cached_positions(self.family, attention_mask)
        if cache is None and getattr(outputs, "kept_visual_indices", None) is not None:
            model_kwargs["kept_visual_indices"] = outputs.kept_visual_indices
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder, num_new_tokens)


def _check_indices(indices: torch.LongTensor, counts: torch.LongTensor) -> torch.LongTensor:
    if indices.dim() != 2 or indices.shape[0] != len(counts):
        raise ValueError(
            f"kept_visual_indices must have shape [num_images={len(counts)}, num_kept], got {tuple(indices.shape)}."
        )
    if indices.numel() and (indices.min() < -1 or bool((indices >= counts[:, None].to(indices.device)).any())):
        total = int(counts[0]) if bool((counts == counts[0]).all()) else f"each image's count {counts.tolist()}"
        raise ValueError(f"kept_visual_indices must lie in [0, {total}) (-1: padding of a row that keeps fewer).")
    indices = sorted_kept(indices)  # kept tokens stay in their original order, padding last
    valid = indices >= 0
    if ((indices[:, 1:] == indices[:, :-1]) & valid[:, 1:]).any():
        raise ValueError("kept_visual_indices repeats a token.")
    if not valid[:, 0].all():
        raise ValueError("kept_visual_indices keeps no token of some image: keep at least one.")
    return indices


def _kept_counts(indices: torch.LongTensor) -> int | torch.LongTensor:
    """Visual tokens kept per image: one int when every image keeps as many, else a `[num_images]` tensor."""
    counts = (indices >= 0).sum(1)
    return indices.shape[1] if bool((counts == indices.shape[1]).all()) else counts


def _check_base_fits(config: TPRLConfig, base: PreTrainedModel) -> None:
    """The pruner reads the base's projected tokens: its autoencoder width and token count must be the base's."""
    fitted = TPRLConfig(base_config=base.config, visual_grid=config.visual_grid)
    if (fitted.base_text_hidden_size, fitted.num_visual_tokens) != (
        config.base_text_hidden_size,
        config.num_visual_tokens,
    ):
        raise ValueError(
            f"The pruner was built for a base with LM hidden size {config.base_text_hidden_size} and "
            f"{config.num_visual_tokens} visual tokens per image, but the base {base.config._name_or_path!r} has "
            f"{fitted.base_text_hidden_size} and {fitted.num_visual_tokens}: load the pruner on the base it was "
            f"trained for ({config.base_model_name_or_path!r}) or train a pruner for this base."
        )


def load_base_model(name_or_path: str, **kwargs) -> PreTrainedModel:
    """Loads a base of a supported family, with clear errors for a missing or unsupported model."""
    hub_kwargs = {k: kwargs[k] for k in ("token", "cache_dir", "local_files_only", "revision") if k in kwargs}
    try:
        config = AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise OSError(
            f"Cannot load the base model {name_or_path!r}: give a Hub id or a local model directory that exists "
            f"(when loading a TPRL checkpoint, override it with base_model_name_or_path=...). Cause: {error}"
        ) from error
    if config.model_type not in SUPPORTED_BASE_MODEL_TYPES:
        raise ValueError(
            f"The base model {name_or_path!r} has model_type {config.model_type!r}; TPRL supports "
            f"{SUPPORTED_BASE_MODEL_TYPES} (modeling_tprl.families)."
        )
    return family_of(config).model_class.from_pretrained(name_or_path, **kwargs)


def load_pruner_weights(name_or_path: str | os.PathLike, hub_kwargs: dict) -> dict[str, torch.Tensor]:
    """The pruner's state dict from a pruner-only checkpoint, with clear errors for a missing or corrupt file."""
    try:
        path = cached_file(name_or_path, WEIGHTS_NAME, **hub_kwargs)
    except OSError as error:
        raise OSError(
            f"No pruner weights ({WEIGHTS_NAME}) in {name_or_path}: the checkpoint is incomplete."
        ) from error
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise OSError(
            f"The pruner weights {path} are corrupt or not a safetensors file ({error}); save or download the "
            "checkpoint again."
        ) from error
    prefix = "pruner."
    if not state or not all(key.startswith(prefix) for key in state):
        raise OSError(f"{path} does not hold TPRL pruner weights (keys starting with {prefix!r}).")
    return {key[len(prefix) :]: value for key, value in state.items()}


__all__ = ["TPRLCausalLMOutputWithPast", "TPRLForConditionalGeneration", "TPRLPreTrainedModel"]
