"""Which torchvision models and weights a transfer trial can use, checked on the driver before any trial starts:
the model list, ImageNet weights (downloaded into the torch cache once, or one error naming the file to copy), and
whether a model can take an image size (built on the meta device, no weights).

    ensure_weights("vgg19", "imagenet")      # WeightsError (a UserError) offline without the cached file
    check_input_size("vit_b_16", 32)          # UserError: vit_b_16 cannot take 32 px images ...

Imported by trainables/configs.py only when a transfer configuration is checked, and by trainables/backbones.py.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision

from trainables.errors import UserError


class WeightsError(UserError, RuntimeError):
    """Weights that cannot be loaded; the message names the file expected and the alternatives."""


def classification_models() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def imagenet_weights(name: str) -> torchvision.models.WeightsEnum:
    """IMAGENET1K_V1 where it exists: the weights `pretrained=True` gave, as the original study used."""
    enum = torchvision.models.get_model_weights(name)
    return getattr(enum, "IMAGENET1K_V1", enum.DEFAULT)


def weights_file(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights of `name` (the torch hub cache)."""
    url = imagenet_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def ensure_weights(name: str, weights: str) -> None:
    """On the driver, before any trial: make sure `weights` can be loaded (downloading ImageNet weights into
    the torch cache when online), else one WeightsError that says what to do."""
    if weights == "none":
        return
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise WeightsError(f"--weights {weights}: no such file. Use 'imagenet', 'none' (random init) or the "
                               f"path of a state_dict saved with torch.save(model.state_dict(), PATH)")
        return
    path = weights_file(name)
    if path.is_file():
        return
    try:
        print(f"downloading ImageNet weights for {name} into {path.parent} ...", flush=True)
        imagenet_weights(name).get_state_dict(progress=False, check_hash=True)
    except Exception as err:
        cause = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"ImageNet weights for {name} are not cached and could not be downloaded ({cause}). Expected the file "
            f"{path} (from {imagenet_weights(name).url}): copy it there, or run with --weights none (random init, "
            f"for tests and offline demos) or --weights PATH (a local state_dict file)") from None


@functools.lru_cache(maxsize=None)
def check_input_size(name: str, image_size: int) -> None:
    """One `UserError` line when `name` cannot take `image_size` px inputs (a ViT is built for one size, small
    CNNs pool an image away). Shapes only: the model is built and run on the meta device, with no weights."""
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
        try:
            model.eval()(torch.zeros(1, 3, image_size, image_size))
        except Exception as err:  # torchvision's own assertion or a shape error says why
            why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            fixed = getattr(model, "image_size", None)
            fix = f"--image-size {fixed}" if isinstance(fixed, int) else "a larger --image-size (224 works for all)"
            raise UserError(f"model {name} cannot take {image_size} px images ({why}): pass {fix}") from None
