"""The model the main job trains, as TRL's `ModelConfig` describes the model a TRL script trains: the frozen base
LLaVA to load and the pruner's architecture. The pruner fields are `TPRLConfig`'s own (generated from it, so that
each is declared, defaulted and validated in one place); YAML configs and the command line set them."""

import dataclasses
import os
import typing
from dataclasses import dataclass, field

from modeling_tprl import TPRLConfig
from tprl_digit_world import EMBEDDED_BASE_PATH, require_embedded_base
from tprl_eval.command_line import check_model_argument


# TPRLConfig's own fields, but the base's config (read from the base), the checkpoint format (chosen at saving) and
# the adaptive policy's operating points (measured after training).
PRUNER_FIELDS = [
    model_field
    for model_field in dataclasses.fields(TPRLConfig)
    if model_field.name in TPRLConfig.__annotations__
    and model_field.name not in ("base_config", "pruner_only", "adaptive_operating_points")
]


@dataclass
class _ModelLoading:
    dtype: str = field(default="float32", metadata={"help": "dtype of the frozen base, e.g. 'bfloat16'."})

    def __post_init__(self):
        require_embedded_base(self.base_model_name_or_path, "--base_model_name_or_path")
        check_model_argument(self.base_model_name_or_path, "--base_model_name_or_path")
        if os.path.isdir(self.base_model_name_or_path):  # the checkpoints then name a base that loads from anywhere
            self.base_model_name_or_path = os.path.abspath(self.base_model_name_or_path)
        TPRLConfig(**self.tprl_config_kwargs())  # a bad pruner field fails before any stage

    def tprl_config_kwargs(self) -> dict:
        """The `TPRLConfig` fields set here, for `TPRLForConditionalGeneration.from_base`."""
        return {model_field.name: getattr(self, model_field.name) for model_field in PRUNER_FIELDS}


def _command_line_type(annotation):
    """The field's type as the argument parser reads it: one type or None (`float | int | None` -> `float | None`)."""
    members = typing.get_args(annotation)
    if float in members and int in members:
        return float | None if type(None) in members else float
    return annotation


TPRLModelConfig = dataclasses.make_dataclass(
    "TPRLModelConfig",
    [
        (
            model_field.name,
            _command_line_type(model_field.type),
            field(
                default=EMBEDDED_BASE_PATH if model_field.name == "base_model_name_or_path" else model_field.default,
                metadata={"help": f"TPRLConfig.{model_field.name} (see its docstring)."},
            ),
        )
        for model_field in PRUNER_FIELDS
    ],
    bases=(_ModelLoading,),
)
TPRLModelConfig.__module__ = __name__
TPRLModelConfig.__doc__ = """
    The base LLaVA (`base_model_name_or_path`: a llava-hf directory or Hub id, the embedded default if unset; `dtype`)
    and every field of [`TPRLConfig`] that describes the pruner, with `TPRLConfig`'s defaults.
    """
