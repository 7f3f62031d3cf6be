"""The ProtoPNet head against a plain recomputation of Chen et al. 2019's formulas, with loops."""

import math

import pytest
import torch
from torch import nn

import protozoo
from protozoo.heads._layers import make_add_on
from protozoo.similarity import cosine_distance_maps, make_similarity, squared_l2_maps


@pytest.fixture
def tiny():
    model = protozoo.create_model("protopnet_resnet18", num_classes=3, prototypes_per_class=2, prototype_dim=8).eval()
    return model


def loop_forward(model, x):
    """Every formula of the paper, one patch and one prototype at a time."""
    z = model.latent(x)  # (B, D, H, W)
    protos = model.prototypes.detach()
    B, D, H, W = z.shape
    P = protos.shape[0]
    dist = torch.zeros(B, P, H, W, dtype=torch.float64)
    for b in range(B):
        for p in range(P):
            for h in range(H):
                for w in range(W):
                    diff = z[b, :, h, w].double() - protos[p].double()
                    dist[b, p, h, w] = (diff * diff).sum()
    min_d = torch.zeros(B, P, dtype=torch.float64)
    for b in range(B):
        for p in range(P):
            min_d[b, p] = min(dist[b, p, h, w] for h in range(H) for w in range(W))
    sim = torch.log((min_d + 1) / (min_d + 1e-4))
    weight = model.last_layer.weight.detach().double()  # (K, P)
    logits = torch.zeros(B, weight.shape[0], dtype=torch.float64)
    for b in range(B):
        for k in range(weight.shape[0]):
            logits[b, k] = sum(weight[k, p] * sim[b, p] for p in range(P))
    return dist, min_d, sim, logits


def test_head_equals_loop_recomputation(tiny):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = tiny(x)
        dist, min_d, sim, logits = loop_forward(tiny, x)
    torch.testing.assert_close(out.distance_maps.double(), dist, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.min_distances.double(), min_d, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.similarities.double(), sim, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out.logits.double(), logits, atol=1e-3, rtol=1e-4)
    assert torch.allclose(tiny.distance_maps(x), out.distance_maps)
    assert torch.allclose(tiny.similarity_maps(x).amax(dim=(2, 3)), out.similarities, atol=1e-5)


def test_prototype_classes_are_contiguous_blocks_and_last_layer_init(tiny):
    assert tiny.prototype_class.tolist() == [0, 0, 1, 1, 2, 2]
    assert tiny.num_prototypes == 6 and tiny.num_classes == 3
    weight = tiny.last_layer.weight  # (K, P)
    assert tiny.last_layer.bias is None
    for k in range(3):
        for p in range(6):
            assert weight[k, p].item() == (1.0 if tiny.prototype_class[p] == k else -0.5)


def test_prototypes_uniform_init():
    model = protozoo.create_model("protopnet_resnet18", num_classes=20, prototypes_per_class=10)
    protos = model.prototypes
    assert protos.shape == (200, 128)
    assert protos.min() >= 0 and protos.max() < 1
    assert abs(protos.mean().item() - 0.5) < 0.01  # U[0, 1)


def test_bottleneck_add_on_halves_to_depth_and_ends_in_sigmoid():
    add_on = make_add_on("bottleneck", 512, 128)
    convs = [m for m in add_on if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(512, 256), (256, 256), (256, 128), (128, 128)]
    assert isinstance(add_on[-1], nn.Sigmoid)
    assert sum(isinstance(m, nn.Sigmoid) for m in add_on) == 1
    assert all(c.kernel_size == (1, 1) and c.bias.abs().sum() == 0 for c in convs)


def test_regular_add_on():
    add_on = make_add_on("regular", 320, 64)
    kinds = [type(m) for m in add_on]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.Sigmoid]
    assert add_on[0].in_channels == 320 and add_on[2].out_channels == 64


def test_distances_clamped_at_zero_and_zero_on_a_prototype():
    z = torch.rand(1, 4, 3, 3)
    protos = z[0, :, 1, 2][None].clone()  # a prototype equal to one patch
    d = squared_l2_maps(z, protos)
    assert d.min() >= 0
    assert d[0, 0, 1, 2] < 1e-6


@pytest.mark.parametrize(
    "name,expected",
    [
        ("log", lambda d: math.log((d + 1) / (d + 1e-4))),
        ("linear", lambda d: -d),
        ("exp", lambda d: math.exp(-d / 2.0)),
    ],
)
def test_similarity_formulas(name, expected):
    _, activation = make_similarity(name, temperature=2.0)
    for d in (0.0, 0.3, 5.0):
        assert activation(torch.tensor(d)).item() == pytest.approx(expected(d), rel=1e-5)


def test_cosine_similarity_is_cosine():
    z = torch.randn(1, 5, 2, 2)
    protos = torch.randn(3, 5)
    distance, activation = make_similarity("cosine")
    sim = activation(distance(z, protos))
    expected = torch.nn.functional.cosine_similarity(z[0, :, 1, 0][None], protos, dim=1)
    torch.testing.assert_close(sim[0, :, 1, 0], expected, atol=1e-5, rtol=1e-5)
    assert distance is cosine_distance_maps


@pytest.mark.parametrize("similarity", ["linear", "exp", "cosine"])
def test_other_similarities_higher_means_closer(similarity):
    model = protozoo.create_model("protopnet_resnet18", num_classes=2, prototypes_per_class=1, similarity=similarity)
    x = torch.randn(1, 3, 64, 64)
    maps_d = model.distance_maps(x)
    maps_s = model.similarity_maps(x)
    flat_d, flat_s = maps_d.flatten(), maps_s.flatten()
    assert torch.equal(flat_d.argmin(), flat_s.argmax())


def test_unknown_similarity_and_add_on():
    with pytest.raises(ValueError, match="unknown similarity 'l3'.*log"):
        protozoo.create_model("protopnet_resnet18", similarity="l3")
    with pytest.raises(ValueError, match="unknown add-on 'deep'.*bottleneck"):
        protozoo.create_model("protopnet_resnet18", add_on="deep")
