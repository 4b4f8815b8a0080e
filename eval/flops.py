"""Prefill FLOPs of a LLaVA, LLaVA-NeXT, LLaVA-OneVision or Qwen2.5-VL with visual tokens pruned: analytic (FastV's
convention) and measured; `tprl-flops`.

    tprl-flops --model llava-1.5-7b --kept 192,128,64 --text_tokens 64 [--measure]
    tprl-flops --model qwen2.5-vl-7b --image_size 1008 --kept 432,288,144
    tprl-flops --model llava-onevision-7b --image_size 1152 --kept 2430,1620,810

Analytic, per transformer layer over n tokens with hidden d and FFN width m, in multiply-adds: 4nd^2 (q, k, v, o;
less for grouped k/v) + 2n^2d (QK^T and AV) + k*ndm, with k = 3 for LLaMA's gated FFN and 2 for CLIP's MLP; FLOPs
are twice that. The prefill counts what runs: the CLIP vision tower (patch embedding and every layer: LLaVA reads
an inner layer but transformers runs them all), the projector, the pruner's extra work (TPRL's autoencoder and
policy steps; FastV's scoring layers on the full sequence; [CLS] attention's query and keys in the layer LLaVA
reads, from the one vision pass), the language model over kept visual + text tokens, and the LM head on the last
position (generate's prefill). Qwen2.5-VL's vision tower runs on 14x14 patches (4 per visual token after its 2x2
merger) with window attention (8x8 patches) in all blocks but its full-attention ones, and a gated MLP; its
`vision_attention` score recomputes q and k of the last full-attention block. LLaVA-NeXT's and OneVision's towers see
the base view and every tile (OneVision's SigLIP has no [CLS]; its `vision_attention` score is every token's query
against every key of the layer it reads, per crop). Norms, softmax, rotary and activations
are left out, as `torch.utils.flop_counter.FlopCounterMode` leaves them out.
"""

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, HfArgumentParser, LlavaConfig, PreTrainedConfig

from modeling_tprl import TPRLConfig, TPRLForConditionalGeneration
from modeling_tprl.families import family_of, image_size_to_num_patches
from modeling_tprl.pruning_tprl import keep_schedule

from .command_line import check_model_argument, command


def linear_flops(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out


def layer_flops(
    tokens: int, hidden: int, ffn: int, heads: int, kv_heads: int | None = None, ffn_matrices: int = 3
) -> int:
    """One transformer layer (attention + FFN) over `tokens` tokens, in FLOPs."""
    kv_width = (kv_heads or heads) * (hidden // heads)
    projections = 2 * linear_flops(tokens, hidden, hidden) + 2 * linear_flops(tokens, hidden, kv_width)
    attention = 2 * 2 * tokens * tokens * hidden
    return projections + attention + ffn_matrices * linear_flops(tokens, hidden, ffn)


QWEN_IMAGE_SIZE = 1008  # Qwen2.5-VL-7B's shapes in the issue tracker: 1008x1008 pixels, 1296 visual tokens
ANYRES_IMAGE_SIZES = {"llava_next": 672, "llava_onevision": 768}
"""The default square image of the anyres families: LLaVA-NeXT-7B at 672x672 (a base view and 2x2 tiles, 2,880 content
tokens), LLaVA-OneVision-7B at 768x768 (a base view and 2x2 tiles, 3,645 content tokens)."""


def anyres_layout(config: PreTrainedConfig, image_size: int | None = None) -> tuple[int, int, int]:
    """(base view tokens, tile rows, tile columns) of a square image of `image_size` (the family's default) for an
    anyres family, as its `pack_image_features` packs it."""
    side = image_size or ANYRES_IMAGE_SIZES[config.model_type]
    return family_of(config).layout(config, (side, side))


def num_image_tokens(config: PreTrainedConfig, image_size: int | None = None) -> int:
    """Content tokens one image gives the LM: LLaVA's fixed count, Qwen2.5-VL's, and LLaVA-NeXT's and OneVision's
    (base view and tiles, without the row newlines) for a square image of `image_size`."""
    if config.model_type == "qwen2_5_vl":
        vision = config.vision_config
        return ((image_size or QWEN_IMAGE_SIZE) // (vision.patch_size * vision.spatial_merge_size)) ** 2
    if config.model_type in ANYRES_IMAGE_SIZES:
        base, rows, columns = anyres_layout(config, image_size)
        return base + rows * columns
    return config.image_seq_length


def num_layout_tokens(config: PreTrainedConfig, image_size: int | None = None) -> int:
    """An anyres image's row newlines (all kept: `layout_tokens="all"`, or "rows" at worst); 0 elsewhere."""
    return anyres_layout(config, image_size)[1] if config.model_type in ANYRES_IMAGE_SIZES else 0


def num_crops(config: PreTrainedConfig, image_size: int | None = None) -> int:
    """Crops the vision tower sees per image: one for LLaVA, the base view and the tiles for the anyres families."""
    if config.model_type not in ANYRES_IMAGE_SIZES:
        return 1
    side = image_size or ANYRES_IMAGE_SIZES[config.model_type]
    return image_size_to_num_patches((side, side), config.image_grid_pinpoints, config.vision_config.image_size)


def crop_tokens(config: PreTrainedConfig) -> int:
    """Tokens the vision tower runs on per crop: the patches, and CLIP's [CLS] (SigLIP has none)."""
    vision = config.vision_config
    return (vision.image_size // vision.patch_size) ** 2 + family_of(config).has_cls_token


def qwen2_5_vl_vision_flops(config: PreTrainedConfig, image_size: int | None = None) -> int:
    """Qwen2.5-VL's vision tower and merger on one square image: patch embedding, window-attention and full-attention
    blocks (gated MLP), then the 2x2 merger's MLP."""
    vision = config.vision_config
    side = (image_size or QWEN_IMAGE_SIZE) // vision.patch_size
    patches, width = side * side, vision.hidden_size
    window = min(side, vision.window_size // vision.patch_size) ** 2  # patches per attention window
    embedding = linear_flops(patches, vision.in_channels * vision.temporal_patch_size * vision.patch_size**2, width)
    block = linear_flops(patches, width, 3 * width) + linear_flops(patches, width, width)
    block += 3 * linear_flops(patches, width, vision.intermediate_size)
    full_blocks = len(vision.fullatt_block_indexes)
    attention = full_blocks * 2 * 2 * patches * patches * width
    attention += (vision.depth - full_blocks) * 2 * 2 * patches * window * width
    merged, merge_width = patches // vision.spatial_merge_size**2, width * vision.spatial_merge_size**2
    merger = linear_flops(merged, merge_width, merge_width) + linear_flops(merged, merge_width, vision.out_hidden_size)
    return embedding + vision.depth * block + attention + merger


def vision_flops(config: PreTrainedConfig, image_size: int | None = None) -> int:
    """The vision tower and projector (or merger) on one image."""
    if config.model_type == "qwen2_5_vl":
        return qwen2_5_vl_vision_flops(config, image_size)
    if config.model_type not in ("llava", *ANYRES_IMAGE_SIZES):
        raise ValueError(
            f"FLOPs are counted for llava, llava_next, llava_onevision and qwen2_5_vl bases, not {config.model_type!r}."
        )
    return num_crops(config, image_size) * (vision_tower_flops(config) + projector_flops(config))


def vision_attention_flops(config: PreTrainedConfig, image_size: int | None = None) -> int:
    """The `vision_attention` score from the one vision pass: LLaVA's [CLS] query against every key of the layer it
    reads (per crop for LLaVA-NeXT); Qwen2.5-VL's q, k (and v) of the last full-attention block and every query
    against every key; OneVision's q and k of the layer it reads and every query against every key, per crop."""
    tower = config.vision_config
    if config.model_type == "qwen2_5_vl":
        patches = ((image_size or QWEN_IMAGE_SIZE) // tower.patch_size) ** 2
        width = tower.hidden_size
        return linear_flops(patches, width, 3 * width) + 2 * patches * patches * width
    tokens, width = crop_tokens(config), tower.hidden_size
    if family_of(config).has_cls_token:
        per_crop = linear_flops(1, width, width) + linear_flops(tokens, width, width) + 2 * tokens * width
    else:
        per_crop = 2 * linear_flops(tokens, width, width) + 2 * tokens * tokens * width
    return num_crops(config, image_size) * per_crop


def vision_tower_flops(config: LlavaConfig) -> int:
    """The CLIP (or SigLIP) vision tower on one crop: patch embedding and every layer over the patches (and [CLS])."""
    vision = config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    embedding = linear_flops(patches, vision.num_channels * vision.patch_size**2, vision.hidden_size)
    return embedding + vision.num_hidden_layers * layer_flops(
        crop_tokens(config), vision.hidden_size, vision.intermediate_size, vision.num_attention_heads, ffn_matrices=2
    )


def projector_flops(config: LlavaConfig) -> int:
    """LLaVA's two-layer projector on the tokens it reads of a crop (the patches; [CLS] too with the "full" strategy,
    where the tower has one)."""
    vision, text = config.vision_config, config.text_config
    read = crop_tokens(config) - (
        family_of(config).has_cls_token and config.vision_feature_select_strategy == "default"
    )
    return linear_flops(read, vision.hidden_size, text.hidden_size) + linear_flops(
        read, text.hidden_size, text.hidden_size
    )


def language_model_flops(config: LlavaConfig, tokens: int, num_layers: int | None = None) -> int:
    text = config.text_config
    layers = text.num_hidden_layers if num_layers is None else num_layers
    return layers * layer_flops(
        tokens, text.hidden_size, text.intermediate_size, text.num_attention_heads, text.num_key_value_heads
    )


def tprl_pruner_flops(tprl_config, num_visual: int, num_text: int, num_kept: int) -> int:
    """The state autoencoder's encoder on every visual token and the policy's input layers (every token's patch-grid
    neighbourhood, the question) once per episode, on every slot the policy reads (an anyres family's tile grid holds
    more slots than an image has tokens), then per pruning step the policy's transformer over the tokens still kept
    before that step (`keep_schedule`)."""
    latent, hidden = tprl_config.autoencoder_latent_size, tprl_config.policy_hidden_size
    width = tprl_config.base_text_hidden_size
    slots = max(num_visual, tprl_config.num_visual_tokens)
    encoder = linear_flops(slots, width, 2 * latent) + linear_flops(slots, 2 * latent, latent)
    steps = [num_visual, *keep_schedule(num_visual, num_kept, tprl_config.num_pruning_steps)[:-1]]
    visual_in = linear_flops(slots, latent * tprl_config.policy_kernel_size**2, hidden)
    total = encoder + visual_in + linear_flops(num_text, width, hidden)
    for visible in steps:
        length = 1 + num_text + visible  # value token, question, the kept visual latents
        layer = (
            linear_flops(length, hidden, 3 * hidden)
            + 2 * 2 * length * length * hidden
            + linear_flops(length, hidden, hidden)
            + linear_flops(length, hidden, 2 * hidden)
            + linear_flops(length, 2 * hidden, hidden)
        )
        total += tprl_config.policy_num_layers * layer + linear_flops(visible, hidden, 1) + linear_flops(1, hidden, 1)
    return total


@dataclass
class PrefillFlops:
    """FLOPs of one prefill (one image, `num_text` text tokens), split by where they are spent."""

    vision: int
    selection: int
    language_model: int
    lm_head: int

    @property
    def total(self) -> int:
        return self.vision + self.selection + self.language_model + self.lm_head

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def prefill_flops(
    config: LlavaConfig,
    num_kept: int,
    num_text: int,
    method: str = "tprl",
    tprl_config=None,
    fastv_layer: int = 2,
    image_size: int | None = None,
) -> PrefillFlops:
    """Analytic FLOPs of a prefill keeping `num_kept` visual tokens with `method` (`full` keeps them all); one image
    (of `image_size` pixels square for Qwen2.5-VL)."""
    num_visual = num_image_tokens(config, image_size)
    if not 1 <= num_kept <= num_visual:
        raise ValueError(f"num_kept must be in [1, {num_visual}], got {num_kept}.")
    vision = vision_flops(config, image_size)
    selection = 0
    if method == "tprl":
        if tprl_config is None:
            raise ValueError("The tprl method's overhead needs the TPRL config (autoencoder and policy sizes).")
        selection = tprl_pruner_flops(tprl_config, num_visual, num_text, num_kept)
    elif method == "fastv":  # its scoring layers on the full sequence, then q and k of the scoring layer
        text = config.text_config
        layers = min(fastv_layer, text.num_hidden_layers - 1)
        kv_width = text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)
        full = num_visual + num_layout_tokens(config, image_size) + num_text
        selection = language_model_flops(config, full, layers) + linear_flops(full, text.hidden_size, text.hidden_size)
        selection += linear_flops(full, text.hidden_size, kv_width)
    elif method in ("cls_attention", "vision_attention"):  # from the one vision pass
        if method == "cls_attention" and not family_of(config).has_cls_token:
            raise ValueError(f"cls_attention needs a vision tower with a [CLS] token; {config.model_type} has none.")
        selection = vision_attention_flops(config, image_size)
    elif method not in ("full", "random", "uniform", "oracle"):
        raise ValueError(f"Unknown method {method!r}.")
    kept = (num_visual if method == "full" else num_kept) + num_layout_tokens(config, image_size)
    lm = language_model_flops(config, kept + num_text)
    head = linear_flops(1, config.text_config.hidden_size, config.text_config.vocab_size)
    return PrefillFlops(vision, selection, lm, head)


def visual_only_reduction(config: PreTrainedConfig, num_kept: int, image_size: int | None = None) -> float:
    """FastV's headline: the LM's FLOPs over the visual tokens alone, kept vs. all."""
    return 1 - language_model_flops(config, num_kept) / language_model_flops(
        config, num_image_tokens(config, image_size)
    )


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


# torch 2.13's FlopCounterMode has formulas for the GPU SDPA kernels only: on CPU, attention would count as 0.
CPU_SDPA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def measured_flops(fn) -> int:
    """FLOPs that `FlopCounterMode` counts while `fn` runs, CPU attention included."""
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) as counter:
        fn()
    return counter.get_total_flops()


def dummy_image_inputs(config: PreTrainedConfig, image_size: int | None, device, dtype) -> dict:
    """One image's inputs (zeros) as the family's processor shapes them."""
    vision = config.vision_config
    if config.model_type == "qwen2_5_vl":
        side = (image_size or QWEN_IMAGE_SIZE) // vision.patch_size
        width = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        return {
            "pixel_values": torch.zeros(side * side, width, device=device, dtype=dtype),
            "image_grid_thw": torch.tensor([[1, side, side]], device=device),
        }
    return {
        "pixel_values": torch.zeros(
            1, vision.num_channels, vision.image_size, vision.image_size, device=device, dtype=dtype
        )
    }


@torch.no_grad()
def measured_prefill_flops(
    model, num_kept: int, num_text: int, method: str = "tprl", image_size: int | None = None
) -> int:
    """Counts one prefill of a `TPRLForConditionalGeneration` on a dummy one-image prompt with `FlopCounterMode`."""
    config = model.base.config
    device = model.base.device
    num_visual = num_image_tokens(config, image_size)
    ids = torch.full((1, num_text + num_visual), 1, dtype=torch.long, device=device)
    ids[0, 1 : 1 + num_visual] = config.image_token_id
    images = dummy_image_inputs(config, image_size, device, model.dtype)
    if config.model_type == "qwen2_5_vl":
        images["mm_token_type_ids"] = (ids == config.image_token_id).int()
    selection = {"keep_ratio": 1.0} if method == "full" else {"pruning_method": method, "num_kept_tokens": num_kept}
    return measured_flops(
        lambda: model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=1, **images, **selection)
    )


SHIPPED_CONFIGS = {
    "llava-1.5-7b": str(Path(__file__).parent / "configs" / "llava-1.5-7b-hf"),
    "llava-1.5-13b": str(Path(__file__).parent / "configs" / "llava-1.5-13b-hf"),
    "qwen2.5-vl-7b": str(Path(__file__).parent / "configs" / "qwen2.5-vl-7b-instruct"),
    "llava-next-7b": str(Path(__file__).parent / "configs" / "llava-v1.6-vicuna-7b-hf"),
    "llava-onevision-7b": str(Path(__file__).parent / "configs" / "llava-onevision-qwen2-7b-ov-hf"),
}
METHODS = ("tprl", "fastv", "cls_attention", "vision_attention", "random", "uniform")
REFERENCE_SHAPES = {
    "llava": "llava-1.5-7b",
    "llava_next": "llava-next-7b",
    "llava_onevision": "llava-onevision-7b",
    "qwen2_5_vl": "qwen2.5-vl-7b",
}
"""Per base family, the shipped config of the size users run: reports also count a selection's FLOPs there, where a
tiny base's pruner cost would mislead (on the digit world's 0.45M-parameter LLaVA, TPRL's policy is a third of the
prefill; at LLaVA-1.5-7B's, under 0.5%)."""


@dataclass
class FlopsArguments:
    model: str = field(
        default="llava-1.5-7b",
        metadata={
            "help": f"One of {tuple(SHIPPED_CONFIGS)} (shipped configs), or any llava-hf, Qwen2.5-VL or TPRL "
            "config (directory or Hub id). Only shapes are read; no weights."
        },
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": f"Qwen2.5-VL, LLaVA-NeXT, LLaVA-OneVision: side of the square image in pixels (defaults "
            f"{QWEN_IMAGE_SIZE}, {ANYRES_IMAGE_SIZES['llava_next']}, {ANYRES_IMAGE_SIZES['llava_onevision']}). LLaVA: fixed."
        },
    )
    kept: str = field(default="192,128,64", metadata={"help": "Comma-separated visual-token budgets."})
    text_tokens: int = field(default=64, metadata={"help": "Text tokens in the prompt."})
    methods: str = field(
        default="tprl,fastv,vision_attention,random", metadata={"help": f"Selection methods to count: {METHODS}."}
    )
    measure: bool = field(
        default=False,
        metadata={
            "help": "Also count with FlopCounterMode on a proxy: the same widths with 2 LM and 2 vision layers, "
            "random bf16 weights (a few GB of memory and seconds per prefill at 7B widths)."
        },
    )

    def __post_init__(self):
        if self.model not in SHIPPED_CONFIGS:
            check_model_argument(self.model, "--model")
        try:
            self.kept_list = [int(k) for k in self.kept.split(",") if k.strip()]
        except ValueError as error:
            raise ValueError(f"kept must be comma-separated integers, got {self.kept!r}.") from error
        self.method_list = [m.strip() for m in self.methods.split(",") if m.strip()]
        unknown = [m for m in self.method_list if m not in METHODS]
        if unknown:
            raise ValueError(f"Unknown method(s) {unknown}; choose from {', '.join(METHODS)}.")
        if self.text_tokens < 1 or not self.kept_list:
            raise ValueError("text_tokens must be positive and kept must list at least one budget.")


def load_configs(name_or_path: str, image_size: int | None = None) -> tuple[PreTrainedConfig, TPRLConfig]:
    """The base's config and a TPRL config (the checkpoint's, or the defaults on that base, its policy reading images
    of `image_size`)."""
    config = AutoConfig.from_pretrained(SHIPPED_CONFIGS.get(name_or_path, name_or_path))
    if isinstance(config, TPRLConfig):
        return config.base_config, config
    if config.model_type not in ("llava", "qwen2_5_vl", *ANYRES_IMAGE_SIZES):
        raise ValueError(
            f"{name_or_path} is a {config.model_type!r} config; tprl-flops needs a llava, llava_next, llava_onevision, "
            "qwen2_5_vl or tprl one."
        )
    side = round(num_image_tokens(config, image_size) ** 0.5)
    grid = {"visual_grid": [side, side]} if config.model_type == "qwen2_5_vl" else {}
    return config, TPRLConfig(base_config=config.to_dict(), **grid)


def shallow_config(config: PreTrainedConfig, num_layers: int = 2) -> PreTrainedConfig:
    """`config` with `num_layers` LM and vision layers (Qwen2.5-VL: the last one full attention), every width and token
    count kept."""
    proxy = copy.deepcopy(config)
    proxy.text_config.num_hidden_layers = num_layers
    if getattr(proxy.text_config, "layer_types", None):
        proxy.text_config.layer_types = proxy.text_config.layer_types[:num_layers]
    if config.model_type == "qwen2_5_vl":
        proxy.vision_config.depth, proxy.vision_config.fullatt_block_indexes = num_layers, [num_layers - 1]
    else:
        proxy.vision_config.num_hidden_layers = num_layers
    return proxy


def proxy_configs(config: LlavaConfig, tprl_config: TPRLConfig, num_layers: int = 2) -> tuple[LlavaConfig, TPRLConfig]:
    """The same widths with `num_layers` LM and vision layers: small enough to run, to check the analytic count."""
    proxy = shallow_config(config, num_layers)
    fields = (
        "num_pruning_steps",
        "autoencoder_latent_size",
        "policy_hidden_size",
        "policy_num_layers",
        "policy_kernel_size",
    )
    fields += ("visual_grid",) if config.model_type != "llava" else ()
    return proxy, TPRLConfig(base_config=proxy.to_dict(), **{name: getattr(tprl_config, name) for name in fields})


def flops_table(args: FlopsArguments) -> str:
    config, tprl_config = load_configs(args.model, args.image_size)
    size = {"image_size": args.image_size}
    num_visual = num_image_tokens(config, args.image_size)
    full = prefill_flops(config, num_visual, args.text_tokens, method="full", tprl_config=tprl_config, **size)
    header = "| kept | method | visual-only reduction | vision GFLOPs | selection GFLOPs | LM GFLOPs | total GFLOPs "
    header += "| full-prefill reduction |"
    if args.measure:
        if config.model_type in ANYRES_IMAGE_SIZES:
            raise ValueError(
                f"--measure runs proxies of llava and qwen2_5_vl bases; {config.model_type} is counted analytically."
            )
        proxy_config, proxy_tprl = proxy_configs(config, tprl_config)
        proxy = TPRLForConditionalGeneration(proxy_tprl).to(torch.bfloat16).eval()
        header += " proxy analytic GFLOPs | proxy measured GFLOPs | difference |"
    lines = [
        f"{args.model}: {num_visual} visual tokens, {args.text_tokens} text tokens, one image. Analytic "
        "FLOPs (FastV convention, the LM's 3-matrix FFN)."
        + (
            " Proxy: the same widths with 2 LM and 2 vision layers, counted by FlopCounterMode."
            if args.measure
            else ""
        ),
        "",
        header,
        "|---" * (header.count("|") - 1) + "|",
    ]
    methods = args.method_list
    if config.model_type in ANYRES_IMAGE_SIZES:
        lines[0] += f" Plus {num_layout_tokens(config, args.image_size)} row newlines, all counted as kept."
    rows = [("full", num_visual)] + [(m, k) for k in args.kept_list for m in methods]
    for method, kept in rows:
        flops = prefill_flops(config, kept, args.text_tokens, method=method, tprl_config=tprl_config, **size)
        reduction = visual_only_reduction(config, kept, args.image_size)
        line = (
            f"| {kept} | {method} | {100 * reduction:.1f}% | {flops.vision / 1e9:.1f} | "
            f"{flops.selection / 1e9:.2f} | {flops.language_model / 1e9:.1f} | {flops.total / 1e9:.1f} | "
            f"{100 * (1 - flops.total / full.total):.1f}% |"
        )
        if args.measure:
            analytic = prefill_flops(
                proxy_config, kept, args.text_tokens, method=method, tprl_config=proxy_tprl, **size
            )
            measured = measured_prefill_flops(proxy, kept, args.text_tokens, method, args.image_size)
            line += (
                f" {analytic.total / 1e9:.1f} | {measured / 1e9:.1f} | "
                f"{100 * (analytic.total - measured) / measured:+.2f}% |"
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


@command("tprl-flops")
def main(argv: list[str]) -> None:
    (args,) = HfArgumentParser(FlopsArguments).parse_args_into_dataclasses(args=argv)
    print(flops_table(args))


if __name__ == "__main__":
    main()
