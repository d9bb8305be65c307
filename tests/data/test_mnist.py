from pathlib import Path

import numpy as np
import pytest
import torch

from disparate.data import (
    DatasetNotFoundError,
    IdxFormatError,
    load_dataset,
    reduce_groups,
    write_idx,
)
from disparate.data.mnist import MNIST_MEAN, MNIST_STD, find_mnist_files

# <project>/../shared/data/mnist: present in the development checkout, never required.
REAL_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def write_fake_mnist(directory: Path, *, gz: bool, n_train: int = 30, n_test: int = 20) -> dict:
    """Tiny MNIST-format files; image i is filled with the value i (mod 256), label i % 10."""
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    for role, fname in FILES.items():
        write_idx(directory / (fname + suffix), arrays[role])
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_plain_directory_layout(tmp_path, gz):
    arrays = write_fake_mnist(tmp_path, gz=gz)
    train, test = load_dataset("mnist", data_dir=tmp_path)
    assert train.inputs.shape == (30, 1, 28, 28) and train.inputs.dtype == torch.float32
    assert test.inputs.shape == (20, 1, 28, 28)
    assert train.labels.dtype == torch.long and train.labels.tolist() == list(np.arange(30) % 10)
    assert torch.equal(train.groups, train.labels)
    assert train.group_names == [str(i) for i in range(10)] and train.num_classes == 10
    assert train.group_sizes() == {str(i): 3 for i in range(10)}
    expected = (arrays["train_images"][7, 0, 0] / 255.0 - MNIST_MEAN) / MNIST_STD
    assert float(train.inputs[7, 0, 0, 0]) == pytest.approx(expected, rel=1e-6)
    assert train.name == "mnist/train" and test.name == "mnist/test"


def test_torchvision_layout(tmp_path):
    write_fake_mnist(tmp_path / "MNIST" / "raw", gz=False)
    train, test = load_dataset("mnist", data_dir=tmp_path)
    assert len(train) == 30 and len(test) == 20
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw", gz=True, n_train=10)
    ftrain, _ = load_dataset("fashion-mnist", data_dir=tmp_path)
    assert len(ftrain) == 10 and ftrain.class_names[0] == "T-shirt/top"
    assert ftrain.group_names == list(ftrain.class_names) and ftrain.group_names[8] == "Bag"


def test_dot_spelling_and_mixed_compression(tmp_path):
    arrays = write_fake_mnist(tmp_path / "src", gz=False)
    write_idx(tmp_path / "train-images.idx3-ubyte.gz", arrays["train_images"])
    write_idx(tmp_path / "train-labels.idx1-ubyte", arrays["train_labels"])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["test_images"])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", arrays["test_labels"])
    files = find_mnist_files("mnist", tmp_path)
    assert files["train_images"].name == "train-images.idx3-ubyte.gz"
    assert len(load_dataset("mnist", data_dir=tmp_path).train) == 30


def test_missing_data_error_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path) in msg and str(tmp_path / "MNIST" / "raw") in msg
    assert "--download" in msg and "--data-dir" in msg


def test_partial_files_named(tmp_path):
    write_fake_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"has 3 of 4 files, missing t10k-labels-idx1"):
        load_dataset("mnist", data_dir=tmp_path)


def test_default_data_dir_from_env(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "mnist", gz=True)
    monkeypatch.setenv("DISPARATE_DATA_DIR", str(tmp_path))
    assert len(load_dataset("mnist").train) == 30


def test_corrupt_file_is_reported(tmp_path):
    write_fake_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(IdxFormatError, match="train-labels-idx1-ubyte: IDX data has 1 bytes"):
        load_dataset("mnist", data_dir=tmp_path)


def test_count_mismatch_and_wrong_image_size(tmp_path):
    arrays = write_fake_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", arrays["train_labels"][:5])
    with pytest.raises(IdxFormatError, match="has 30 images but .* has 5 labels"):
        load_dataset("mnist", data_dir=tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 8, 8), np.uint8))
    with pytest.raises(IdxFormatError, match=r"expected \(28, 28\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_download_uses_torchvision_layout(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeMNIST:
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            write_fake_mnist(Path(root) / "MNIST" / "raw", gz=True)

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    train, test = load_dataset("mnist", data_dir=tmp_path / "cache", download=True)
    assert calls == [(str(tmp_path / "cache"), True, True)]
    assert len(train) == 30 and len(test) == 20
    # files present: no second download
    load_dataset("mnist", data_dir=tmp_path / "cache", download=True)
    assert len(calls) == 1


def test_download_failure_message(tmp_path, monkeypatch):
    import torchvision.datasets

    class OfflineMNIST:
        def __init__(self, root, train=True, download=False):
            raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    with pytest.raises(DatasetNotFoundError, match="download into .* failed .*--data-dir"):
        load_dataset("mnist", data_dir=tmp_path, download=True)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="real MNIST not available")
def test_real_mnist_sizes_and_paper_imbalance():
    train, test = load_dataset("mnist", data_dir=REAL_MNIST)
    assert train.inputs.shape == (60000, 1, 28, 28) and test.inputs.shape == (10000, 1, 28, 28)
    sizes = train.group_sizes()
    assert list(sizes.values()) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(float(train.inputs.mean())) < 1e-3 and abs(float(train.inputs.std()) - 1) < 1e-3
    reduced = reduce_groups(train, {"8": 500}, seed=0)
    assert len(reduced) == 54649
    assert reduced.group_sizes()["8"] == 500 and reduced.group_sizes()["2"] == 5958
    assert len(test) == 10000


def test_full_size_files_that_are_not_mnist_are_refused(tmp_path):
    # 60,000 labels, exactly 6,000 per class: Fashion-MNIST's shape of label file.
    write_fake_mnist(tmp_path, gz=False, n_train=60000)
    with pytest.raises(IdxFormatError) as e:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(e.value)
    assert "train-labels-idx1-ubyte: not the MNIST file (60000 examples" in message
    assert "exactly 6000 per class, as in Fashion-MNIST (use data.dataset=fashion-mnist)" in message
    assert len(load_dataset("fashion-mnist", data_dir=tmp_path).train) == 60000


def test_fashion_mnist_refuses_the_mnist_files(tmp_path, monkeypatch):
    from disparate.data import mnist

    arrays = write_fake_mnist(tmp_path, gz=True, n_train=60000)
    # pretend these fake files are the official MNIST ones
    for role in ("train_images", "train_labels"):
        monkeypatch.setitem(mnist.MNIST_MD5, role, mnist._content_md5(arrays[role]))
    assert len(load_dataset("mnist", data_dir=tmp_path).train) == 60000
    with pytest.raises(IdxFormatError, match="this is the MNIST file .* not fashion-mnist's"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_real_mnist_files_pass_the_check():
    if not REAL_MNIST.is_dir():
        pytest.skip("the real MNIST files are not in this checkout")
    train, test = load_dataset("mnist", data_dir=REAL_MNIST)
    assert (len(train), len(test)) == (60000, 10000)
