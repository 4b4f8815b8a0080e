# Copyright 2026 The tprl authors.

"""What differs between the image-text-to-text families TPRL prunes, and only that.

`TPRLForConditionalGeneration` is one class for every base. What depends on the family (how images become visual
tokens, how many each image gives and on which grid, the positions the language model reads, where attention-based
baselines read their scores) sits behind the small interface of `ImageTextFamily`, one subclass per family,
registered by the base's `model_type` in `ALL_FAMILIES`, as PEFT keeps per-architecture tables and transformers keeps
`ALL_ATTENTION_FUNCTIONS`. Adding a family is a subclass here and a row in the README's family table.
"""

import math
import sys
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import (
    LlavaForConditionalGeneration,
    LlavaNextForConditionalGeneration,
    LlavaOnevisionForConditionalGeneration,
    PreTrainedConfig,
    PreTrainedModel,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.llava_next.modeling_llava_next import (
    get_anyres_image_grid_shape,
    image_size_to_num_patches,
    unpad_image,
)


@dataclass
class VisualTokens:
    """
    The projected visual tokens of a batch of images, as the language model would receive them.

    Args:
        features: `[images, max_tokens, hidden]`, each image's tokens in the base's order, right-padded with zeros.
        counts: `[images]` tokens of each image.
        grids: `[images, 2]` (rows, columns) of each image's token grid, row-major (`rows * columns == counts`).
        image_inputs: the family's image inputs these came from (`pixel_values`, `image_grid_thw`, ...).
        vision_layer_input: what the vision layer that attention-based scores read received on this pass (its
            positional and keyword arguments), when it was asked to keep it.
        content: `[images, max_tokens]` True at content tokens, False at layout tokens (LLaVA-NeXT's row newlines),
            which pruning methods never choose and budgets do not count; `None`: every token is content.
    """

    features: torch.Tensor
    counts: torch.LongTensor
    grids: torch.LongTensor
    image_inputs: dict = field(default_factory=dict)
    vision_layer_input: tuple | None = None
    content: torch.BoolTensor | None = None

    def __len__(self) -> int:
        return len(self.features)

    @property
    def valid(self) -> torch.BoolTensor:
        """`[images, max_tokens]` True at real (not padding) tokens."""
        return torch.arange(self.features.shape[1], device=self.counts.device) < self.counts[:, None]

    @property
    def selectable(self) -> torch.BoolTensor:
        """`[images, max_tokens]` True at the tokens a pruning method chooses from: real content tokens."""
        return self.valid if self.content is None else self.valid & self.content.to(self.valid.device)

    @property
    def content_counts(self) -> torch.LongTensor:
        """`[images]` content tokens of each image: what budgets count."""
        return self.counts if self.content is None else self.selectable.sum(1)

    def top_k(self, scores: torch.Tensor, num_kept: torch.LongTensor) -> torch.LongTensor:
        """Each image's `num_kept[image]` highest-scoring content tokens, increasing, right-padded with -1."""
        scores = scores.float().masked_fill(~self.selectable, -math.inf)
        order = scores.argsort(dim=1, descending=True, stable=True)[:, : int(num_kept.max())]
        order = order.masked_fill(torch.arange(order.shape[1], device=order.device) >= num_kept[:, None], -1)
        return sorted_kept(order)


def sorted_kept(picks: torch.Tensor) -> torch.Tensor:
    """Picks in increasing order, their -1 padding last."""
    padding = picks < 0
    kept = picks.masked_fill(padding, torch.iinfo(picks.dtype).max).sort(dim=1).values
    return kept.masked_fill(padding.sort(1)[0], -1)


class ImageTextFamily:
    """
    One image-text-to-text family: how TPRL reads and prunes its base. Subclasses set the class attributes and
    override what their family does differently.

    Attributes:
        model_type: the base's `config.model_type`.
        model_class: the base's class (`LlavaForConditionalGeneration`, ...).
        image_input_names: the forward arguments that carry the images (the first is the pixels).
        optional_image_input_names: more such arguments, which the base does without (its default then applies).
        has_cls_token: whether the vision tower has a [CLS] token (for the `cls_attention` method).
        position_ndim: dimensions of the language model's `position_ids` (2: `[batch, length]`; 3: `[4, batch,
            length]`, the sequence positions then the 3-D positions of mRoPE).
    """

    model_type: str
    model_class: type[PreTrainedModel]
    image_input_names: tuple[str, ...] = ("pixel_values",)
    optional_image_input_names: tuple[str, ...] = ()
    has_cls_token: bool = False
    position_ndim: int = 2

    # ---- images and their tokens

    def token_counts(self, config: PreTrainedConfig, image_inputs: dict) -> torch.LongTensor:
        """`[images]` visual tokens each image gives the language model."""
        raise NotImplementedError

    def content_mask(self, config: PreTrainedConfig, image_inputs: dict) -> torch.BoolTensor | None:
        """`[images, max_tokens]` True at content tokens, False at layout tokens and padding; `None` where every token
        is content."""
        return None

    def content_counts(self, config: PreTrainedConfig, image_inputs: dict) -> torch.LongTensor:
        """`[images]` content tokens of each image: what `keep_ratio` and `num_kept_tokens` count."""
        mask = self.content_mask(config, image_inputs)
        return self.token_counts(config, image_inputs) if mask is None else mask.sum(1)

    def complete_selection(
        self, config: PreTrainedConfig, kept: torch.LongTensor, visual: VisualTokens, layout_tokens: str
    ) -> torch.LongTensor:
        """The kept content tokens (increasing, right-padded with -1) with the layout tokens `layout_tokens` keeps
        (`"all"`, `"rows"`: those of rows that keep a token, `"none"`)."""
        return kept

    def grids(self, config: PreTrainedConfig, image_inputs: dict) -> torch.LongTensor:
        """`[images, 2]` (rows, columns) of each image's visual tokens, row-major."""
        raise NotImplementedError

    def split_images(self, config: PreTrainedConfig, image_inputs: dict) -> list[dict]:
        """The image inputs of each image alone (`join_images` puts them back together)."""
        raise NotImplementedError

    def join_images(self, images: list[dict]) -> dict:
        return {name: torch.cat([image[name] for image in images]) for name in images[0]}

    def image_features(self, base: PreTrainedModel, image_inputs: dict) -> list[torch.Tensor]:
        """Each image's projected visual tokens (`[tokens, hidden]`), as the base inserts them."""
        return list(base.get_image_features(**image_inputs, return_dict=True).pooler_output)

    def default_visual_grid(self, config: PreTrainedConfig) -> tuple[int, int] | None:
        """The token grid every image has, for families whose images all give the same number of tokens."""
        return None

    # ---- what the learned policy reads

    def policy_grids(self, config: PreTrainedConfig, visual_grid: list[int] | None) -> list[tuple[int, int]]:
        """The grids of slots the learned policy reads per image, row-major, one after the other: the base's fixed
        grid, else `visual_grid` (default 16x16)."""
        return [tuple(self.default_visual_grid(config) or visual_grid or (16, 16))]

    def policy_slots(
        self, config: PreTrainedConfig, image_inputs: dict, grids: list[tuple[int, int]]
    ) -> torch.LongTensor | None:
        """`[images, slots]` the token of each image (its index in the base's order) in each slot of `grids`, -1 in
        slots the image leaves empty; `None` where an image's tokens are the slots, in order."""
        return None

    # ---- positions of the language model

    def prompt_positions(
        self,
        base: PreTrainedModel,
        input_ids: torch.LongTensor,
        attention_mask: torch.LongTensor,
        image_inputs: dict,
        mm_token_type_ids: torch.Tensor | None = None,
    ) -> torch.LongTensor:
        """The language model's positions of the whole (unpruned) prompt, as the base computes them."""
        return (attention_mask.cumsum(-1) - 1).clamp(min=0)

    def pruned_positions(
        self, prompt_positions: torch.LongTensor | None, gather: tuple, attention_mask: torch.LongTensor
    ) -> torch.LongTensor:
        """
        The positions of the pruned sequence. 1-D families: contiguous over the kept tokens, as `generate` derives
        them. `gather` is `(rows, columns, destination)`: token `(rows, columns)` of the prompt moved to
        `(rows, destination)` of the pruned sequence; `attention_mask` is the pruned sequence's.
        """
        return (attention_mask.cumsum(-1) - 1).clamp(min=0)

    def continue_positions(self, prompt_positions: torch.LongTensor, attention_mask: torch.LongTensor):
        """Positions of the sequence a pruned cache continues: the pruned prompt (whose positions were
        `prompt_positions`), then text tokens; `attention_mask` is that sequence's."""
        return (attention_mask.cumsum(-1) - 1).clamp(min=0)

    def after_pruned_prefill(self, base: PreTrainedModel, position_ids: torch.LongTensor, attention_mask) -> None:
        """Whatever state the base keeps for decoding after a prefill of the pruned sequence."""

    # ---- where attention-based baselines read

    def vision_score_layer(self, base: PreTrainedModel) -> nn.Module:
        """The vision layer whose input the `vision_attention` score reads."""
        raise NotImplementedError

    def vision_attention_scores(self, base: PreTrainedModel, visual: VisualTokens) -> torch.Tensor:
        """`[images, max_tokens]` VisionZip-style attention scores from the one vision pass."""
        raise NotImplementedError


class LlavaFamily(ImageTextFamily):
    """LLaVA-1.5 (`llava`): a fixed square grid per image from a CLIP-like tower with a [CLS] token; 1-D positions."""

    model_type = "llava"
    model_class = LlavaForConditionalGeneration
    has_cls_token = True

    @staticmethod
    def num_tokens(config: PreTrainedConfig) -> int:
        vision = config.vision_config
        return (vision.image_size // vision.patch_size) ** 2 + (config.vision_feature_select_strategy == "full")

    def default_visual_grid(self, config: PreTrainedConfig) -> tuple[int, int]:
        tokens = self.num_tokens(config)
        side = math.isqrt(tokens)
        return (side, side) if side * side == tokens else (1, tokens)

    def token_counts(self, config, image_inputs):
        pixel_values = image_inputs["pixel_values"]
        return torch.full((len(pixel_values),), self.num_tokens(config), device=pixel_values.device)

    def grids(self, config, image_inputs):
        grid = torch.tensor(self.default_visual_grid(config), device=image_inputs["pixel_values"].device)
        return grid.expand(len(image_inputs["pixel_values"]), 2)

    def split_images(self, config, image_inputs):
        return [{"pixel_values": image[None]} for image in image_inputs["pixel_values"]]

    def vision_score_layer(self, base):
        """The vision encoder layer whose output LLaVA reads (the last of `vision_feature_layer`)."""
        layers = base.model.vision_tower.encoder.layers
        feature_layer = base.config.vision_feature_layer
        feature_layer = feature_layer[-1] if isinstance(feature_layer, (list, tuple)) else feature_layer
        index = feature_layer if feature_layer >= 0 else len(layers) + 1 + feature_layer
        if index < 1:
            raise ValueError("cls_attention needs a vision feature layer after at least one transformer layer.")
        return layers[index - 1]

    def vision_attention_scores(self, base, visual):
        """The [CLS] token's attention to each patch in the layer LLaVA reads (VisionZip's "dominant" score)."""
        args, kwargs = visual.vision_layer_input
        hidden_states = args[0] if args else kwargs["hidden_states"]
        layer = self.vision_score_layer(base)
        normed = layer.layer_norm1(hidden_states)
        query = layer.self_attn.q_proj(normed[:, 0])
        keys = layer.self_attn.k_proj(normed)
        scores = attention_row(query, keys, base.model.vision_tower.config.num_attention_heads)
        return scores[:, 1:] if base.config.vision_feature_select_strategy == "default" else scores


class LlavaNextFamily(LlavaFamily):
    """
    LLaVA-NeXT (`llava_next`): each image is a base view (a square grid) then the unpadded grid of its high-resolution
    tiles, row by row, each row closed by an `image_newline` token (`get_image_features` with `image_sizes`), so the
    token count follows the aspect ratio. Budgets count the content tokens; the newlines are layout tokens, kept as
    `config.layout_tokens` says. The CLIP tower's [CLS] attention is read per crop and packed as the features are.
    """

    model_type = "llava_next"
    model_class = LlavaNextForConditionalGeneration
    image_input_names = ("pixel_values", "image_sizes")

    @staticmethod
    def layout(config: PreTrainedConfig, image_size, tiled: bool = True) -> tuple[int, int, int]:
        """(base view tokens, tile rows, tile columns) of one image of `image_size` (height, width), as
        `pack_image_features` packs it: `base + rows * (columns + 1)` tokens, a newline closing each row."""
        vision = config.vision_config
        side = vision.image_size // vision.patch_size
        tiles_high, tiles_wide = get_anyres_image_grid_shape(
            image_size, config.image_grid_pinpoints, vision.image_size
        )
        rows, columns = unpad_image(torch.empty(0, tiles_high * side, tiles_wide * side), image_size).shape[1:]
        return side * side, rows, columns

    def default_visual_grid(self, config):
        return None  # the tile grid follows each image's aspect ratio

    def policy_grids(self, config, visual_grid):
        """The base view's grid, then a grid that holds every image's tiles (`visual_grid`; by default the largest the
        grid pinpoints give), each image's tiles in its top-left corner: the same slot is the same place in every
        image, and neighbours on the packed rows are neighbours on the grid."""
        side = config.vision_config.image_size // config.vision_config.patch_size
        if self.num_tokens(config) != side * side:
            raise ValueError(
                "The learned policy reads the base view as a grid of patches, but this base adds the [CLS] token "
                "(vision_feature_select_strategy 'full'): choose a training-free pruning_method."
            )
        if visual_grid is None:
            crop = config.vision_config.image_size
            visual_grid = [max(size[axis] // crop * side for size in config.image_grid_pinpoints) for axis in (0, 1)]
        return [(side, side), tuple(visual_grid)]

    def policy_slots(self, config, image_inputs, grids):
        """The base view's tokens in the first grid's slots; tile row r, column c in slot (r, c) of the second. An
        untiled image (OneVision's several in a prompt) fills the first grid alone."""
        (side, _), (max_rows, max_columns) = grids
        device = image_inputs["image_sizes"].device
        layouts = self.layouts(config, image_inputs)
        distinct = list(dict.fromkeys(layouts))
        table = torch.full((len(distinct), side * side + max_rows * max_columns), -1, device=device)
        for slots, (base, rows, columns) in zip(table, distinct):
            if base == 0:  # untiled: the base view, then its newline
                slots[: side * side] = torch.arange(side * side, device=device)
                continue
            if rows > max_rows or columns > max_columns:
                size = image_inputs["image_sizes"][layouts.index((base, rows, columns))].tolist()
                raise ValueError(
                    f"The learned pruner reads tile grids of up to {max_rows}x{max_columns} tokens "
                    f"(config.visual_grid), but an image of size {size} gives {rows}x{columns}: choose a "
                    "training-free pruning_method, or train a pruner with a larger visual_grid."
                )
            row, column = torch.meshgrid(
                torch.arange(rows, device=device), torch.arange(columns, device=device), indexing="ij"
            )
            slots[:base] = torch.arange(base, device=device)
            slots[side * side + row * max_columns + column] = base + row * (columns + 1) + column
        return table[torch.tensor([distinct.index(layout) for layout in layouts], device=device)]

    def tiled(self, image_inputs: dict) -> list[bool]:
        """Whether each image is tiled (every one, for LLaVA-NeXT)."""
        return [True] * len(image_inputs["image_sizes"])

    def layouts(self, config: PreTrainedConfig, image_inputs: dict) -> list[tuple[int, int, int]]:
        """Each image's `layout`."""
        # Once per distinct size: the trainers score thousands of selections of a few images at once.
        images = [
            (tuple(size), tiled) for size, tiled in zip(image_inputs["image_sizes"].tolist(), self.tiled(image_inputs))
        ]
        layouts = {image: self.layout(config, *image) for image in dict.fromkeys(images)}
        return [layouts[image] for image in images]

    def layout_table(self, config: PreTrainedConfig, image_inputs: dict) -> torch.LongTensor:
        """`[images, 3]` each image's `layout` (base view tokens, tile rows, tile columns)."""
        return torch.tensor(self.layouts(config, image_inputs), device=image_inputs["image_sizes"].device).view(-1, 3)

    def num_crops(self, config: PreTrainedConfig, image_inputs: dict) -> list[int]:
        """Crops the vision tower sees of each image: the base view and the tiles (one crop for an untiled image)."""
        sizes = image_inputs["image_sizes"].tolist()
        return [
            image_size_to_num_patches(size, config.image_grid_pinpoints, config.vision_config.image_size)
            if tiled
            else 1
            for size, tiled in zip(sizes, self.tiled(image_inputs))
        ]

    def token_counts(self, config, image_inputs):
        counts = [base + rows * (columns + 1) for base, rows, columns in self.layouts(config, image_inputs)]
        return torch.tensor(counts, device=image_inputs["image_sizes"].device)

    def grids(self, config, image_inputs):
        """No grid holds the packed tokens: one row of them (the learned policy reads them on its own grids,
        `policy_slots`)."""
        counts = self.token_counts(config, image_inputs)
        return torch.stack([torch.ones_like(counts), counts], dim=1)

    def content_mask(self, config, image_inputs):
        base, rows, columns = self.layout_table(config, image_inputs)[:, :, None].unbind(1)
        counts = base + rows * (columns + 1)
        position = torch.arange(int(counts.max()), device=counts.device)
        newline = (position >= base) & ((position - base) % (columns + 1) == columns)
        return (position < counts) & ~newline

    def complete_selection(self, config, kept, visual, layout_tokens):
        if layout_tokens == "none":
            return kept
        base, rows, columns = self.layout_table(config, visual.image_inputs)[:, :, None].unbind(1)
        row = torch.arange(int(rows.max()), device=kept.device)
        newlines = (base + columns + (columns + 1) * row).masked_fill(row >= rows, -1)
        if layout_tokens == "rows":  # the newlines of the tile rows that keep a token
            in_tiles = kept >= base
            tile_rows = ((kept - base) // (columns + 1)).masked_fill(~in_tiles, len(row))
            has_token = torch.zeros(len(kept), len(row) + 1, dtype=torch.bool, device=kept.device)
            has_token = has_token.scatter(1, tile_rows, True)[:, :-1]
            newlines = newlines.masked_fill(~has_token, -1)
        completed = sorted_kept(torch.cat([kept, newlines], dim=1))
        return completed[:, : int((completed >= 0).sum(1).max())]

    def split_images(self, config, image_inputs):
        pixel_values, image_sizes = image_inputs["pixel_values"], image_inputs["image_sizes"]
        return [
            {"pixel_values": pixel_values[image : image + 1, :count], "image_sizes": image_sizes[image : image + 1]}
            for image, count in enumerate(self.num_crops(config, image_inputs))
        ]

    def join_images(self, images):
        # The processor pads every image's crops to the batch's largest count; so does this.
        crops = max(image["pixel_values"].shape[1] for image in images)
        pixel_values = [
            nn.functional.pad(image["pixel_values"], (0, 0) * 3 + (0, crops - image["pixel_values"].shape[1]))
            for image in images
        ]
        return {
            "pixel_values": torch.cat(pixel_values),
            "image_sizes": torch.cat([image["image_sizes"] for image in images]),
        }

    def pack(self, base: PreTrainedModel, crops: list[torch.Tensor], image_sizes: torch.LongTensor) -> list:
        """The base's own `pack_image_features` of per-crop values (`[crops, tokens, width]` per image), 0 at the
        newlines: scores then follow the features' unpadding (and resizing) exactly."""
        packed, _ = base.model.pack_image_features(
            crops,
            image_sizes,
            vision_feature_select_strategy=base.config.vision_feature_select_strategy,
            image_newline=crops[0].new_zeros(crops[0].shape[-1]),
        )
        return packed

    def crop_scores(self, base: PreTrainedModel, visual: VisualTokens) -> torch.Tensor:
        """`[crops, tokens per crop]`: each crop's [CLS] attention in the layer LLaVA-NeXT reads."""
        return super().vision_attention_scores(base, visual)

    def vision_attention_scores(self, base, visual):
        """Each crop's score (`crop_scores`), packed into the features' order by `pack` (0 at the newlines)."""
        per_image = self.crop_scores(base, visual).split(self.num_crops(base.config, visual.image_inputs))
        packed = self.pack(base, [scores[..., None] for scores in per_image], visual.image_inputs["image_sizes"])
        return nn.utils.rnn.pad_sequence([scores[:, 0] for scores in packed], batch_first=True)


class LlavaOnevisionFamily(LlavaNextFamily):
    """
    LLaVA-OneVision (`llava_onevision`): LLaVA-NeXT's packing with a SigLIP tower (no [CLS] token), a tile grid
    downsized bilinearly when it exceeds `vision_aspect_ratio` ("anyres_max_9": nine base views), and several images
    of one prompt left untiled (`batch_num_images`): a base view and one newline each. `vision_attention` is the
    attention each token receives in the layer OneVision reads, packed (and downsized) as the features are.
    """

    model_type = "llava_onevision"
    model_class = LlavaOnevisionForConditionalGeneration
    image_input_names = ("pixel_values", "image_sizes")
    optional_image_input_names = ("batch_num_images",)
    has_cls_token = False

    @staticmethod
    def num_tokens(config: PreTrainedConfig) -> int:
        """Tokens of one crop: SigLIP has no [CLS] token, so "full" adds none."""
        vision = config.vision_config
        return (vision.image_size // vision.patch_size) ** 2

    def layout(self, config, image_size, tiled=True):
        side = config.vision_config.image_size // config.vision_config.patch_size
        if not tiled:  # the base view, then one newline
            return 0, 1, side * side
        base, rows, columns = LlavaNextFamily.layout(config, image_size)
        ratio = math.sqrt(rows * columns / (int(config.vision_aspect_ratio.removeprefix("anyres_max_")) * side * side))
        if ratio > 1.1:  # as pack_image_features downsizes the grid
            rows, columns = int(rows // ratio), int(columns // ratio)
        return base, rows, columns

    def tiled(self, image_inputs):
        per_row = image_inputs.get("batch_num_images")
        if per_row is None:  # as the base: every image is a prompt's only one
            return [True] * len(image_inputs["image_sizes"])
        return [int(count) == 1 for count in per_row.tolist() for _ in range(int(count))]

    def split_images(self, config, image_inputs):
        images = super().split_images(config, image_inputs)
        per_row = image_inputs.get("batch_num_images")
        counts = [1] * len(images) if per_row is None else [int(n) for n in per_row.tolist() for _ in range(int(n))]
        return [{**image, "batch_num_images": torch.tensor([count])} for image, count in zip(images, counts)]

    def join_images(self, images):
        joined = super().join_images(images)
        per_row, image = [], 0
        while image < len(images):  # a row's images come together: the first says how many
            count = int(images[image]["batch_num_images"])
            per_row.append(count)
            image += count
        return {**joined, "batch_num_images": torch.tensor(per_row)}

    def pack(self, base, crops, image_sizes):
        packed, _ = base.model.pack_image_features(
            crops,
            image_sizes,
            image_newline=crops[0].new_zeros(crops[0].shape[-1]),
            vision_aspect_ratio=base.config.vision_aspect_ratio,
        )
        return packed

    def crop_scores(self, base, visual):
        """`[crops, tokens per crop]`: the attention each token receives in the layer OneVision reads, averaged over
        heads and queries (SigLIP has no [CLS] token)."""
        args, kwargs = visual.vision_layer_input
        hidden_states = args[0] if args else kwargs["hidden_states"]
        layer = self.vision_score_layer(base)
        normed = layer.layer_norm1(hidden_states)
        crops, length, width = normed.shape
        heads = base.config.vision_config.num_attention_heads
        query, key = (
            projection(normed).view(crops, length, heads, width // heads).transpose(1, 2)
            for projection in (layer.self_attn.q_proj, layer.self_attn.k_proj)
        )
        weights = (query.float() @ key.float().transpose(-1, -2) / math.sqrt(width // heads)).softmax(-1)
        return weights.mean(dim=(1, 2))


class Qwen2VLFamily(ImageTextFamily):
    """
    Qwen2-VL (`qwen2_vl`): tokens per image vary with its size (`image_grid_thw`, 2x2 merge), a vision tower with no
    [CLS] token, and 3-D (mRoPE) positions: the kept tokens keep the base's own positions (`get_rope_index` of the
    whole prompt), and decoding continues where the unpruned prompt would.
    """

    model_type = "qwen2_vl"
    model_class = Qwen2VLForConditionalGeneration
    image_input_names = ("pixel_values", "image_grid_thw")
    position_ndim = 3

    @staticmethod
    def _merge(config) -> int:
        return config.vision_config.spatial_merge_size

    def token_counts(self, config, image_inputs):
        return image_inputs["image_grid_thw"].prod(-1) // self._merge(config) ** 2

    def grids(self, config, image_inputs):
        grid_thw = image_inputs["image_grid_thw"]
        return torch.stack([grid_thw[:, 0] * grid_thw[:, 1], grid_thw[:, 2]], dim=1) // self._merge(config)

    def split_images(self, config, image_inputs):
        grid_thw = image_inputs["image_grid_thw"]
        patches = image_inputs["pixel_values"].split(grid_thw.prod(-1).tolist())
        return [{"pixel_values": p, "image_grid_thw": g[None]} for p, g in zip(patches, grid_thw)]

    def prompt_positions(self, base, input_ids, attention_mask, image_inputs, mm_token_type_ids=None):
        """`[4, batch, length]`: the sequence positions (for the mask) and the base's 3-D positions."""
        if mm_token_type_ids is None:  # without it, get_rope_index would silently fall back to 1-D positions
            mm_token_type_ids = (input_ids == base.config.image_token_id).int()
        positions, _ = base.model.get_rope_index(
            input_ids,
            mm_token_type_ids=mm_token_type_ids,
            image_grid_thw=image_inputs.get("image_grid_thw"),
            attention_mask=attention_mask,
        )
        text_positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        return torch.cat([text_positions[None], positions])

    def pruned_positions(self, prompt_positions, gather, attention_mask):
        rows, columns, destination = gather
        spatial = prompt_positions.new_zeros(3, *attention_mask.shape)
        spatial[:, rows, destination] = prompt_positions[-3:, rows, columns]
        return torch.cat([super().pruned_positions(None, gather, attention_mask)[None], spatial])

    def continue_positions(self, prompt_positions, attention_mask):
        # Text after the prompt continues from the prompt's largest position, as in the unpruned sequence.
        prompt_length = prompt_positions.shape[-1]
        after = prompt_positions[1:].amax(dim=(0, 2))[:, None] + attention_mask[:, prompt_length:].cumsum(-1)
        spatial = torch.cat([prompt_positions[1:], after[None].expand(3, -1, -1)], dim=-1)
        return torch.cat([super().continue_positions(prompt_positions, attention_mask)[None], spatial])

    def after_pruned_prefill(self, base, position_ids, attention_mask):
        # Anything that infers positions from the cache (the base's forward with no position_ids) continues at the
        # unpruned prompt's next position: rope_deltas = max position + 1 - tokens in the pruned sequence.
        spatial = position_ids[1:].masked_fill(attention_mask[None] == 0, 0)
        base.model.rope_deltas = (spatial.amax(dim=(0, 2)) + 1 - attention_mask.sum(-1))[:, None]

    def vision_score_layer(self, base):
        """The last block of the vision tower (every block attends over the whole image)."""
        return base.model.visual.blocks[-1]

    def raster_order(self, tower: nn.Module, grid_thw: torch.LongTensor) -> torch.LongTensor | None:
        """Where each merged token of the vision blocks' order sits in the base's (raster) order; `None`: the same."""
        return None

    def vision_attention_scores(self, base, visual_tokens):
        """
        The attention each merged token receives in the last full-attention vision block, averaged over heads, queries
        and its 2x2 patches, in the base's (raster) order.
        """
        args, kwargs = visual_tokens.vision_layer_input
        hidden_states = args[0] if args else kwargs["hidden_states"]
        cu_seqlens, (cos, sin) = kwargs["cu_seqlens"], kwargs["position_embeddings"]
        tower, block = base.model.visual, self.vision_score_layer(base)
        modeling = sys.modules[type(block).__module__]
        attention = block.attn
        length = len(hidden_states)
        qkv = attention.qkv(block.norm1(hidden_states)).reshape(length, 3, attention.num_heads, -1)
        query, key = modeling.apply_rotary_pos_emb_vision(qkv[:, 0], qkv[:, 1], cos, sin)
        received = []
        for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
            image_keys = key[start:end].transpose(0, 1).float()
            total = torch.zeros(end - start, device=key.device)
            for chunk in range(start, end, 1024):  # bounded memory at large images
                image_query = query[chunk : min(end, chunk + 1024)].transpose(0, 1).float()
                weights = (image_query @ image_keys.transpose(1, 2) * attention.scaling).softmax(-1)
                total += weights.sum(dim=(0, 1))
            received.append(total / (attention.num_heads * (end - start)))
        merged = torch.cat(received).view(-1, self._merge(base.config) ** 2).mean(-1)  # per merge unit
        order = self.raster_order(tower, visual_tokens.image_inputs["image_grid_thw"])
        merged = merged if order is None else merged[order.to(merged.device)]
        scores = torch.zeros(visual_tokens.valid.shape, device=merged.device)
        scores[visual_tokens.valid] = merged
        return scores


class Qwen2_5_VLFamily(Qwen2VLFamily):
    """Qwen2.5-VL (`qwen2_5_vl`): Qwen2-VL's tokens and positions; its vision tower attends within windows but in its
    full-attention blocks, and sees the patches in window order."""

    model_type = "qwen2_5_vl"
    model_class = Qwen2_5_VLForConditionalGeneration

    def vision_score_layer(self, base):
        """The last full-attention block of the vision tower (window attention elsewhere)."""
        visual = base.model.visual
        return visual.blocks[max(visual.fullatt_block_indexes)]

    def raster_order(self, tower, grid_thw):
        modeling = sys.modules[type(tower).__module__]
        window_index, _ = modeling.get_vision_window_index(
            grid_thw,
            spatial_merge_size=tower.spatial_merge_size,
            window_size=tower.window_size,
            patch_size=tower.patch_size,
        )
        return torch.argsort(window_index)


def attention_row(
    query: torch.Tensor, keys: torch.Tensor, num_heads: int, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention of one query per row (`[rows, width]`) over `keys` (`[rows, length, width]`), head-averaged.
    (Computed in other shapes, it rounds otherwise, and the teacher's near-ties pick otherwise.)"""
    rows, length, width = keys.shape
    head_dim = width // num_heads
    query = query.view(rows, num_heads, 1, head_dim)
    keys = keys.view(rows, length, num_heads, head_dim).transpose(1, 2)
    logits = (query @ keys.transpose(-1, -2)).squeeze(2).float() / math.sqrt(head_dim)
    if mask is not None:
        logits = logits.masked_fill(~mask[:, None, :], -math.inf)
    return logits.softmax(-1).mean(1)


ALL_FAMILIES: dict[str, ImageTextFamily] = {
    family.model_type: family()
    for family in (LlavaFamily, LlavaNextFamily, LlavaOnevisionFamily, Qwen2VLFamily, Qwen2_5_VLFamily)
}

SUPPORTED_BASE_MODEL_TYPES = tuple(ALL_FAMILIES)


def family_of(config: PreTrainedConfig) -> ImageTextFamily:
    """The family of a base's config, or a clear error naming the supported ones."""
    family = ALL_FAMILIES.get(getattr(config, "model_type", None))
    if family is None:
        raise ValueError(
            f"TPRL cannot prune a base with model_type {getattr(config, 'model_type', None)!r}. "
            f"Supported base model types: {SUPPORTED_BASE_MODEL_TYPES}."
        )
    return family
