"""Tables as OpenCLIP users write them: tab-separated `.csv` (OpenCLIP's default separator),
`.tsv`, and errors that name the columns found."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from clipforge.data.skips import DataError
from clipforge.data.tables import open_table, read_table_rows


@pytest.mark.parametrize("name", ["train.csv", "train.tsv"])
def test_tab_separated_tables_are_read_as_openclip_writes_them(tmp_path: Path, name: str) -> None:
    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp_path / f"{i}.png")
    table = tmp_path / name
    table.write_text("filepath\ttitle\n0.png\ta red, round thing\n1.png\ta blue square\n")
    path, _, columns, (image, caption) = open_table(table, None, image="filepath", caption="title")
    assert columns == ["filepath", "title"] and (image, caption) == ("filepath", "title")
    rows = read_table_rows(path, ["filepath", "title"], None)
    assert rows.paths("filepath") == ["0.png", "1.png"]


def test_a_missing_column_names_the_columns_found(tmp_path: Path) -> None:
    table = tmp_path / "train.csv"
    table.write_text("filepath,title\na.png,a cat\n")
    with pytest.raises(
        DataError, match=r"no caption column 'caption' \(columns: \['filepath', 'title'\]\)"
    ):
        open_table(table, None, image="filepath", caption="caption")
