# Copyright 2026 The tprl authors.

"""The image-text-to-text pipeline with a TPRL model's per-call pruning arguments."""

from transformers.pipelines.image_text_to_text import ImageTextToTextPipeline


PRUNING_ARGUMENTS = ("keep_ratio", "num_kept_tokens", "pruning_method")


class TPRLImageTextToTextPipeline(ImageTextToTextPipeline):
    """
    transformers' `ImageTextToTextPipeline`, but the pruning arguments of a call (`keep_ratio`, `num_kept_tokens`,
    `pruning_method`) reach the model's `generate` instead of the processor, which does not know them:

    ```python
    >>> pipe = pipeline("image-text-to-text", model="path/to/tprl-checkpoint", pipeline_class=TPRLImageTextToTextPipeline)
    >>> pipe(text=messages, keep_ratio=0.25, max_new_tokens=20)
    ```

    (The plain pipeline takes them as `generate_kwargs={"keep_ratio": 0.25}`.)
    """

    def _sanitize_parameters(self, generate_kwargs=None, **kwargs):
        pruning = {name: kwargs.pop(name) for name in PRUNING_ARGUMENTS if kwargs.get(name) is not None}
        if pruning:
            generate_kwargs = {**(generate_kwargs or {}), **pruning}
        return super()._sanitize_parameters(generate_kwargs=generate_kwargs, **kwargs)
