"""The optional dependencies (``pip install 'protozoo[EXTRA]'``) and the message that names the missing one."""

from __future__ import annotations

#: import name -> the extra that installs it (pyproject.toml's optional-dependencies).
EXTRA_OF = {
    "matplotlib": "viz",
    "pydicom": "dicom",
    "pytorch_grad_cam": "posthoc",
    "tensorboard": "tensorboard",
    "captum": "attribution",
    "yaml": "yaml",
}


def missing_extra(err: ImportError) -> str | None:
    """'``matplotlib`` is not installed: pip install 'protozoo[viz]''' for a missing optional dependency, else None."""
    name = (getattr(err, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return f"{name} is not installed; it comes with protozoo's {extra!r} extra: pip install 'protozoo[{extra}]'"
