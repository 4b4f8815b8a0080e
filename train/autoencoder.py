"""Stage 1 of TPRL: the state autoencoder, self-supervised on the frozen base's projected visual tokens.

The policy reads each visual token through the autoencoder's small latent (4096 -> 256 for LLaVA-1.5-7B,
128 -> 16 for the tiny digit-world base). The autoencoder is trained first, to reconstruct the tokens, and then
frozen as the policy's state encoder.
"""

from collections.abc import Iterator

import torch
from tqdm.auto import tqdm

from modeling_tprl import TPRLForConditionalGeneration


def relative_reconstruction_error(tokens: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Squared error over the tokens' own variance around their mean: 0 is perfect, 1 is no better than the mean."""
    centred = tokens - tokens.mean(dim=(0, 1), keepdim=True)
    return (reconstruction - tokens).pow(2).sum() / centred.pow(2).sum().clamp(min=1e-12)


def train_state_autoencoder(
    model: TPRLForConditionalGeneration,
    pixel_batches: Iterator[torch.Tensor],
    num_steps: int,
    learning_rate: float = 1e-3,
    log_every: int = 50,
) -> list[dict]:
    """
    Trains `model.pruner.autoencoder` to reconstruct the projected visual tokens of `model.base`, which stays frozen.

    Args:
        model ([`TPRLForConditionalGeneration`]): the model whose autoencoder is trained in place.
        pixel_batches (`Iterator[torch.Tensor]`): `pixel_values` batches, as the base's image processor gives them.
        num_steps (`int`): optimiser steps.
        learning_rate (`float`): AdamW learning rate (cosine decay to 0).
        log_every (`int`): steps between log records.

    Returns:
        `list[dict]`: the log, one record per `log_every` steps: `step`, `loss` (mean squared error) and
        `relative_error` (see [`relative_reconstruction_error`]).
    """
    autoencoder = model.pruner.autoencoder
    autoencoder.train()
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_steps)
    dtype = next(autoencoder.parameters()).dtype
    log = []
    progress = tqdm(range(num_steps), desc="state autoencoder")
    for step in progress:
        with torch.no_grad():
            tokens = model.get_image_features(next(pixel_batches).to(model.device)).to(dtype)
        _, reconstruction = autoencoder(tokens)
        loss = torch.nn.functional.mse_loss(reconstruction, tokens)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if (step + 1) % log_every == 0 or step + 1 == num_steps:
            relative = relative_reconstruction_error(tokens, reconstruction.detach()).item()
            log.append({"step": step + 1, "loss": round(loss.item(), 6), "relative_error": round(relative, 4)})
            progress.set_postfix(relative_error=round(relative, 4))
    autoencoder.requires_grad_(False)
    autoencoder.eval()
    return log
