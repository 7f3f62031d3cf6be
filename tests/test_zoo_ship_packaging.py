"""Packaging: a light core (extras imported only when used), one version, a ruff config the tree is checked with."""

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import protozoo

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO / "pyproject.toml").read_text())


EXTRAS = {
    "viz": "matplotlib",
    "dicom": "pydicom",
    "posthoc": "pytorch_grad_cam",
    "attribution": "captum",
    "tensorboard": "tensorboard",
}


def test_core_imports_no_optional_dependency():
    code = (
        "import sys, protozoo, protozoo.cli, protozoo.data, protozoo.evaluate, protozoo.train, protozoo.explanation\n"
        f"mods = {sorted(EXTRAS.values())!r}\n"
        "loaded = [m for m in mods if getattr(sys.modules.get(m), '__file__', None) or "
        "any(k.startswith(m + '.') for k in sys.modules)]\n"
        "print(','.join(loaded))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "", f"imported at `import protozoo`: {run.stdout}"


def test_extras_and_core_dependencies():
    project = pyproject()["project"]
    core = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for extra in EXTRAS:
        assert extra in extras and extras[extra], extra
    assert not any(name in core for name in ("matplotlib", "pydicom", "grad-cam", "captum", "tensorboard"))
    assert set(EXTRAS) <= set(extras["all"][0].split("[")[1].rstrip("]").split(","))
    assert any(req.startswith("ruff") for req in extras["dev"]) and any(
        req.startswith("pytest") for req in extras["dev"]
    )


def test_one_version():
    project = pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "protozoo.__version__"}
    try:
        installed = metadata.version("protozoo")
    except metadata.PackageNotFoundError:
        pytest.skip("protozoo is not installed")
    assert installed == protozoo.__version__
    assert (REPO / "protozoo" / "py.typed").is_file()
    assert f"## [{protozoo.__version__}]" in (REPO / "CHANGELOG.md").read_text()


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
    reason="ruff is not installed (pip install -e '.[dev]')",
)
def test_the_tree_passes_ruff_check():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    run = subprocess.run(
        [ruff, "check", "--no-cache", "--output-format", "concise", str(REPO)], capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 0, run.stdout[-4000:]


def test_a_missing_extra_is_named_with_its_install_command(monkeypatch, capsys):
    import builtins

    import protozoo.cli

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    if "viz" in vars(protozoo):  # an imported submodule is an attribute of its package (hasattr would import it)
        monkeypatch.delattr(protozoo, "viz")
    for module in [m for m in sys.modules if m.split(".")[0] == "matplotlib" or m.startswith("protozoo.viz")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'protozoo\[viz\]'"):
        protozoo.viz  # noqa: B018
    code = protozoo.cli.main(["explain", "--model", "protopnet_efficientnet_lite0.synth_parts", "x.png", "--out", "o"])
    assert code == 2 and "pip install 'protozoo[viz]'" in capsys.readouterr().err


def test_every_third_party_import_of_the_package_is_a_declared_dependency():
    """An import the package makes (at any depth) comes from a core dependency or an extra: none only by luck."""
    import ast
    import re

    project = pyproject()["project"]
    declared = {
        re.split(r"[<>=\[ ;]", req)[0].lower().replace("_", "-")
        for req in project["dependencies"] + [r for reqs in project["optional-dependencies"].values() for r in reqs]
    }
    distributions = metadata.packages_distributions()
    undeclared = {}
    for path in (REPO / "protozoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and not node.level
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "protozoo":
                    continue
                owners = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
                if not owners & declared:
                    undeclared.setdefault(top, set()).add(str(path.relative_to(REPO)))
    assert not undeclared, f"imported but not in pyproject.toml's dependencies or extras: {undeclared}"
