"""Stage 1 of TPRL: the state autoencoder, self-supervised on the frozen base's projected visual tokens.

The policy reads each visual token through the autoencoder's small latent (4096 -> 256 for LLaVA-1.5-7B,
128 -> 16 for the tiny digit-world base). The autoencoder is trained first, to reconstruct the tokens, and then
frozen as the policy's state encoder.
"""

import torch

from modeling_tprl import TPRLForConditionalGeneration

from .stage_trainer import PrunerStageTrainer


def relative_reconstruction_error(tokens: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Squared error over the tokens' own variance around their mean: 0 is perfect, 1 is no better than the mean."""
    centred = tokens - tokens.mean(dim=(0, 1), keepdim=True)
    return (reconstruction - tokens).pow(2).sum() / centred.pow(2).sum().clamp(min=1e-12)


class StateAutoencoderTrainer(PrunerStageTrainer):
    """
    Trains `model.pruner.autoencoder` to reconstruct the projected visual tokens of `model.base` (mean squared error);
    logs `autoencoder/relative_error` ([`relative_reconstruction_error`]).

    Args:
        model ([`TPRLForConditionalGeneration`]): the model whose autoencoder is trained in place.
        args ([`~transformers.TrainingArguments`]): the stage's arguments (`remove_unused_columns=False`).
        train_dataset: examples with images; `data_collator` turns them into a batch with `pixel_values`.
        **kwargs: the other `Trainer` arguments.
    """

    def __init__(self, model: TPRLForConditionalGeneration, args, **kwargs):
        super().__init__(model, args, trained_module="pruner.autoencoder", **kwargs)

    def stage_loss(self, model: TPRLForConditionalGeneration, inputs: dict) -> tuple[torch.Tensor, dict[str, float]]:
        autoencoder = model.pruner.autoencoder
        with torch.no_grad():
            image_inputs = model.image_inputs(inputs)
            tokens = model.visual_tokens(**image_inputs).to(autoencoder.encoder[1].weight.dtype)
            present = model.policy_present(image_inputs)  # an anyres family's slots: the images' tokens alone
            tokens = tokens if present is None else tokens[present.to(tokens.device)]
        _, reconstruction = autoencoder(tokens)
        loss = torch.nn.functional.mse_loss(reconstruction, tokens)
        relative = relative_reconstruction_error(tokens, reconstruction.detach()).item()
        return loss, {"autoencoder/relative_error": relative}
