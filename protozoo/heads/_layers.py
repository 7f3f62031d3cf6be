"""Add-on layers between a backbone and the prototype layer (Chen et al. 2019)."""

from __future__ import annotations

from torch import nn

ADD_ON_TYPES = ("bottleneck", "regular")


def make_add_on(kind: str, in_channels: int, prototype_dim: int, *, norm: bool = False) -> nn.Sequential:
    """Build ProtoPNet's add-on layers, 1x1 convolutions that end in a sigmoid.

    Args:
        kind: ``"regular"``: conv(C->D), ReLU, conv(D->D), sigmoid. ``"bottleneck"``: pairs of 1x1
            convs that halve the channels down to D, ReLU between, a sigmoid after the last.
        in_channels: Backbone channels C.
        prototype_dim: Latent depth D (the prototypes' depth).
        norm: Standardise the backbone features first (a BatchNorm over the C channels). timm's
            intermediate stages are pre-activation maps of arbitrary scale (std ~6 at
            efficientnet_lite0's stride-16 stage), which saturate the final sigmoid at 0 / 1 so
            that little gradient reaches the backbone; the reference code read final,
            post-ReLU layers of moderate scale and needed no such layer.

    Returns:
        The layers, Kaiming-initialised (fan-out, ReLU) with zero biases, as in the reference code.
    """
    if kind == "regular":
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, prototype_dim, 1),
            nn.ReLU(),
            nn.Conv2d(prototype_dim, prototype_dim, 1),
            nn.Sigmoid(),
        ]
    elif kind == "bottleneck":
        layers = []
        channels = in_channels
        while channels > prototype_dim or not layers:
            out = max(prototype_dim, channels // 2)
            layers += [nn.Conv2d(channels, out, 1), nn.ReLU(), nn.Conv2d(out, out, 1)]
            layers.append(nn.ReLU() if out > prototype_dim else nn.Sigmoid())
            channels = out
    else:
        raise ValueError(f"unknown add-on {kind!r}; choose one of {', '.join(ADD_ON_TYPES)}")
    if norm:
        layers.insert(0, nn.BatchNorm2d(in_channels))
    add_on = nn.Sequential(*layers)
    for module in add_on.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return add_on
