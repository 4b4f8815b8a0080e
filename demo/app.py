"""`tprl-demo`: a Gradio page that shows a pruner at work, beside the full model and a training-free method.

    tprl-demo [--model <TPRL checkpoint or base: directory or Hub id>] [--host 127.0.0.1] [--port 7860]

Each column answers the same question about the same image and shows what it cost: the patches that reach the
language model drawn over the image, the visual tokens kept, the prefill FLOPs as `tprl-flops` counts them and the
time `generate` took. The page loads nothing from outside this machine and sends no analytics.
"""

import os


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # read when gradio is imported

import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402
from transformers import AutoConfig, AutoProcessor, HfArgumentParser  # noqa: E402

from modeling_tprl import ALL_PRUNING_METHODS, TPRLForConditionalGeneration  # noqa: E402
from tprl_digit_world import EMBEDDED_TPRL_PATH, DigitWorld  # noqa: E402
from tprl_eval.command_line import check_model_argument, command  # noqa: E402
from tprl_eval.flops import prefill_flops  # noqa: E402
from tprl_eval.plots import shade_dropped_patches  # noqa: E402


BUDGET_MODES = ("number of tokens", "share of tokens", "adaptive (mean share)")
DISPLAY_SIZE = 384  # the tiny base's 96x96 canvases, upscaled with NEAREST so that patches stay sharp


@dataclass
class DemoArguments:
    model: str = field(
        default=EMBEDDED_TPRL_PATH,
        metadata={
            "help": "A TPRL checkpoint or a base without a trained pruner (directory or Hub id); default: the "
            "shipped pruner of the embedded tiny LLaVA."
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0 for every interface)."})
    port: int = field(default=7860)
    max_new_tokens: int = field(default=8)


@dataclass
class Answer:
    """One column's answer and what it cost."""

    method: str
    answer: str
    kept: int
    total: int
    flops: int | None  # None where tprl-flops does not count the method or the base
    full_flops: int | None
    seconds: float
    overlay: Image.Image

    def summary(self) -> str:
        flops = "prefill FLOPs not counted for this method"
        if self.flops is not None:
            share = 100 * self.flops / self.full_flops
            flops = f"prefill **{self.flops / 1e6:.2f} MFLOPs**, {share:.1f}% of the full model's"
        return f"**{self.kept}** of {self.total} visual tokens kept  \n{flops}  \n{1000 * self.seconds:.0f} ms"

    def figures(self) -> dict:
        return {
            "answer": self.answer,
            "kept_tokens": self.kept,
            "visual_tokens": self.total,
            "prefill_flops": self.flops,
            "flops_ratio": None if self.flops is None else self.flops / self.full_flops,
            "seconds": self.seconds,
        }


class PruningDemo:
    """
    A model and its processor answering one question about one image, with a pruning method and a budget.

    Args:
        model_name_or_path (`str`): a TPRL checkpoint (its trained pruner is shown) or a base of a supported family
            (the training-free methods alone).
        max_new_tokens (`int`): the longest answer.
    """

    def __init__(self, model_name_or_path: str = EMBEDDED_TPRL_PATH, max_new_tokens: int = 8):
        check_model_argument(model_name_or_path, "--model")
        config = AutoConfig.from_pretrained(model_name_or_path)
        self.trained = config.model_type == "tprl"
        load = TPRLForConditionalGeneration.from_pretrained if self.trained else TPRLForConditionalGeneration.from_base
        self.model = load(model_name_or_path).eval()
        self.processor = AutoProcessor.from_pretrained(model_name_or_path)
        self.max_new_tokens = max_new_tokens
        self.max_length = self.model.config.text_config.max_position_embeddings - max_new_tokens
        self.adaptive = self.trained and bool(self.model.config.adaptive_operating_points)
        has_cls = self.model.family.has_cls_token
        self.baselines = [
            name for name in ALL_PRUNING_METHODS if name != "tprl" and (has_cls or name != "cls_attention")
        ]

    def inputs(self, image: Image.Image, question: str) -> dict:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(images=image, text=prompt, return_tensors="pt")
        if inputs["input_ids"].shape[1] > self.max_length:
            raise gr.Error(
                f"The question makes a prompt of {inputs['input_ids'].shape[1]} tokens with the image; this model "
                f"takes at most {self.max_length}. Ask a shorter question."
            )
        return inputs

    def budgets(self, mode: str, tokens: int, share: float, target: float) -> dict:
        """`generate`'s budget arguments for a budget chosen on the page."""
        if mode == BUDGET_MODES[0]:
            return {"num_kept_tokens": int(tokens)}
        if mode == BUDGET_MODES[1]:
            return {"keep_ratio": float(share)}
        if mode == BUDGET_MODES[2] and self.adaptive:
            return {"keep_ratio": "adaptive", "target_keep_ratio": float(target)}
        raise gr.Error(f"Unknown budget {mode!r} for this model; choose one of {self.budget_modes()}.")

    def budget_modes(self) -> list[str]:
        return list(BUDGET_MODES if self.adaptive else BUDGET_MODES[:2])

    def answer(self, image: Image.Image, inputs: dict, method: str, budget: dict) -> Answer:
        """Answers with `method` (`"full"`: pruning off) at `budget`; the kept patches come from the same selection."""
        counted = method
        if method == "full":
            method, budget = "tprl", {"keep_ratio": 1.0}
        kwargs = {**budget, "pruning_method": method}
        torch.manual_seed(0)  # the random method draws from torch's RNG: the same draw for the answer and the picture
        start = time.perf_counter()
        with torch.no_grad():
            output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, **kwargs)
        seconds = time.perf_counter() - start
        torch.manual_seed(0)
        kept = self.model.kept_visual_indices(**inputs, **kwargs)[0]
        kept = kept[kept >= 0]
        answer = self.processor.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        grid = self.model.family.grids(self.model.config.base_config, self.model.image_inputs(dict(inputs)))[0]
        total = int(grid.prod())
        num_text = int(inputs["input_ids"].shape[1]) - total
        config = self.model.config
        try:
            flops = prefill_flops(
                config.base_config, len(kept), num_text, counted, tprl_config=config, fastv_layer=config.fastv_layer
            ).total
            full_flops = prefill_flops(config.base_config, total, num_text, method="full").total
        except ValueError:  # a method registered by the user, or a base tprl-flops does not count
            flops = full_flops = None
        overlay = shade_dropped_patches(self.seen_image(image, inputs), kept.tolist(), (int(grid[-2]), int(grid[-1])))
        scale = DISPLAY_SIZE / max(overlay.shape[:2])
        size = (round(overlay.shape[1] * scale), round(overlay.shape[0] * scale))
        overlay = Image.fromarray(overlay).resize(size, Image.NEAREST)
        return Answer(method, answer, len(kept), total, flops, full_flops, seconds, overlay)

    def seen_image(self, image: Image.Image, inputs: dict) -> np.ndarray:
        """The image as the vision tower sees it (resized and cropped) where `pixel_values` is one picture per image
        (LLaVA); else as uploaded."""
        image_processor = self.processor.image_processor
        if inputs["pixel_values"].dim() != 4:
            return np.asarray(image)
        mean, std = (torch.tensor(v).view(3, 1, 1) for v in (image_processor.image_mean, image_processor.image_std))
        pixels = (inputs["pixel_values"][0] * std + mean).clamp(0, 1)
        return (pixels.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def image_upload(**kwargs) -> gr.Image:
    """`gr.Image`, but an upload that is not an image ends in a message saying so, not in gradio's processing error.
    (Wrapped on the instance: a subclass of a gradio component makes gradio write a .pyi stub beside this file.)"""
    component = gr.Image(**kwargs)
    preprocess = component.preprocess

    def clear_preprocess(payload):
        try:
            return preprocess(payload)
        except (UnidentifiedImageError, OSError) as error:
            raise gr.Error("That file is not an image this page can read: upload a PNG, JPEG or WebP.") from error

    component.preprocess = clear_preprocess
    return component


def read_image(path: str | None) -> Image.Image:
    if not path:
        raise gr.Error("Upload an image, or draw a digit-world sample, first.")
    with Image.open(path) as image:
        return image.convert("RGB")


def digit_world_sample(seed: int, num_digits: int | None = None) -> tuple[Image.Image, str, str]:
    """A held-out digit-world canvas (3-6 digits, or `num_digits`; 6 is the dense split), its question and answer."""
    example = DigitWorld("test").sample(np.random.default_rng(seed), num_digits=num_digits)
    return Image.fromarray(example["image"]), example["question"], example["answer"]


def build_demo(demo: PruningDemo) -> gr.Blocks:
    """The page: an image and a question in, one column per method out."""
    examples_dir = Path(tempfile.mkdtemp(prefix="tprl-demo-"))
    examples = []
    for seed in range(4):
        image, question, _ = digit_world_sample(seed)
        image.save(examples_dir / f"digit_world_{seed}.png")
        examples.append([str(examples_dir / f"digit_world_{seed}.png"), question])
    total = demo.model.num_visual_tokens
    default_baseline = "cls_attention" if "cls_attention" in demo.baselines else demo.baselines[0]

    with gr.Blocks(title="TPRL: see it prune", analytics_enabled=False) as page:
        gr.Markdown(
            "# TPRL: see it prune\nA learned, question-aware pruner drops visual tokens before the language model. "
            "Ask a question about an image and compare "
            + (
                "TPRL, the full model and a training-free method."
                if demo.trained
                else "the full model with a training-free method (this base has no trained pruner)."
            )
        )
        with gr.Row():
            with gr.Column():
                image = image_upload(type="filepath", label="image", height=DISPLAY_SIZE // 2 + 96)
                sample = gr.Button("Draw a digit-world sample")
            with gr.Column():
                question = gr.Textbox(label="question", placeholder="e.g. what color is the 7")
                mode = gr.Radio(demo.budget_modes(), value=BUDGET_MODES[0], label="budget")
                tokens = gr.Slider(1, total, value=max(1, round(total / 9)), step=1, label="tokens kept")
                share = gr.Slider(0.01, 1.0, value=1 / 3, step=0.01, label="share kept", visible=False)
                target = gr.Slider(0.02, 0.3, value=1 / 9, step=0.01, label="mean share kept", visible=False)
                baseline = gr.Dropdown(demo.baselines, value=default_baseline, label="training-free method")
                run = gr.Button("Answer", variant="primary")
        gr.Examples(examples, inputs=[image, question], label="digit-world examples")

        columns = []
        with gr.Row():
            for title, visible in (("TPRL", demo.trained), ("full model", True), ("training-free", True)):
                with gr.Column(visible=visible):
                    header = gr.Markdown(f"### {title}")
                    answer = gr.Textbox(label="answer", interactive=False)
                    overlay = gr.Image(
                        label="kept patches", type="pil", interactive=False, format="png", elem_classes="kept-patches"
                    )
                    summary = gr.Markdown()
                columns.append((header, answer, overlay, summary))
        with gr.Accordion("figures", open=False):
            figures = gr.JSON(label="figures")

        def show_budget(chosen: str):
            return [gr.update(visible=chosen == name) for name in BUDGET_MODES]

        mode.change(show_budget, mode, [tokens, share, target], api_name=False)
        sample.click(
            lambda: digit_world_sample(int(np.random.default_rng().integers(1 << 31)))[:2],
            None,
            [image, question],
            api_name="sample",
        )

        def answer_all(
            image_path,
            question_text,
            budget_mode,
            num_tokens,
            ratio,
            mean_ratio,
            method,
            progress=gr.Progress(),  # noqa: B008 (gradio finds its tracker by this default)
        ):
            if not (question_text or "").strip():
                raise gr.Error("Type a question first.")
            if method not in demo.baselines:
                raise gr.Error(f"Unknown training-free method {method!r}; choose one of {demo.baselines}.")
            picture = read_image(image_path)
            inputs = demo.inputs(picture, question_text.strip())
            budget = demo.budgets(budget_mode, num_tokens, ratio, mean_ratio)
            results = {}
            if demo.trained:
                progress(0.0, desc="TPRL")
                results["tprl"] = demo.answer(picture, inputs, "tprl", budget)
                if "target_keep_ratio" in budget:  # the others keep as many tokens as TPRL chose
                    budget = {"num_kept_tokens": results["tprl"].kept}
            progress(0.33, desc="full model")
            results["full"] = demo.answer(picture, inputs, "full", {})
            progress(0.67, desc=method)
            results[method] = demo.answer(picture, inputs, method, budget)
            outputs = []
            for name in ("tprl", "full", method):
                result = results.get(name)
                title = {"tprl": "TPRL", "full": "full model"}.get(name, name)
                outputs += [f"### {title}", result.answer, result.overlay, result.summary()] if result else [None] * 4
            return outputs + [{name: result.figures() for name, result in results.items()}]

        page_outputs = [component for column in columns for component in column] + [figures]
        page_inputs = [image, question, mode, tokens, share, target, baseline]
        run.click(answer_all, page_inputs, page_outputs, api_name="answer")
        question.submit(answer_all, page_inputs, page_outputs, api_name=False)
    return page


def launch(page: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serves the page with every asset from this machine (a built-in theme: no web fonts) and no server rendering."""
    return page.launch(
        server_name=host, server_port=port, theme=gr.themes.Default(), ssr_mode=False, share=False, **kwargs
    )


@command("tprl-demo")
def main(argv: list[str]) -> None:
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    launch(build_demo(PruningDemo(args.model, args.max_new_tokens)), args.host, args.port)


if __name__ == "__main__":
    main()
