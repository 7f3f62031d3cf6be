"""Receptive-field boxes: cached boxes are the probed ones, and the probe is the per-cell gradient support."""

import pytest
import torch

import protozoo
from protozoo.push import mask_boxes
from protozoo.receptive_field import cache_key, clear_cache, probe_receptive_field_boxes, receptive_field_boxes


def per_cell_probe(model, cells, input_size):
    """The plain definition, one backward pass per cell: the support of d(projection . z[:, h, w]) / dx."""
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, model.config.in_chans, *input_size, generator=generator)
    projection = torch.randn(model.prototypes.shape[1], generator=generator)
    boxes = []
    for h, w in cells.tolist():
        x = probe.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((model.latent(x)[0, :, h, w] * projection).sum(), x)
        boxes.append(mask_boxes(grad.abs().sum(dim=1) > 0))
    return torch.cat(boxes)


def some_cells(model, size, n=8):
    """The four corners, and cells drawn at random: n in all (in the test's seeded order)."""
    with torch.no_grad():
        h, w = model.latent(torch.zeros(1, model.config.in_chans, size, size)).shape[2:]
    corners = torch.tensor([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]])
    drawn = torch.stack([torch.randint(h, (n - 4,)), torch.randint(w, (n - 4,))], dim=1)
    return torch.cat([corners, drawn])


# (arch, feature stage, input px): boxes smaller than the image on CNNs, the whole image on a ViT
CASES = [
    ("protopnet_resnet18", 2, 64),
    ("protopnet_efficientnet_lite0", 2, 64),
    ("protopnet_vgg16", 2, 48),
    ("protopnet_vit_tiny", -1, 32),
]


@pytest.mark.parametrize("arch,stage,size", CASES)
def test_cached_boxes_equal_the_probed_ones(arch, stage, size):
    clear_cache()
    model = protozoo.create_model(arch, num_classes=2, prototypes_per_class=1, feature_stage=stage).eval()
    cells = some_cells(model, size)
    expected = per_cell_probe(model, cells, (size, size))
    assert torch.equal(probe_receptive_field_boxes(model, cells, (size, size)), expected)
    some = cells[1::2]
    assert torch.equal(receptive_field_boxes(model, some, (size, size)), per_cell_probe(model, some, (size, size)))
    # the rest comes from the cache and fresh probes together, in the order asked, repeats included
    both = torch.cat([cells, cells[:3]])
    assert torch.equal(receptive_field_boxes(model, both, (size, size)), torch.cat([expected, expected[:3]]))


def test_boxes_do_not_depend_on_generic_weights():
    """What makes the cache valid: other nonzero weights, the same boxes ."""
    clear_cache()
    torch.manual_seed(0)
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1, feature_stage=2).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # timm zero-inits each block's last BN scale: make it nonzero
    cells, size = some_cells(model, 64), (64, 64)
    key = cache_key(model, size)
    cached = receptive_field_boxes(model, cells, size)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1 + torch.randn_like(p) * 0.5)  # trained-like: other weights, none exactly zero
    assert cache_key(model, size) == key
    assert torch.equal(receptive_field_boxes(model, cells, size), per_cell_probe(model, cells, size))
    assert torch.equal(cached, per_cell_probe(model, cells, size))


def test_zeroed_weights_are_another_key():
    """A ResNet at timm's init (each block's last BN scale zero) reads less: its boxes are not reused."""
    clear_cache()
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1, feature_stage=2).eval()
    cells, size = some_cells(model, 64), (64, 64)
    at_init = receptive_field_boxes(model, cells, size)
    with torch.no_grad():
        for _name, p in model.named_parameters():
            if not p.any():
                p.fill_(0.5)
    trained = receptive_field_boxes(model, cells, size)
    assert torch.equal(trained, per_cell_probe(model, cells, size))
    assert (trained[:, 2] - trained[:, 0]).sum() > (at_init[:, 2] - at_init[:, 0]).sum()  # residual branches read more
