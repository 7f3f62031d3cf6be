"""A dataset text file with a bad line names the file, the line and what it should hold (issue #15)."""

import pytest
from fixtures import make_cub  # tests/data is on sys.path (pytest prepend mode, no __init__.py)

from protozoo.data import load_dataset


@pytest.mark.parametrize(
    "file, line, message",
    [
        (
            "bounding_boxes.txt",
            "1 10.0 five 30.0 25.0",
            r"bounding_boxes.txt: line 1 '1 10.0 five 30.0 25.0' is not '<integer id> <4 numbers>'",
        ),
        ("images.txt", "one 001.A/a.jpg", r"images.txt: line 1 'one 001.A/a.jpg' is not '<integer id>"),
        (
            "part_locs.txt",
            "1 99 3.0 4.0 1",
            r"part_locs.txt: line 1 '1 99 3.0 4.0 1' is not '<image id> <part id 1..3>",
        ),
        ("part_locs.txt", "1 2 x 4.0 1", r"part_locs.txt: line 1 '1 2 x 4.0 1' is not"),
    ],
)
def test_cub_text_files_with_bad_lines_name_the_file_and_line(tmp_path, file, line, message):
    root = make_cub(tmp_path / "CUB_200_2011")
    path = next(root.rglob(file))
    path.write_text(line + "\n" + path.read_text().split("\n", 1)[1])
    with pytest.raises(ValueError, match=message):
        load_dataset(f"cub:{root}", "train")
