"""Infidelity and max-sensitivity (Yeh et al. 2019) of a method's maps, through ``captum.metrics``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from protozoo.benchmark.maps import input_attributions
from protozoo.evaluate.posthoc import image_logits

NOISE_STD = 0.1  # infidelity's Gaussian perturbation, in normalised input units
SENSITIVITY_RADIUS = 0.02  # max-sensitivity's uniform perturbation radius (captum's default)


def faithfulness(
    method: str, model: nn.Module, images: Tensor, labels: Tensor, *, perturbations: int, seed: int = 0
) -> dict[str, float]:
    """Mean infidelity and max-sensitivity of ``method``'s maps of ``images`` for their true classes.

    Infidelity: ``E[(I . phi - (f(x) - f(x - I)))^2]`` over Gaussian perturbations ``I`` (std
    :data:`NOISE_STD`), with captum's ``normalize=True`` (the maps are scaled by the best
    factor first, so a map's unit does not count). Max-sensitivity: the largest Frobenius change of
    the map under uniform perturbations of radius :data:`SENSITIVITY_RADIUS`. Lower is better.

    Raises:
        ImportError: captum is not installed (``pip install 'protozoo[attribution]'``).
    """
    try:
        from captum.metrics import infidelity, sensitivity_max
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "infidelity and max-sensitivity need captum: pip install 'protozoo[attribution]' "
            "(or set faithfulness_samples=0)"
        ) from err
    generator = torch.Generator(device=images.device).manual_seed(seed)

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = NOISE_STD * torch.randn(inputs.shape, generator=generator, device=inputs.device)
        return noise, inputs - noise

    def explain(inputs, target: Tensor):
        if isinstance(inputs, tuple):  # sensitivity_max passes its inputs as a tuple, and wants one back
            return (input_attributions(method, model, inputs[0], target),)
        return input_attributions(method, model, inputs, target)

    def forward(inputs: Tensor) -> Tensor:
        return image_logits(model, inputs)

    torch.manual_seed(seed)  # sensitivity_max draws its perturbations from torch's global generator
    attributions = explain(images, labels)
    with torch.no_grad():
        scores = infidelity(
            forward, perturb, images, attributions, target=labels, n_perturb_samples=perturbations, normalize=True
        )  # (B,)
    sensitivity = sensitivity_max(
        explain, images, target=labels, n_perturb_samples=perturbations, perturb_radius=SENSITIVITY_RADIUS
    )  # (B,)
    return {"infidelity": scores.float().mean().item(), "max_sensitivity": sensitivity.float().mean().item()}
