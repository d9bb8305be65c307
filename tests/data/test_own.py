"""Your own data: image folders (with a groups CSV) and tables, read from files the test writes."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from disparate.cli import main
from disparate.data import DatasetNotFoundError, list_datasets, load_dataset


def write_images(root: Path, per_class: dict[str, int], size: int = 6) -> list[str]:
    """Class folders of solid-colour PNGs; image k of class c has value 40*c_index + k."""
    files = []
    for ci, (c, n) in enumerate(per_class.items()):
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            value = 40 * ci + k
            Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(root / c / f"{k}.png")
            files.append(f"{c}/{k}.png")
    return files


def test_image_folder_with_groups_csv(tmp_path):
    files = write_images(tmp_path, {"cat": 5, "dog": 5})
    with (tmp_path / "groups.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "skin"])
        w.writerows([file, "dark" if file.endswith(("0.png", "1.png")) else "light"]
                    for file in files)
    train, test = load_dataset("image-folder", data_dir=tmp_path, size=4, test_fraction=0.4,
                               groups_csv="groups.csv", group_column="skin")
    assert (len(train), len(test)) == (6, 4)
    assert train.class_names == ["cat", "dog"] and train.group_names == ["dark", "light"]
    assert train.inputs.dtype == torch.uint8 and train.input_shape == (3, 4, 4)
    every = torch.cat([train.inputs, test.inputs])[:, 0, 0, 0].tolist()
    groups = torch.cat([train.groups, test.groups]).tolist()
    labels = torch.cat([train.labels, test.labels]).tolist()
    for value, g, y in zip(every, groups, labels, strict=True):
        assert y == value // 40 and g == (0 if value % 40 in (0, 1) else 1)
    x, _, _ = test[torch.arange(len(test))]
    assert x.dtype == torch.float32 and x.shape == (4, 3, 4, 4)


def test_image_folder_official_split_and_groups_are_classes(tmp_path):
    write_images(tmp_path / "train", {"a": 2, "b": 3})
    write_images(tmp_path / "test", {"a": 1, "b": 1})
    train, test = load_dataset("image-folder", data_dir=tmp_path, size=6, channels=1)
    assert (len(train), len(test)) == (5, 2) and train.group_sizes() == {"a": 2, "b": 3}
    assert train.input_shape == (1, 6, 6)


def test_image_folder_csv_without_a_row_is_named(tmp_path):
    write_images(tmp_path, {"a": 2})
    (tmp_path / "g.csv").write_text("file,group\na/0.png,x\n")
    with pytest.raises(ValueError, match="groups_csv='g.csv' has no row for 'a/1.png'"):
        load_dataset("image-folder", data_dir=tmp_path, groups_csv="g.csv")


def write_table(path: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["age", "income", "label", "group"])
        for i in range(n):
            w.writerow([float(rng.integers(20, 60)), float(rng.normal()),
                        "yes" if i % 2 else "no", "north" if i % 4 < 3 else "south"])


def test_table_csv(tmp_path):
    write_table(tmp_path / "data.csv")
    train, test = load_dataset("table", data_dir=tmp_path, test_fraction=0.25, seed=1)
    assert (len(train), len(test)) == (30, 10)
    assert train.class_names == ["no", "yes"] and train.group_names == ["north", "south"]
    assert train.inputs.shape == (30, 2)
    torch.testing.assert_close(train.inputs.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert sum(train.group_sizes().values()) == 30 and train.group_sizes()["south"] > 0


def test_table_parquet_and_missing_column(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"x": np.arange(10.0), "y": [0, 1] * 5, "g": ["a"] * 5 + ["b"] * 5})
    frame.to_parquet(tmp_path / "t.parquet")
    train, test = load_dataset("table", data_dir=tmp_path / "t.parquet", label_column="y",
                               group_column="g", test_fraction=0.2)
    assert train.class_names == ["0", "1"] and len(train) + len(test) == 10
    with pytest.raises(ValueError, match="no column 'label'; its columns are"):
        load_dataset("table", data_dir=tmp_path / "t.parquet")


def test_missing_data_dir_is_not_created(tmp_path):
    missing = tmp_path / "nope"
    for name in ("table", "image-folder"):
        with pytest.raises(DatasetNotFoundError, match="does not exist"):
            load_dataset(name, data_dir=missing)
    assert not missing.exists()
    assert {"image-folder", "table"} <= set(list_datasets())


def test_table_from_the_cli_with_a_yaml_experiment(tmp_path, capsys):
    write_table(tmp_path / "data.csv", n=60)
    (tmp_path / "mine.yaml").write_text(json.dumps({
        "name": "mine", "data": {"dataset": "table", "options": {"test_fraction": 0.25}},
        "model": {"name": "mlp", "options": {"hidden_sizes": [8]}},
        "training": {"optimizer": "sgd", "lr": 0.1, "epochs": 1, "batch_size": 15,
                     "num_threads": 1},
        "privacy": {"clipping": True, "noise": True, "noise_multiplier": 1.0,
                    "max_grad_norm": 1.0, "delta": 1e-3, "sampling": "poisson",
                    "accountant": "rdp"},
        "evaluation": {"highlight": ["south"], "min_group_test_size": 1},
    }))
    out = tmp_path / "run"
    status = main(["run", str(tmp_path / "mine.yaml"), "--data-dir", str(tmp_path),
                   "--out", str(out), "--quiet"])
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert {g["group"] for g in results["groups"]} == {"north", "south"}
    assert results["group_metrics"]["class_names"] == ["no", "yes"]
