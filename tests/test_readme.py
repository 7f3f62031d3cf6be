"""The README's first Python example runs as written (in a temporary folder)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no ```python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    same, out, x = namespace["same"], namespace["out"], namespace["x"]
    assert out.logits.shape == (2, 5) and out.similarities.shape == (2, 50)
    assert (same(x).logits - out.logits).abs().max() == 0  # saved and loaded: identical outputs
