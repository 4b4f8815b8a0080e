"""`tprl-train --dry_run`: every stage of a recipe on a random-weight base of its exact widths and token counts but
2 layers, on a fixture dataset, with the time and memory each stage took and a projection to the real run.

    tprl-train --config train/configs/llava-1.5-7b.yaml --dry_run

The base's config comes from `base_model_name_or_path` (or, offline, the config shipped for its id: LLaVA-1.5,
LLaVA-NeXT, OneVision, Qwen2.5-VL), its tokenizer from the embedded default (its ids fit any vocabulary). The fixture
is digit-world questions, their canvases resized to squares of the base's image size (for LLaVA-NeXT and OneVision,
their default 672 and 768: a base view and 2x2 tiles). Each stage runs a few steps on small batches.

Projection, per stage, to the recipe's real run on one process, then on each of `dry_run_num_processes`:
- time: the dry stage's time x (examples through the base in the real stage / in the dry one) x (the base's forward
  FLOPs at its real depth / at 2 layers: vision tower and projector for the autoencoder, the whole prefill for the
  other stages), on the device the dry run ran on; and, for a GPU, the FLOPs the dry stage counted
  (`FlopCounterMode`) scaled the same way, at `dry_run_gpu_tflops` sustained;
- memory: the base's weights at its real depth plus what the dry stage held beyond the dry base's weights (the peak
  allocated on a GPU; on a CPU the process's peak resident size during the stage, Python and libraries included),
  times the real batch over the dry one (the teacher's: the selections it scores at once, at most
  `leave_one_in_chunk_size`, which the dry run's 4 examples of 576 tokens already fill). The frozen base runs without
  gradients, so its activations do not pile up over its layers; the linear scaling with the batch is an upper bound;
- on N processes (`accelerate launch --num_processes N`): the same examples shared out, each process a 1/N share
  (the demonstrations, the budget table and the operating points are shared out batch by batch; for a `Trainer`
  stage, keep the recipe's global batch: `per_device_train_batch_size` and `stage_batch_size` divided by N), so the
  time divided by N, communication not counted; the memory per process is the one-process figure, an upper bound
  (each process holds the whole base).
"""

import json
import logging
import resource
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoConfig,
    CLIPImageProcessorPil,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    LlavaOnevisionImageProcessorPil,
    LlavaProcessor,
    PreTrainedConfig,
    ProcessorMixin,
    Qwen2VLImageProcessorPil,
)
from transformers.image_utils import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from modeling_tprl.families import SUPPORTED_BASE_MODEL_TYPES, family_of
from modeling_tprl.processing_tprl import ImageOnlyLlavaOnevisionProcessor
from tprl_digit_world import build_processor, build_qwen2_5_vl_processor
from tprl_digit_world.evaluation import fixed_examples
from tprl_digit_world.processor import QWEN_VISION_TOKENS
from tprl_eval.flops import (
    ANYRES_IMAGE_SIZES,
    CPU_SDPA_FLOPS,
    SHIPPED_CONFIGS,
    num_image_tokens,
    prefill_flops,
    shallow_config,
    vision_flops,
)


logger = logging.getLogger("tprl-train")

DRY_RUN_LAYERS = 2
DRY_RUN_BATCH = 4  # 4 x 576 selections fill the teacher's leave-one-in chunk (at most 2048), as the real batch
FIXTURE_SIZE = 16
TEXT_TOKENS = 64  # a question and its answer, for the FLOPs ratio


@dataclass
class StageRecord:
    """What one stage took: `seconds`, `peak_bytes` and, when counted, `flops`; `examples` went through the base."""

    name: str
    examples: int
    seconds: float = 0.0
    peak_bytes: int = 0
    flops: int | None = None


def reset_peak_memory() -> None:
    """Starts a new peak: CUDA's allocator statistics, or Linux's peak resident size (`clear_refs`, Linux >= 4.0)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak is the process's so far


def peak_memory() -> int:
    """Bytes: CUDA's peak allocated, else the process's peak resident size (since the last reset on Linux)."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StageMeter:
    """Times each stage and reads its peak memory (and, for a dry run, counts its FLOPs)."""

    def __init__(self, count_flops: bool = False):
        self.count_flops = count_flops
        self.records: list[StageRecord] = []

    @contextmanager
    def stage(self, name: str, examples: int):
        record = StageRecord(name, examples)
        reset_peak_memory()
        # FlopCounterMode counts every op run inside it: the Trainer's forward and backward passes included.
        counter = FlopCounterMode(display=False, custom_mapping=CPU_SDPA_FLOPS) if self.count_flops else nullcontext()
        start = time.perf_counter()
        with counter:
            yield record
        record.seconds = time.perf_counter() - start
        record.flops = counter.get_total_flops() if self.count_flops else None
        record.peak_bytes = peak_memory()
        self.records.append(record)
        logger.info(f"The {name} stage took {record.seconds:.1f} s, peak memory {record.peak_bytes / 2**30:.2f} GiB.")


def full_base_config(name_or_path: str) -> PreTrainedConfig:
    """The base's config: from its directory or the Hub, else the one shipped for that id (offline)."""
    shipped = {Path(path).name: path for path in SHIPPED_CONFIGS.values()}
    try:
        config = AutoConfig.from_pretrained(name_or_path)
    except OSError:
        if Path(name_or_path).name not in shipped:
            raise
        config = AutoConfig.from_pretrained(shipped[Path(name_or_path).name])
    if config.model_type not in SUPPORTED_BASE_MODEL_TYPES:
        raise ValueError(
            f"The dry run needs a base of {SUPPORTED_BASE_MODEL_TYPES}; {name_or_path} is a {config.model_type!r} model."
        )
    return config


def dry_run_image_size(config: PreTrainedConfig, visual_grid: list[int] | None) -> int:
    """The side of the fixture's square images: LLaVA's image size, the anyres families' default square (672 for
    LLaVA-NeXT, 768 for OneVision: a base view and 2x2 tiles), or for Qwen-VL the policy's grid in pixels."""
    vision = config.vision_config
    if config.model_type == "llava":
        return vision.image_size
    if config.model_type in ANYRES_IMAGE_SIZES:
        return ANYRES_IMAGE_SIZES[config.model_type]
    return (visual_grid or [16, 16])[0] * vision.patch_size * vision.spatial_merge_size


def build_dry_run_base(config: PreTrainedConfig, path: Path, dtype: str, image_size: int) -> PreTrainedConfig:
    """Saves a random-weight base of `config`'s widths and token counts with `DRY_RUN_LAYERS` layers, and a processor
    for it (the embedded tokenizer, the family's image processor at `image_size`); returns its config."""
    if config.model_type not in ("llava", *ANYRES_IMAGE_SIZES):
        return build_qwen_dry_run_base(config, path, dtype, image_size)
    processor = llava_style_dry_run_processor(config)
    tokenizer = processor.tokenizer
    proxy = shallow_config(config, DRY_RUN_LAYERS)
    proxy.image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    if hasattr(proxy, "video_token_id"):  # OneVision: no videos here
        proxy.video_token_id = tokenizer.unk_token_id
    proxy.pad_token_id = tokenizer.pad_token_id
    proxy.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = family_of(config).model_class(proxy).to(getattr(torch, dtype))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return proxy


def llava_style_dry_run_processor(config: PreTrainedConfig) -> ProcessorMixin:
    """A LLaVA, LLaVA-NeXT or OneVision processor of the embedded tokenizer (its ids fit any vocabulary) and the
    base's own image processing: its crop size, CLIP's or SigLIP's normalisation, its grid pinpoints."""
    embedded = build_processor()
    tokenizer = embedded.tokenizer
    tokenizer.model_max_length = 8192  # an anyres image is thousands of tokens
    vision = config.vision_config
    size = vision.image_size
    if config.model_type == "llava_onevision":
        image_processor = LlavaOnevisionImageProcessorPil(
            size={"height": size, "width": size},
            image_grid_pinpoints=config.image_grid_pinpoints,
            image_mean=IMAGENET_STANDARD_MEAN,  # SigLIP's 0.5s
            image_std=IMAGENET_STANDARD_STD,
        )
        return ImageOnlyLlavaOnevisionProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=(size // vision.patch_size) ** 2,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            chat_template=embedded.chat_template,
            vision_aspect_ratio=config.vision_aspect_ratio,
        )
    clip = {
        "size": {"shortest_edge": size},
        "crop_size": {"height": size, "width": size},
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
    }
    if config.model_type == "llava_next":
        image_processor = LlavaNextImageProcessorPil(**clip, image_grid_pinpoints=config.image_grid_pinpoints)
    else:
        image_processor = CLIPImageProcessorPil(**clip)
    return (LlavaNextProcessor if config.model_type == "llava_next" else LlavaProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
        chat_template=embedded.chat_template,
    )


def build_qwen_dry_run_base(config: PreTrainedConfig, path: Path, dtype: str, image_size: int) -> PreTrainedConfig:
    """A Qwen-VL dry-run base: the tiny Qwen2.5-VL's tokenizer and chat template (the base's vocabulary size kept),
    an image-only processor resizing to `image_size` squares."""
    vision = config.vision_config
    processor = build_qwen2_5_vl_processor(
        Qwen2VLImageProcessorPil(
            patch_size=vision.patch_size,
            merge_size=vision.spatial_merge_size,
            temporal_patch_size=vision.temporal_patch_size,
            min_pixels=image_size**2,
            max_pixels=image_size**2,
        )
    )
    tokenizer = processor.tokenizer
    tokenizer.model_max_length = 8192
    proxy = shallow_config(config, DRY_RUN_LAYERS)
    start, image, end, video = tokenizer.convert_tokens_to_ids(QWEN_VISION_TOKENS)
    proxy.vision_start_token_id, proxy.image_token_id, proxy.vision_end_token_id, proxy.video_token_id = (
        start, image, end, video
    )  # fmt: skip
    proxy.text_config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = family_of(config).model_class(proxy).to(getattr(torch, dtype))
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return proxy


def write_fixture(path: Path, image_size: int) -> None:
    """Digit-world training questions, canvases resized to the base's image size, as a `save_to_disk` dataset."""
    rows = [
        {
            "image": Image.fromarray(example["image"]).resize((image_size, image_size)),
            "question": example["question"],
            "answer": example["answer"],
        }
        for example in fixed_examples("train", FIXTURE_SIZE, seed=0)
    ]
    datasets.Dataset.from_list(rows).cast_column("image", datasets.Image()).save_to_disk(str(path))


def parameter_bytes(config: PreTrainedConfig, dtype: str) -> int:
    with torch.device("meta"):
        model = family_of(config).model_class(config)
    return sum(parameter.numel() for parameter in model.parameters()) * getattr(torch, dtype).itemsize


def depth_ratio(config: PreTrainedConfig, proxy: PreTrainedConfig, stage: str, image_size: int) -> float:
    """The base's forward FLOPs at its real depth over the dry run's, for what the stage runs."""
    if stage == "autoencoder":  # the state autoencoder reads the projected tokens: no language model
        return vision_flops(config, image_size) / vision_flops(proxy, image_size)
    tokens = num_image_tokens(config, image_size)
    return (
        prefill_flops(config, tokens, TEXT_TOKENS, method="full", image_size=image_size).total
        / prefill_flops(proxy, tokens, TEXT_TOKENS, method="full", image_size=image_size).total
    )


def projection_table(
    records: list[StageRecord],
    real_examples: dict[str, int],
    batch_ratios: dict[str, float],
    config: PreTrainedConfig,
    proxy: PreTrainedConfig,
    dtype: str,
    gpu_tflops: float,
    image_size: int,
    num_processes: list[int] = (1, 8),
) -> tuple[str, list[dict]]:
    """The measured stages and their projection to the real run on each of `num_processes` (see the module's
    docstring), as markdown and dicts."""
    full_weights, dry_weights = parameter_bytes(config, dtype), parameter_bytes(proxy, dtype)
    device = "GPU" if torch.cuda.is_available() else "CPU"
    rows = []
    for record in records:
        scale = real_examples[record.name] / record.examples * depth_ratio(config, proxy, record.name, image_size)
        gpu_hours = None if record.flops is None else record.flops * scale / gpu_tflops / 1e12 / 3600
        rows.append(
            {
                "stage": record.name,
                "dry_examples": record.examples,
                "dry_seconds": record.seconds,
                "dry_peak_gib": record.peak_bytes / 2**30,
                "real_examples": real_examples[record.name],
                "projected_hours_same_device": record.seconds * scale / 3600,
                "projected_gpu_hours": gpu_hours,
                "projected_gpu_hours_per_processes": {
                    str(count): None if gpu_hours is None else gpu_hours / count for count in num_processes
                },
                "projected_memory_gib": (
                    full_weights + max(0, record.peak_bytes - dry_weights) * batch_ratios[record.name]
                )
                / 2**30,
            }
        )
    per_processes = " | ".join(
        f"projected GPU time, {count} process{'es' if count > 1 else ''} (h)" for count in num_processes
    )
    lines = [
        f"Dry run on the {device}: {DRY_RUN_LAYERS} layers of the base, random weights; weights {dry_weights / 2**30:.2f}"
        f" GiB here, {full_weights / 2**30:.2f} GiB at full depth ({dtype}). GPU time at {gpu_tflops:g} TFLOP/s.",
        "",
        f"| stage | dry: examples | dry: time (s) | dry: peak memory (GiB) | real: examples | projected time on this "
        f"{device}, one process (h) | {per_processes} | projected peak memory per process (GiB) |",
        "|---|---|---|---|---|---|" + "---|" * len(num_processes) + "---|",
    ]
    for row in rows:
        gpu = " | ".join(
            "-" if hours is None else f"{hours:.3f}" for hours in row["projected_gpu_hours_per_processes"].values()
        )
        lines.append(
            f"| {row['stage']} | {row['dry_examples']} | {row['dry_seconds']:.1f} | {row['dry_peak_gib']:.2f} | "
            f"{row['real_examples']} | {row['projected_hours_same_device']:.1f} | {gpu} | "
            f"{row['projected_memory_gib']:.1f} |"
        )
    totals = ", ".join(
        f"{sum(row['projected_gpu_hours_per_processes'][str(count)] or 0 for row in rows):.2f} h on {count}"
        for count in num_processes
    )
    lines += [
        "",
        f"Projected GPU time of the whole run (processes: the same examples shared out; for the Trainer stages, the "
        f"global batch kept): {totals}.",
    ]
    return "\n".join(lines) + "\n", rows


def write_report(output_dir: Path, table: str, rows: list[dict]) -> None:
    (output_dir / "dry_run.md").write_text(table)
    (output_dir / "dry_run.json").write_text(json.dumps(rows, indent=1))
    print(table)
