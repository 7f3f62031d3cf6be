"""Gallery labels stay readable with long class names (the synthetic parts classes join parts with '+')."""

from __future__ import annotations

from protozoo.viz.gallery import banner_lines, wrap_name


def test_long_class_names_wrap_at_their_joints_and_lose_no_character():
    name = "blue_crown+long-black_beak+yellow-ring_eye"
    wrapped = wrap_name(name, 24)
    lines = wrapped.split("\n")
    assert len(lines) > 1 and all(len(line) <= 24 for line in lines)
    assert "".join(lines) == name  # broken only at '+' and '-', nothing dropped or added
    assert wrap_name("normal", 24) == "normal"


def test_the_banner_breaks_only_at_spaces_so_dataset_names_stay_whole():
    use = "BRAIxProtoPNet++ on synthetic mammograms; synthetic data only. Trained on: synthetic-mammo."
    for width in range(30, 100):
        lines = banner_lines(use, width)
        assert " ".join(lines) == f"INTENDED USE: {use}"
        assert any("synthetic-mammo" in line for line in lines), width
