"""The explanation benchmark: every backbone's plain classifier (Grad-CAM, Grad-CAM++, Score-CAM) and
ProtoPNet (its prototypes), fine-tuned on the same data, scored against ground-truth masks by the
evaluators of :mod:`protozoo.evaluate`, with captum's faithfulness and the shortcut figures.

    import protozoo.benchmark
    rows = protozoo.benchmark.run("bench/", preset="quick")

See docs/benchmark.md.
"""

from protozoo.benchmark.options import INITS, METHODS, PRESETS, BenchmarkOptions
from protozoo.benchmark.runner import run

__all__ = ["INITS", "METHODS", "PRESETS", "BenchmarkOptions", "run"]
