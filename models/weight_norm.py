"""Legacy weight normalisation, as the released HiFi-GAN checkpoints store it.

Both KAN-TTS and jik876 checkpoints hold every conv as `weight_g` / `weight_v` (dim 0), the key
names of the legacy `torch.nn.utils.weight_norm`. The newer parametrization API would rename them,
so the generators use the legacy one and fold it into a plain `weight` before inference or export.
"""

import warnings

import torch
from torch import nn


def legacy_weight_norm(module: nn.Module) -> nn.Module:
    """Wrap `module` so its state_dict holds `weight_g` and `weight_v` instead of `weight`."""
    with warnings.catch_warnings():
        # Deprecated in favour of parametrizations, which would change the checkpoint keys.
        warnings.filterwarnings("ignore", message=".*weight_norm.*deprecated", category=FutureWarning)
        return torch.nn.utils.weight_norm(module)


def fold_weight_norm(model: nn.Module) -> None:
    """Replace every `weight_g`/`weight_v` pair in `model` by the plain weight g*v/|v| (in place)."""
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
