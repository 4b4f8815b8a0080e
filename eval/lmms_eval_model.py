"""The lmms-eval model `tprl`: any lmms-eval task with visual-token pruning, batched.

Installing `tprl[lmms]` (and `lmms-eval` itself, see the README) registers it through lmms-eval's `lmms_eval.models`
entry point, which lmms-eval >= 0.7 reads as `ModelManifest`s:

    lmms-eval --model tprl --model_args pretrained=<TPRL checkpoint>,keep_ratio=0.222 --tasks gqa --batch_size 8
    lmms-eval --model tprl --model_args pretrained=llava-hf/llava-1.5-7b-hf,keep_ratio=0.222,pruning_method=fastv ...

A TPRL checkpoint prunes with its learned policy (or a training-free `pruning_method`); a plain llava-hf base needs a
training-free `pruning_method` below `keep_ratio=1.0`. Answers are greedy and asked as `tprl-eval` asks them: the
image first, then the task's text, through the processor's chat template.
"""

import torch
from accelerate import PartialState
from lmms_eval import utils
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest
from PIL import Image
from transformers import AutoConfig

from modeling_tprl import ALL_PRUNING_METHODS
from modeling_tprl.processing_tprl import load_processor
from tprl_digit_world import EMBEDDED_BASE_PATH

from .answering import generate_answers
from .cli import load_model


IMAGE_PLACEHOLDER = "<image>"


class TPRLLmms(lmms):
    """lmms-eval's view of a [`TPRLForConditionalGeneration`]: `generate_until` for image-question tasks.

    Args:
        pretrained (`str`): a TPRL checkpoint or a llava-hf base (directory or Hub id); the embedded tiny base if unset.
        keep_ratio (`float` or `"adaptive"`, *optional*): the share of visual tokens kept, in (0, 1]; the checkpoint's
            default if neither it nor `num_kept_tokens` is given. `"adaptive"`: an adaptive checkpoint's own budgets,
            `target_keep_ratio` of the tokens on average.
        target_keep_ratio (`float`, *optional*): with `keep_ratio=adaptive`, the mean share of visual tokens kept.
        num_kept_tokens (`int`, *optional*): visual tokens kept per image, instead of `keep_ratio`.
        pruning_method (`str`, *optional*): one of `ALL_PRUNING_METHODS`; a TPRL checkpoint's own policy by default.
        batch_size (`int`): questions per `generate` call (lmms-eval's `--batch_size`).
        device (`str`, *optional*): where the model runs; the process's accelerator (or the CPU) by default.
        dtype (`str`, *optional*): e.g. "bfloat16"; the checkpoint's by default.
    """

    def __init__(
        self,
        pretrained: str = EMBEDDED_BASE_PATH,
        keep_ratio: float | str | None = None,
        num_kept_tokens: int | None = None,
        pruning_method: str | None = None,
        target_keep_ratio: float | None = None,
        batch_size: int | str = 1,
        device: str | None = None,
        dtype: str | None = None,
        **unknown,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(
                f"Unknown --model_args {sorted(unknown)} for tprl; it takes pretrained, keep_ratio, num_kept_tokens, "
                "pruning_method, target_keep_ratio, batch_size, device and dtype."
            )
        if pruning_method is not None and pruning_method not in ALL_PRUNING_METHODS:
            raise ValueError(f"Unknown pruning_method {pruning_method!r}; choose from {ALL_PRUNING_METHODS}.")
        state = PartialState()
        self._rank, self._world_size = state.process_index, state.num_processes
        is_base = AutoConfig.from_pretrained(pretrained).model_type != "tprl"
        if is_base and (keep_ratio, num_kept_tokens) == (None, None):
            keep_ratio = 1.0  # a plain base answers unpruned unless given a budget
        method = pruning_method or "tprl"
        model_kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
        model = load_model(pretrained, [method] if keep_ratio != 1.0 else [], **model_kwargs)
        self.model = model.to(device or state.device).eval()
        self.processor = load_processor(pretrained)
        self.batch_size = int(batch_size)
        self.pruning_kwargs = {
            name: value
            for name, value in (
                ("keep_ratio", keep_ratio),
                ("num_kept_tokens", num_kept_tokens),
                ("pruning_method", pruning_method),
                ("target_keep_ratio", target_keep_ratio),
            )
            if value is not None
        }
        # A bad budget fails now.
        if self.model.adaptive_compute_weight(keep_ratio, target_keep_ratio) is None:
            self.model.num_kept_tokens(keep_ratio=keep_ratio, num_kept_tokens=num_kept_tokens)

    def generate_until(self, requests) -> list[str]:
        """Greedy answers, batched over requests that share their generation arguments, cut at `until`."""
        # Longest prompts first (an out-of-memory error shows at once), grouped by generation arguments.
        collator = utils.Collator(
            [request.args for request in requests], lambda args: (-len(args[0]), args[0]), grouping=True
        )
        answers = []
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            contexts, all_gen_kwargs, doc_to_visual, doc_ids, tasks, splits = zip(*chunk)
            gen_kwargs = dict(all_gen_kwargs[0])
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else until
            if (
                gen_kwargs.get("do_sample")
                or (gen_kwargs.get("temperature") or 0) > 0
                or gen_kwargs.get("num_beams", 1) > 1
            ):
                raise ValueError(f"tprl answers greedily, as LLaVA's evaluation does; the task asks {gen_kwargs}.")
            images = []
            for to_visual, doc_id, task, split in zip(doc_to_visual, doc_ids, tasks, splits):
                visuals = to_visual(self.task_dict[task][split][doc_id])
                if len(visuals) != 1 or not isinstance(visuals[0], Image.Image):
                    raise ValueError(
                        f"tprl answers about one image per question; {task} doc {doc_id} gives {len(visuals)}."
                    )
                images.append(visuals[0].convert("RGB"))
            prompts = [context.replace(IMAGE_PLACEHOLDER, "").strip() for context in contexts]
            max_new_tokens = gen_kwargs.get("max_new_tokens", 1024)  # lmms-eval's llava_hf default
            batch = generate_answers(
                self.model, self.processor, prompts, images, len(prompts), max_new_tokens, **self.pruning_kwargs
            )
            for context, gen, answer in zip(contexts, all_gen_kwargs, batch):
                for stop in until:
                    answer = answer.split(stop)[0] if stop else answer
                answers.append(answer)
                self.cache_hook.add_partial("generate_until", (context, gen), answer)
        return collator.get_original(answers)

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise NotImplementedError("tprl answers by generation; tasks scored by log-likelihood are not supported.")

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("tprl answers one round per question; multi-round tasks are not supported.")


MANIFEST = ModelManifest(model_id="tprl", simple_class_path="tprl_eval.lmms_eval_model.TPRLLmms")
