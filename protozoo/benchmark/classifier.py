"""The plain classifier beside each ProtoPNet: the same timm backbone (same stage, same initial
weights), global average pooling and a linear layer, trained on the same loader for as many epochs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from protozoo.data.collate import to_device
from protozoo.serialization import load_strict, read_state_dict, write_state_dict
from protozoo.train.distributed import DistContext
from protozoo.train.loop import make_loader


class PlainClassifier(nn.Module):
    """``backbone -> mean over (H, W) -> linear``; ``backbone`` is what Grad-CAM explains
    (:func:`protozoo.evaluate.posthoc.default_target_layer` takes a model's ``backbone``)."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)  # (B, C, h, w)
        return self.classifier(features.mean(dim=(2, 3)))  # (B, K)


def train_classifier(
    model: PlainClassifier,
    train_data,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    frozen: list[nn.Parameter],
    lr: float = 1e-3,
    progress: bool = True,
    device: torch.device | None = None,
) -> list[dict[str, float]]:
    """Adam on every parameter but ``frozen``, cross-entropy, ``epochs`` passes over the loader
    ``fit`` would build (:func:`protozoo.train.loop.make_loader`: same order per seed and epoch,
    sharded under ``torchrun``). Returns one row per epoch (mean loss, accuracy over all ranks)."""
    ctx = DistContext.from_env()
    device = device or ctx.device()
    model.to(device).train()
    frozen_ids = {id(p) for p in frozen}
    for param in model.parameters():
        param.requires_grad_(id(param) not in frozen_ids)
    for module in model.modules():  # frozen stages keep their running statistics, as in fit
        if isinstance(module, nn.modules.batchnorm._NormBase) and not any(p.requires_grad for p in module.parameters()):
            module.eval()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    wrapped = ctx.wrap(model)
    torch.manual_seed(seed)
    history = []
    for epoch in range(epochs):
        loader = make_loader(
            train_data, ctx, batch_size=batch_size, shuffle=True, seed=seed, epoch=epoch, num_workers=0
        )
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, seen
        for batch in tqdm(
            loader, desc=f"classifier epoch {epoch}", disable=not (progress and ctx.is_main), leave=False
        ):
            batch = to_device(batch, device)
            logits = wrapped(batch["image"])
            loss = nn.functional.cross_entropy(logits, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            n = len(batch["label"])
            totals += torch.tensor([loss.item() * n, (logits.argmax(1) == batch["label"]).sum().item(), n])
        totals = ctx.all_reduce_sum(totals)
        history.append(
            {
                "epoch": epoch,
                "loss": totals[0].item() / max(totals[2].item(), 1),
                "accuracy": totals[1].item() / max(totals[2].item(), 1),
            }
        )
    for param in model.parameters():
        param.requires_grad_(True)
    return history


def save_classifier(model: PlainClassifier, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # no ProtoPNet run folder when no method explains it
    write_state_dict(model.state_dict(), path)


def load_classifier(model: PlainClassifier, path: Path) -> PlainClassifier:
    load_strict(model, read_state_dict(path), str(path))
    return model
