"""A dataset's classes in a model's terms: the explicit, by-name map the examples and tools use."""

from __future__ import annotations

from collections.abc import Sequence


def _key(name: object) -> str:
    return str(name).lower().replace("_", " ").replace("-", " ").strip()


def label_map(
    dataset_classes: Sequence[object],
    model_classes: Sequence[object],
    *,
    dataset: str = "the dataset",
) -> list[int]:
    """The model's class index of each dataset class, matched by name (case, ``_``, ``-`` ignored).

    A label index means nothing outside its own class list: CBIS-DDSM's binary ``benign`` (0) /
    ``malignant`` (1) are the zoo mammography models' classes 1 and 2 (of ``normal`` /
    ``benign`` / ``malignant``). Indexing one list with the other's index printed a benign
    breast as ``normal``.

    Args:
        dataset_classes: The dataset's ``classes``, index = its label.
        model_classes: The model's ``pretrained_cfg.label_names``, index = its logit.
        dataset: How to name the dataset in the error.

    Returns:
        ``mapping`` with ``mapping[dataset_label]`` the model's class index.

    Raises:
        ValueError: Naming every dataset class the model has no class of that name for.
    """
    index: dict[str, int] = {}
    for i, name in enumerate(model_classes):
        index.setdefault(_key(name), i)
    missing = [str(name) for name in dataset_classes if _key(name) not in index]
    if missing:
        raise ValueError(
            f"{dataset} classes {missing} have no class of the same name among the model's "
            f"{[str(n) for n in model_classes]}: its labels cannot be stated in the model's terms "
            "(map them yourself, or use data with the model's classes)"
        )
    return [index[_key(name)] for name in dataset_classes]
