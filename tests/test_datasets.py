"""Dataset registry and loaders, on tiny files in the official SVHN and CIFAR formats."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from official_formats import CIFAR10_TEST_NAMES, read_svhn_file, write_cifar10, write_cifar100, write_npz, write_svhn
from train import datasets, synth
from train.datasets import DataError, DataRequest, dataset_names, get_dataset, load_npz


@pytest.mark.parametrize("alias, name", [
    ("svhn", "SVHN"), ("SVHN", "SVHN"), ("cifar10", "CIFAR-10"), ("CIFAR-10", "CIFAR-10"), ("c10", "CIFAR-10"),
    ("c100", "CIFAR-100"), ("cifar_100", "CIFAR-100"), ("synth", "SynthDigits"), ("synthdigits", "SynthDigits"),
])
def test_aliases_resolve(alias, name):
    assert get_dataset(alias).name == name


def test_unknown_dataset_error_lists_supported_names():
    with pytest.raises(ValueError) as e:
        get_dataset("mnist")
    assert "'mnist'" in str(e.value)
    for name in ("SVHN", "CIFAR-10", "CIFAR-100", "SynthDigits"):
        assert name in str(e.value)
    assert set(dataset_names()) == {"SVHN", "CIFAR-10", "CIFAR-100", "SynthDigits"}


def test_specs_have_consistent_metadata():
    for name in dataset_names():
        spec = get_dataset(name)
        assert len(spec.mean) == len(spec.std) == 3 and all(s > 0 for s in spec.std)
        assert spec.num_classes == len(spec.class_names)
    assert get_dataset("CIFAR-100").num_classes == 100


def test_svhn_loader_maps_label_10_to_0_and_keeps_pixels(tmp_path):
    folder = write_svhn(tmp_path, n_train=20, n_test=10)
    train, test = get_dataset("svhn").load(DataRequest(tmp_path))
    assert (len(train), len(test)) == (20, 10)
    x, y = read_svhn_file(folder / "train_32x32.mat")
    assert set(y.tolist()) == set(range(1, 11))  # the file really stores 10 for the digit 0
    for i in (0, 3, 10, 19):
        image, label = train[i]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (32, 32)
        assert label == y[i] % 10
        assert np.array_equal(np.asarray(image), x[i]), "pixels transposed or scrambled"
    assert sorted({test[i][1] for i in range(10)}) == list(range(10))


def test_svhn_extra_split_is_added_when_asked(tmp_path):
    write_svhn(tmp_path, n_train=10, n_test=10, extra=6)
    train, _ = get_dataset("svhn").load(DataRequest(tmp_path, extra=True))
    assert len(train) == 16


def test_cifar10_loader_reads_class_names_from_meta_and_keeps_pixels(tmp_path):
    folder = write_cifar10(tmp_path, n_per_batch=4, n_test=6)
    train, test = get_dataset("CIFAR-10").load(DataRequest(tmp_path))
    assert (len(train), len(test)) == (20, 6)
    assert list(train.classes) == CIFAR10_TEST_NAMES  # from batches.meta, not the registry
    import pickle
    with open(folder / "data_batch_2", "rb") as f:
        batch = pickle.load(f)
    image, label = train[4]  # first image of data_batch_2
    assert label == batch["labels"][0]
    assert np.array_equal(np.asarray(image), batch["data"][0].reshape(3, 32, 32).transpose(1, 2, 0))


def test_cifar100_loader_uses_fine_labels_and_fine_names(tmp_path):
    write_cifar100(tmp_path, n_train=30, n_test=10)
    train, test = get_dataset("c100").load(DataRequest(tmp_path))
    assert (len(train), len(test)) == (30, 10)
    assert len(train.classes) == 100 and train.classes[7] == "fine007"
    assert [train[i][1] for i in range(30)] == [i % 100 for i in range(30)]


@pytest.mark.parametrize("name, files", [("SVHN", ["train_32x32.mat", "test_32x32.mat"]),
                                         ("CIFAR-10", ["cifar-10-python.tar.gz"])])
def test_missing_data_offline_raises_data_error_naming_files_and_folder(tmp_path, monkeypatch, name, files):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets.tv.SVHN, "download", offline)
    monkeypatch.setattr(datasets.tv.CIFAR10, "download", offline)
    with pytest.raises(DataError) as e:
        get_dataset(name).load(DataRequest(tmp_path / "empty"))
    message = str(e.value)
    assert str(tmp_path / "empty") in message and "network is unreachable" in message
    for f in files:
        assert f in message


def test_mix_synthetic_adds_a_fraction_of_rendered_images(tmp_path, monkeypatch):
    calls = []

    def fake_render(root, n, seed, split, workers, *options):
        calls.append((n, split))
        return np.zeros((n, 32, 32, 3), np.uint8), np.arange(n) % 10

    monkeypatch.setattr(synth, "load_or_generate", fake_render)
    write_svhn(tmp_path, n_train=20, n_test=10)
    train, _ = get_dataset("svhn").load(DataRequest(tmp_path, mix_synthetic=0.5))
    assert len(train) == 30 and calls == [(10, "train")]


def test_synthdigits_loader_renders_train_and_disjoint_test(tmp_path, monkeypatch):
    calls = []

    def fake_render(root, n, seed, split, workers, *options):
        calls.append((n, split))
        return np.zeros((n, 32, 32, 3), np.uint8), np.arange(n) % 10

    monkeypatch.setattr(synth, "load_or_generate", fake_render)
    train, test = get_dataset("synth").load(DataRequest(tmp_path, synth_size=50))
    assert (len(train), len(test)) == (50, 1000)
    assert calls == [(50, "train"), (1000, "test")]


def test_load_npz_reads_images_and_labels(tmp_path):
    data = load_npz(write_npz(tmp_path / "d.npz", 12))
    assert len(data) == 12 and data[11][1] == 1 and data[0][0].size == (32, 32)


@pytest.mark.parametrize("arrays, match", [
    ({"images": np.zeros((2, 32, 32, 3), np.uint8)}, "expected arrays 'x'"),
    ({"x": np.zeros((2, 32, 32, 3), np.float32), "y": np.zeros(2)}, "uint8"),
    ({"x": np.zeros((2, 32, 32), np.uint8), "y": np.zeros(2)}, "uint8"),
    ({"x": np.zeros((2, 32, 32, 3), np.uint8), "y": np.zeros(3)}, "uint8"),
])
def test_load_npz_rejects_other_arrays_naming_the_file(tmp_path, arrays, match):
    path = tmp_path / "wrong.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"wrong.npz.*{match}"):
        load_npz(path)
    with pytest.raises(DataError, match="absent.npz"):
        load_npz(tmp_path / "absent.npz")


@pytest.mark.parametrize("arrays, match", [
    ({"x": np.zeros((2, 32, 32, 3), np.uint8), "y": np.array([0.0, 1.0])}, "integer labels"),
    ({"x": np.zeros((2, 32, 32, 3), np.uint8), "y": np.array([3, 10])}, r"labels must lie in 0\.\.9; found 3 to 10"),
    ({"x": np.zeros((2, 32, 32, 3), np.uint8), "y": np.array([-1, 2])}, "labels must lie in 0..9"),
    ({"x": np.zeros((2, 32, 32, 3), np.uint8), "y": np.zeros((2, 1), np.int64)}, "'y' \\(N,\\)"),
])
def test_training_npz_labels_are_validated_in_one_line_naming_the_file(tmp_path, arrays, match):
    path = tmp_path / "labels.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=f"labels.npz.*{match}") as e:
        load_npz(path, num_classes=10)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_npz_is_refused_naming_it(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("not a zip")
    with pytest.raises(DataError, match="text.npz: not a readable .npz"):
        load_npz(path)


def test_stratified_folds_are_disjoint_cover_every_image_and_balance_classes():
    labels = np.repeat(np.arange(10), [31, 111, 78, 69, 55, 52, 33, 34, 42, 36])  # the real file's counts
    fold = datasets.stratified_folds(labels, 5, seed=0)
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]  # every image in exactly one fold of 0..4
    sizes = np.bincount(fold)
    assert sizes.sum() == len(labels) and sizes.max() - sizes.min() <= 1
    for c in range(10):
        per_fold = np.bincount(fold[labels == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1
    assert np.array_equal(fold, datasets.stratified_folds(labels, 5, seed=0))  # fixed by the seed
    assert not np.array_equal(fold, datasets.stratified_folds(labels, 5, seed=1))


def test_load_train_npz_leaves_out_exactly_the_held_out_fold(tmp_path):
    path = write_npz(tmp_path / "real.npz", 40)
    full = load_npz(path)
    fold = datasets.stratified_folds(full.labels, 4, seed=2)
    seen = []
    for f in range(4):
        part = datasets.load_train_npz((str(path),), 10, folds=4, holdout=f, seed=2)
        assert len(part) == int((fold != f).sum())
        held = {full.images[i].tobytes() for i in np.flatnonzero(fold == f)}
        assert not held & {img.tobytes() for img in part.images}
        seen.append(held)
    assert set().union(*seen) == {img.tobytes() for img in full.images}
    both = datasets.load_train_npz((str(path), str(write_npz(tmp_path / "more.npz", 6, seed=1))), 10)
    assert len(both) == 46


def test_training_npz_without_images_is_refused_naming_it(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, x=np.zeros((0, 32, 32, 3), np.uint8), y=np.zeros(0, np.int64))
    with pytest.raises(DataError, match="empty.npz: no images to train on"):
        datasets.load_train_npz((str(path),), 10)
