"""Local explanations: which prototypes made a model decide what it decided, and where they matched.

    explanation = protozoo.explain(model, image, top_k=5)
    explanation.class_name, explanation.probability
    for ev in explanation.prototypes:
        ev.index, ev.similarity, ev.weight, ev.contribution, ev.heatmap, ev.box, ev.source

For a ProtoPNet the logit of class c is ``sum_p similarity_p * w[c, p]`` (bias-free last layer), so
the *contribution* of prototype p to class c is ``similarity_p * w[c, p]`` and the contributions of
all prototypes add up to the logit exactly. The top-k prototypes are those with the largest
(signed) contribution to the explained class: the strongest evidence *for* it.

One forward pass per batch: heatmaps reuse the output's distance maps (no second pass through the
backbone; the lesion head's ``lesion_maps`` is the one exception). The explainer is the model's
family's (``Family.explainer``, :mod:`protozoo.family`): :func:`explain_protopnet`,
:func:`explain_braix` (both branches and the ensemble), :func:`explain_multiview`
(``explain(model, (cc, mlo))``, per-view maps and the co-occurrence block) and
:func:`explain_lesion` (lesions found, lesion maps, the diagnosis decomposed over lesions). See
docs/explain.md.

Boxes are half-open pixel boxes ``[x0, y0, x1, y1]`` of the input: ``image[..., y0:y1, x0:x1]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from protozoo.boxes import HIGH_ACTIVATION_PERCENTILE, high_activation_box
from protozoo.data.transforms import resolve_data_config
from protozoo.family import family_of, output_class_names
from protozoo.intended_use import intended_use
from protozoo.ood import OODNote, assess, capture_latents
from protozoo.outputs import BRAIxOutput, LesionOutput, MultiViewOutput, ProtoOutput
from protozoo.resample import upsample_bicubic

__all__ = [
    "HIGH_ACTIVATION_PERCENTILE",
    "LESION_FOUND_PROBABILITY",
    "CooccurrenceEvidence",
    "Explanation",
    "LesionEvidence",
    "OODNote",
    "PrototypeEvidence",
    "ViewEvidence",
    "explain",
    "explain_batch",
    "explain_braix",
    "explain_lesion",
    "explain_multiview",
    "explain_protopnet",
    "high_activation_box",
    "upsample_maps",
]

LESION_FOUND_PROBABILITY = 0.5  # a lesion is "found" at sigmoid(lesion logit) >= this

Box = tuple[int, int, int, int]


@dataclass
class PrototypeEvidence:
    """One prototype's part in a decision.

    Attributes:
        index: Prototype index p.
        class_idx: Class the prototype belongs to.
        class_name: Its name (``str(class_idx)`` without label names).
        similarity: Max-pooled similarity of the prototype to the image.
        weight: Last-layer weight ``w[c, p]`` to the explained class c.
        contribution: ``similarity * weight``: what the prototype adds to the logit of c.
        heatmap: (H, W) similarity map upsampled bicubically to the input size.
        box: ``[x0, y0, x1, y1]`` bounding box of the heatmap's top 5% (see :func:`high_activation_box`).
        source: The prototype's provenance row (where it was pushed from), or None before a push.
    """

    index: int
    class_idx: int
    class_name: str
    similarity: float
    weight: float
    contribution: float
    heatmap: Tensor
    box: Box
    source: dict[str, Any] | None


@dataclass
class ViewEvidence(PrototypeEvidence):
    """A multi-view prototype's evidence: its match in each present view of the breast.

    ``similarity`` is the view-max similarity the breast-level last layer reads, and ``heatmap``
    / ``box`` are those of the view it comes from (``view``).

    Attributes:
        view: The view the prototype fired in (``"cc"`` or ``"mlo"``): where its similarity is highest.
        view_similarities: ``{view: similarity}`` of the present views.
        view_heatmaps: ``{view: (H, W) heatmap}`` of the present views, at the input size.
        view_boxes: ``{view: box}`` of the present views.
    """

    view: str = "cc"
    view_similarities: dict[str, float] = field(default_factory=dict)
    view_heatmaps: dict[str, Tensor] = field(default_factory=dict)
    view_boxes: dict[str, Box] = field(default_factory=dict)


@dataclass
class CooccurrenceEvidence:
    """One prototype's cross-view co-occurrence evidence (the multi-view head's second last-layer block).

    Attributes:
        index: Prototype index p.
        class_idx: Class the prototype belongs to.
        class_name: Its name.
        score: Co-occurrence score of p: it fires in one view at the place the other view attends to.
        weight: Co-occurrence weight ``w_co[c, p]`` to the explained class c.
        contribution: ``score * weight``.
    """

    index: int
    class_idx: int
    class_name: str
    score: float
    weight: float
    contribution: float


@dataclass
class LesionEvidence:
    """One lesion type's part in a lesion-head diagnosis.

    Attributes:
        index: Lesion index l (the prototype class of its prototypes).
        name: Lesion name.
        probability: ``sigmoid(lesion logit)``: how sure the model is the lesion is present.
        found: ``probability >= LESION_FOUND_PROBABILITY``.
        weight: Non-negative diagnosis weight ``softplus(V)[c, l]`` to the explained class c.
        contribution: ``weight * probability``: what the lesion adds to the diagnosis logit of c.
        lesion_map: (H, W) the lesion's map at the input size (``model.lesion_maps``: in [0, 1],
            scaled together with the image's other lesion maps).
        prototypes: The top prototypes by contribution ``similarity * W[l, p]`` to the lesion's
            logit, largest first.
        logit: The lesion's logit, ``sum_p similarity_p * W[l, p] + lesion_bias``.
        lesion_bias: Its bias (the lesion prior's logit, learnt).
    """

    index: int
    name: str
    probability: float
    found: bool
    weight: float
    contribution: float
    lesion_map: Tensor
    prototypes: list[PrototypeEvidence]
    logit: float = 0.0
    lesion_bias: float = 0.0


@dataclass
class Explanation:
    """Why a model classified one image as it did.

    Attributes:
        predicted: Predicted class (argmax of the logits).
        predicted_name: Its name.
        class_idx: The explained class (``predicted`` unless another was asked for).
        class_name: Its name.
        probabilities: (K,) class probabilities (softmax of the logits).
        logit: Logit of the explained class; equals ``contributions.sum() + bias`` (plus
            ``cooccurrence_contributions.sum()`` for the multi-view head).
        contributions: (P,) contribution of every prototype to the explained class's logit; (L,)
            of every lesion for the lesion head.
        prototypes: The top-k prototypes by contribution, largest first (:class:`ViewEvidence`
            for the multi-view head; for the lesion head, those of the found lesions by their
            contribution to their lesion's logit).
        image: (C, H, W) the normalised input, on the CPU (the CC view, or MLO without CC).
        mean: Per-channel normalisation mean (to de-normalise ``image`` for display).
        std: Per-channel normalisation std.
        family: Name of the model's family (:mod:`protozoo.family`), whose explainer made it.
        prototype_kind: What a prototype class is: ``"class"``, or ``"lesion"`` for the lesion head.
        bias: The logit's bias (the lesion head's diagnosis bias ``c``; 0 for the others).
        branch_probabilities: BRAIxProtoPNet++: ``{"global", "prototype", "ensemble"}`` -> (K,)
            probabilities; ``logit`` and ``contributions`` are the prototype branch's.
        view_images: Multi-view: ``{view: (C, H, W)}`` of the present views.
        cooccurrence_contributions: Multi-view: (P,) ``cooccurrence * w_co[c]``.
        cooccurrence: Multi-view: the top-k co-occurrence evidence (empty without both views).
        lesions: Lesion head: every lesion type, in the model's order.
        lesion_maps: Lesion head: (L, H, W) ``model.lesion_maps`` of the image.
        class_names: (K,) every class's name, in logit order.
        class_logits: (K,) every class's logit (the ensemble's log-probabilities for BRAIxProtoPNet++).
        diagnosis_weight: Lesion head: (K, L) the diagnosis weights the head applies (non-negative;
            the healthy class's row 0), read from ``model.head.diagnosis.weight``.
        diagnosis_bias: Lesion head: (K,) the diagnosis biases.
        healthy_class: Lesion head: the class that takes no lesion evidence (None: every class may).
        true_class: The item's true class when the caller gave it (``explain(..., label=...)``), else None.
        true_name: Its name.
        intended_use: The model's intended-use line (:func:`protozoo.intended_use.intended_use`), or None.
        ood: Where the input stands against the training data (:mod:`protozoo.ood`).
    """

    predicted: int
    predicted_name: str
    class_idx: int
    class_name: str
    probabilities: Tensor
    logit: float
    contributions: Tensor
    prototypes: list[PrototypeEvidence]
    image: Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    family: str = "protopnet"
    prototype_kind: str = "class"
    extra: dict[str, Any] = field(default_factory=dict)
    bias: float = 0.0
    branch_probabilities: dict[str, Tensor] | None = None
    view_images: dict[str, Tensor] | None = None
    cooccurrence_contributions: Tensor | None = None
    cooccurrence: list[CooccurrenceEvidence] | None = None
    lesions: list[LesionEvidence] | None = None
    lesion_maps: Tensor | None = None
    class_logits: Tensor | None = None
    class_names: list[str] | None = None
    diagnosis_weight: Tensor | None = None
    diagnosis_bias: Tensor | None = None
    healthy_class: int | None = None
    true_class: int | None = None
    true_name: str | None = None
    intended_use: str | None = None
    ood: OODNote | None = None

    @property
    def probability(self) -> float:
        """Probability of the predicted class."""
        return float(self.probabilities[self.predicted])


Inputs = Tensor | tuple[Tensor | None, ...]  # one image batch, or one batch per view (None: a missing view)


def explain(
    model: Any,
    image: Tensor | Sequence[Tensor | None] | Mapping[str, Tensor | None],
    top_k: int = 5,
    *,
    class_idx: int | None = None,
    label: int | None = None,
) -> Explanation:
    """Explain one image: predicted class, probabilities and the top-k prototypes' evidence.

    Args:
        model: A protozoo model.
        image: (C, H, W) or (1, C, H, W) image, normalised as the model expects. For a multi-view
            model, the breast's views: ``(cc, mlo)`` or ``{"cc": cc, "mlo": mlo}``, either None.
        top_k: How many prototypes to report (at most all of them).
        class_idx: Explain this class's logit instead of the predicted one's.
        label: The image's true class, if known: pictures and reports print it beside the prediction.

    Returns:
        An :class:`Explanation`.
    """
    views = _model_inputs(model, image)
    for x in views:
        if x is not None and x.ndim not in (3, 4):
            raise ValueError(f"explain takes one image (C, H, W) or (1, C, H, W), got shape {tuple(x.shape)}")
        if x is not None and x.ndim == 4 and x.shape[0] != 1:
            raise ValueError(f"explain takes one image (C, H, W), got a batch {tuple(x.shape)}; use explain_batch")
    batched = tuple(None if x is None else x if x.ndim == 4 else x[None] for x in views)
    return explain_batch(
        model,
        batched[0] if isinstance(image, Tensor) else batched,
        top_k,
        class_idx=class_idx,
        labels=None if label is None else [label],
    )[0]


def explain_batch(
    model: Any,
    images: Tensor | Sequence[Tensor | None] | Mapping[str, Tensor | None],
    top_k: int = 5,
    *,
    class_idx: int | Sequence[int | None] | None = None,
    labels: Sequence[int | None] | None = None,
) -> list[Explanation]:
    """Explain a batch with one forward pass (see :func:`explain`).

    Args:
        model: A protozoo model; run in eval mode (its mode is restored afterwards).
        images: (B, C, H, W) normalised images; for a multi-view model ``(cc, mlo)`` or
            ``{"cc": cc, "mlo": mlo}`` batches, either None.
        top_k: How many prototypes to report per image.
        class_idx: One class for all images, one per image (None entries: the predicted class), or None.
        labels: The images' true classes (None entries: unknown), or None.

    Returns:
        One :class:`Explanation` per image (breast).
    """
    inputs = _model_inputs(model, images)
    count = len(next(x for x in inputs if x is not None)) if any(x is not None for x in inputs) else 0
    requested = list(class_idx) if isinstance(class_idx, Sequence) else [class_idx] * count
    if len(requested) != count:
        raise ValueError(f"got {len(requested)} class indices for {count} images")
    for c in requested:
        _check_class(model, c)
    truth = [None] * count if labels is None else list(labels)
    if len(truth) != count:
        raise ValueError(f"got {len(truth)} labels for {count} images")
    for t in truth:
        _check_class(model, t, "label")
    truth = [None if t is None else int(t) for t in truth]
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(f"top_k must be a positive whole number of prototypes to show, got {top_k!r}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            family = family_of(model)
            with capture_latents(model) as latents:  # the OOD statistic from this one forward pass
                output = model(*inputs)
            notes = assess(model, latents, count)
            explanations = family.resolved("explainer")(
                model, output, inputs[0] if len(family.input_names) == 1 else inputs, top_k, requested
            )
    finally:
        model.train(was_training)
    names, use = output_class_names(model), intended_use(model)
    for b, explanation in enumerate(explanations):
        explanation.family, explanation.prototype_kind = family.name, family.prototype_kind
        explanation.class_logits, explanation.class_names = output.logits[b].detach().float().cpu(), list(names)
        explanation.intended_use, explanation.ood = use, notes[b]
        if truth[b] is not None:
            explanation.true_class, explanation.true_name = truth[b], names[truth[b]]
    return explanations


def _model_inputs(model: Any, images: Any) -> tuple[Tensor | None, ...]:
    """The model's positional inputs: ``(images,)``, the tuple given, or a dict in the family's input order."""
    if isinstance(images, Mapping):
        names = family_of(model).input_names
        unknown = set(images) - set(names)
        if unknown:
            raise ValueError(f"unknown inputs {sorted(unknown)}; this model reads {list(names)}")
        images = tuple(images.get(name) for name in names)
    elif not isinstance(images, (list, tuple)):
        images = (images,)
    inputs = tuple(_as_tensor(x) for x in images)
    if all(x is None for x in inputs):
        raise ValueError("explain got no image (None); pass a (C, H, W) tensor normalised as the model expects")
    return inputs


HOW_TO_READ = (
    "read and transform it as the model expects: protozoo.data.build_transforms("
    "protozoo.data.resolve_data_config(model), train=False)({'image': protozoo.data.read_image(path)})['image']"
)


def _as_tensor(x: Any) -> Tensor | None:
    """A tensor, None (a missing view), or a float numpy array as a tensor; anything else is refused."""
    if x is None or isinstance(x, Tensor):
        return x
    if type(x).__module__ == "numpy" and getattr(x, "dtype", None) is not None and x.dtype.kind == "f":
        return torch.from_numpy(x)
    what = type(x).__module__.split(".")[0] + "." + type(x).__name__
    if hasattr(x, "dtype"):
        what += f" of dtype {x.dtype}"
    raise ValueError(
        f"explain takes a (C, H, W) float tensor normalised as the model expects, got a {what}; {HOW_TO_READ}"
    )


def _check_class(model: Any, c: Any, what: str = "class_idx") -> None:
    """A requested class (or a true label) must be a class index of the model (no negative or
    fractional index, no bool)."""
    if c is None:
        return
    if isinstance(c, Tensor) and c.numel() == 1 and not c.is_floating_point():
        c = int(c)
    if isinstance(c, bool) or not isinstance(c, numbers.Integral) or not 0 <= c < model.num_classes:
        names = output_class_names(model)
        meaning = "for the predicted class" if what == "class_idx" else "when unknown"
        raise ValueError(
            f"{what} must be a class index 0..{model.num_classes - 1} ({', '.join(names)}) or None {meaning}, got {c!r}"
        )


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., h, w) maps -> (..., H, W), bicubic (``align_corners=False``), as ProtoPNet upsamples
    (:func:`protozoo.resample.upsample_bicubic`, the one upsampler push and the evaluators use)."""
    return upsample_bicubic(maps, size)


def _top_evidence(
    model: Any,
    similarities: Tensor,
    distance_maps: Tensor,
    weight: Tensor,
    k: int,
    size: tuple[int, int],
    names: list[str],
    among: Tensor | None = None,
) -> list[PrototypeEvidence]:
    """The k prototypes with the largest ``similarity * weight``, largest first, with heatmaps and boxes.

    Args:
        model: The model (its activation, prototype classes and provenance).
        similarities: (P,) max-pooled similarities of one image.
        distance_maps: (P, h, w) its distance maps.
        weight: (P,) last-layer weights to the explained output.
        k: How many.
        size: (H, W) input size of the heatmaps.
        names: Names of the prototype classes.
        among: (M,) indices of the candidate prototypes; None: all of them.
    """
    contributions = similarities * weight  # (P,)
    candidates = torch.arange(contributions.numel(), device=contributions.device) if among is None else among  # (M,)
    top = candidates[contributions[candidates].topk(min(k, candidates.numel())).indices]  # (k,), largest first
    heatmaps = upsample_maps(model.head.activation(distance_maps[top]), size).cpu()  # (k, H, W)
    prototype_class = model.prototype_class.tolist()  # (P,)
    provenance = model.provenance
    return [
        PrototypeEvidence(
            index=p,
            class_idx=prototype_class[p],
            class_name=names[prototype_class[p]],
            similarity=float(similarities[p]),
            weight=float(weight[p]),
            contribution=float(contributions[p]),
            heatmap=heatmap,
            box=high_activation_box(heatmap),
            source=provenance[p] if provenance is not None else None,
        )
        for p, heatmap in zip(top.tolist(), heatmaps)
    ]


def explain_protopnet(
    model: Any, output: ProtoOutput, images: Tensor, top_k: int, requested: list[int | None]
) -> list[Explanation]:
    names = output_class_names(model)
    prototype_names = family_of(model).class_names(model)
    config = resolve_data_config(model)
    weight = model.last_layer.weight.detach()  # (K, P)
    probabilities = output.logits.float().softmax(dim=1).cpu()  # (B, K)
    predicted = output.logits.argmax(dim=1).tolist()  # (B,)
    explanations = []
    for b, image in enumerate(images):
        c = predicted[b] if requested[b] is None else int(requested[b])
        evidence = _top_evidence(
            model,
            output.similarities[b],
            output.distance_maps[b],
            weight[c],
            top_k,
            tuple(images.shape[-2:]),
            prototype_names,
        )
        explanations.append(
            Explanation(
                predicted=predicted[b],
                predicted_name=names[predicted[b]],
                class_idx=c,
                class_name=names[c],
                probabilities=probabilities[b],
                logit=float(output.logits[b, c]),
                contributions=(output.similarities[b] * weight[c]).cpu(),
                prototypes=evidence,
                image=image.detach().cpu(),
                mean=tuple(config["mean"]),
                std=tuple(config["std"]),
            )
        )
    return explanations


def explain_braix(
    model: Any, output: BRAIxOutput, images: Tensor, top_k: int, requested: list[int | None]
) -> list[Explanation]:
    """ProtoPNet's explanation of the prototype branch, with the ensemble's prediction and every
    branch's probabilities: ``logit`` is the prototype branch's logit (what the prototypes add up
    to), ``probabilities`` / ``predicted`` the ensemble's (``output.logits`` is its log-probability)."""
    explanations = explain_protopnet(model, output, images, top_k, requested)
    branches = {
        "global": output.global_logits.float().softmax(dim=1).cpu(),  # (B, K)
        "prototype": output.prototype_logits.float().softmax(dim=1).cpu(),
        "ensemble": output.probabilities.float().cpu(),
    }
    for b, explanation in enumerate(explanations):
        explanation.logit = float(output.prototype_logits[b, explanation.class_idx])
        explanation.branch_probabilities = {name: p[b] for name, p in branches.items()}
    return explanations


def explain_multiview(
    model: Any, output: MultiViewOutput, images: tuple[Tensor | None, ...], top_k: int, requested: list[int | None]
) -> list[Explanation]:
    """Breast-level evidence: the view-max similarities' block and the co-occurrence block of the
    last layer; each top prototype with its heatmap and box in every present view."""
    names = output_class_names(model)
    config = resolve_data_config(model)
    weight = model.last_layer.weight.detach()  # (K, P)
    co_weight = model.cross_view.cooccurrence_layer.weight.detach()  # (K, P)
    prototype_class = model.prototype_class.tolist()  # (P,)
    size = tuple(next(x for x in images if x is not None).shape[-2:])
    probabilities = output.logits.float().softmax(dim=1).cpu()  # (B, K)
    predicted = output.logits.argmax(dim=1).tolist()  # (B,)
    explanations = []
    for b in range(len(predicted)):
        c = predicted[b] if requested[b] is None else int(requested[b])
        present = output.views_present[b]  # (2,) bool
        view_similarities = output.view_similarities[b].masked_fill(~present[:, None], float("-inf"))  # (2, P)
        fired = view_similarities.argmax(dim=0)  # (P,) the view each prototype's breast-level similarity comes from
        fired_maps = torch.where(
            fired[:, None, None] == 0, output.view_distance_maps[b, 0], output.view_distance_maps[b, 1]
        )
        top = _top_evidence(model, output.similarities[b], fired_maps, weight[c], top_k, size, names)
        top_maps = output.view_distance_maps[b][:, [ev.index for ev in top]]  # (2, k, h, w)
        view_heatmaps = upsample_maps(model.head.activation(top_maps), size).cpu()  # (2, k, H, W)
        shown = [v for v in range(len(model.views)) if present[v]]
        evidence = [
            ViewEvidence(
                **vars(ev),
                view=model.views[int(fired[ev.index])],
                view_similarities={model.views[v]: float(output.view_similarities[b, v, ev.index]) for v in shown},
                view_heatmaps={model.views[v]: view_heatmaps[v, i] for v in shown},
                view_boxes={model.views[v]: high_activation_box(view_heatmaps[v, i]) for v in shown},
            )
            for i, ev in enumerate(top)
        ]
        co_contributions = output.cooccurrence[b] * co_weight[c]  # (P,)
        co_top = co_contributions.topk(min(top_k, co_contributions.numel())).indices.tolist() if present.all() else []
        view_images = {model.views[v]: images[v][b].detach().cpu() for v in shown}
        explanations.append(
            Explanation(
                predicted=predicted[b],
                predicted_name=names[predicted[b]],
                class_idx=c,
                class_name=names[c],
                probabilities=probabilities[b],
                logit=float(output.logits[b, c]),
                contributions=(output.similarities[b] * weight[c]).cpu(),
                prototypes=evidence,
                image=next(iter(view_images.values())),
                mean=tuple(config["mean"]),
                std=tuple(config["std"]),
                view_images=view_images,
                cooccurrence_contributions=co_contributions.cpu(),
                cooccurrence=[
                    CooccurrenceEvidence(
                        index=p,
                        class_idx=prototype_class[p],
                        class_name=names[prototype_class[p]],
                        score=float(output.cooccurrence[b, p]),
                        weight=float(co_weight[c, p]),
                        contribution=float(co_contributions[p]),
                    )
                    for p in co_top
                ],
            )
        )
    return explanations


def explain_lesion(
    model: Any, output: LesionOutput, images: Tensor, top_k: int, requested: list[int | None]
) -> list[Explanation]:
    """The diagnosis decomposed over lesions, ``logit_c = sum_l softplus(V)[c, l] sigmoid(lesion_l) + b_c``,
    and each lesion's own top prototypes by their contribution ``similarity * W[l, p]`` to its logit."""
    names = output_class_names(model)
    lesion_names = model.lesion_names
    config = resolve_data_config(model)
    size = tuple(images.shape[-2:])
    lesion_weight = model.last_layer.weight.detach()  # (L, P)
    diagnosis_weight = model.head.diagnosis.weight.detach()  # (K, L), non-negative
    diagnosis_bias = model.head.diagnosis.bias.detach()  # (K,)
    lesion_bias = model.head.lesion_bias.detach()  # (L,)
    own = [(model.prototype_class == lesion).nonzero().flatten() for lesion in range(len(lesion_names))]  # L x (M,)
    lesion_probabilities = output.lesion_logits.sigmoid()  # (B, L)
    lesion_maps = model.lesion_maps(images).cpu()  # (B, L, H, W)
    probabilities = output.logits.float().softmax(dim=1).cpu()  # (B, K)
    predicted = output.logits.argmax(dim=1).tolist()  # (B,)
    explanations = []
    for b, image in enumerate(images):
        c = predicted[b] if requested[b] is None else int(requested[b])
        contributions = diagnosis_weight[c] * lesion_probabilities[b]  # (L,)
        lesions = [
            LesionEvidence(
                index=k,
                name=name,
                probability=float(lesion_probabilities[b, k]),
                found=float(lesion_probabilities[b, k]) >= LESION_FOUND_PROBABILITY,
                weight=float(diagnosis_weight[c, k]),
                contribution=float(contributions[k]),
                lesion_map=lesion_maps[b, k],
                prototypes=_top_evidence(
                    model,
                    output.similarities[b],
                    output.distance_maps[b],
                    lesion_weight[k],
                    top_k,
                    size,
                    lesion_names,
                    among=own[k],
                ),
                logit=float(output.lesion_logits[b, k]),
                lesion_bias=float(lesion_bias[k]),
            )
            for k, name in enumerate(lesion_names)
        ]
        found = sorted(
            (ev for lesion in lesions if lesion.found for ev in lesion.prototypes),
            key=lambda ev: ev.contribution,
            reverse=True,
        )
        explanations.append(
            Explanation(
                predicted=predicted[b],
                predicted_name=names[predicted[b]],
                class_idx=c,
                class_name=names[c],
                probabilities=probabilities[b],
                logit=float(output.logits[b, c]),
                contributions=contributions.cpu(),
                prototypes=found[:top_k],
                image=image.detach().cpu(),
                mean=tuple(config["mean"]),
                std=tuple(config["std"]),
                bias=float(diagnosis_bias[c]),
                lesions=lesions,
                lesion_maps=lesion_maps[b],
                diagnosis_weight=diagnosis_weight.cpu(),
                diagnosis_bias=diagnosis_bias.cpu(),
                healthy_class=getattr(model.head, "healthy_class", None),
            )
        )
    return explanations
