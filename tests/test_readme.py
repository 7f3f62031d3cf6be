"""The README's Python examples run as written, in order, in a temporary folder."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2, "README.md lost its ```python examples"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    same, out, x = namespace["same"], namespace["out"], namespace["x"]
    assert out.logits.shape == (2, 5) and out.similarities.shape == (2, 50)
    assert (same(x).logits - out.logits).abs().max() == 0  # saved and loaded: identical outputs
    explanation = namespace["e"]
    assert len(explanation.prototypes) == 3 and explanation.prototypes[0].source is not None
