"""Checkpoint format: round trip with weights_only=True, documented fields, atomic writes, clear errors."""
from __future__ import annotations

import pickle

import pytest
import torch

from model import checkpoint as ckpt_mod
from model.checkpoint import (CheckpointError, describe, load_checkpoint, load_network, make_checkpoint,
                              network_from_checkpoint, save_checkpoint)
from model.networks import ArchConfig, build_network

DOCUMENTED_FIELDS = ("format_version", "arch", "state_dict", "dataset", "class_names", "input_size", "mean",
                     "std", "metrics", "train_config", "versions", "created", "epoch")


def tiny_checkpoint_dict(seed: int = 0, **extra) -> dict:
    torch.manual_seed(seed)
    arch = ArchConfig(arch="wrn", depth=10, width=1, dropout=0.1)
    net = build_network(arch)
    return make_checkpoint(arch, net.state_dict(), dataset="unit test, 0 images", class_names=list("abcdefghij"),
                           input_size=(32, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3),
                           metrics={"val_accuracy": {"value": 0.5, "data": "nothing"}},
                           train_config={"lr": 0.1, "milestones": [1, 2]}, epoch=3, **extra)


def test_round_trip_loads_with_weights_only_and_has_documented_fields(tmp_path):
    original = tiny_checkpoint_dict(training_state={"optimizer": {"state": {}, "param_groups": []},
                                                    "rng": torch.get_rng_state()})
    path = save_checkpoint(original, tmp_path / "run" / "last.pt")    # creates the folder
    raw = torch.load(path, weights_only=True)
    for key in DOCUMENTED_FIELDS + ("training_state",):
        assert key in raw, f"checkpoint lacks documented field {key!r}"
    assert raw["format_version"] == ckpt_mod.FORMAT_VERSION
    assert raw["arch"] == original["arch"] and raw["class_names"] == list("abcdefghij")
    assert raw["input_size"] == [32, 32] and raw["epoch"] == 3
    assert raw["metrics"]["val_accuracy"] == {"value": 0.5, "data": "nothing"}
    assert set(raw["versions"]) == {"torch", "torchvision"}
    assert raw["created"].endswith("+00:00")  # ISO 8601 UTC
    assert torch.equal(raw["training_state"]["rng"], original["training_state"]["rng"])
    for k, v in original["state_dict"].items():
        assert torch.equal(raw["state_dict"][k], v), k


def test_rebuilt_network_computes_the_same_outputs(tmp_path):
    torch.manual_seed(1)
    arch = ArchConfig(arch="wrn", depth=10, width=1, shortcut="pool", num_classes=3)
    net = build_network(arch).eval()
    path = save_checkpoint(make_checkpoint(arch, net.state_dict(), dataset="d", class_names=["a", "b", "c"],
                                           input_size=(32, 32), mean=(0, 0, 0), std=(1, 1, 1)), tmp_path / "c.pt")
    rebuilt, ckpt = load_network(path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    assert not rebuilt.training
    facts = describe(ckpt)
    assert facts["architecture"] == "WRN-10-1" and facts["class_names"] == ["a", "b", "c"]
    assert facts["parameters"] == sum(p.numel() for p in net.parameters())


def test_save_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tiny_checkpoint_dict(), tmp_path / "best.pt")
    save_checkpoint(tiny_checkpoint_dict(seed=1), tmp_path / "best.pt")  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_failing_save_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(tiny_checkpoint_dict(), path)
    before = path.read_bytes()
    bad = tiny_checkpoint_dict(seed=1)
    bad["not_picklable"] = lambda: None  # torch.save fails part-way through writing
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    """A Ctrl-C arriving while the file is written must not leave a half-written checkpoint."""
    path = tmp_path / "last.pt"
    save_checkpoint(tiny_checkpoint_dict(), path)
    before = path.read_bytes()

    def write_half_then_interrupt(obj, f):
        f.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", write_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tiny_checkpoint_dict(seed=1), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def _truncated(tmp_path):
    good = save_checkpoint(tiny_checkpoint_dict(), tmp_path / "good.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(good[: len(good) // 2])


def _corrupt(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"\x00\x01 this is not a checkpoint " * 100)


def _pickled_object(tmp_path):  # an old-style checkpoint pickling a whole module: refused by weights_only
    torch.save(torch.nn.Linear(2, 2), tmp_path / "bad.pt")


def _foreign_dict(tmp_path):  # a valid torch file of someone else's format
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1}, tmp_path / "bad.pt")


def _not_a_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "bad.pt")


@pytest.mark.parametrize("make_bad", [_truncated, _corrupt, _pickled_object, _foreign_dict, _not_a_dict])
def test_unreadable_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path, make_bad):
    make_bad(tmp_path)
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_missing_checkpoint_raises_checkpoint_error_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="a_folder"):
        (tmp_path / "a_folder").mkdir()
        load_checkpoint(tmp_path / "a_folder")


def test_newer_format_version_is_refused(tmp_path):
    path = save_checkpoint({**tiny_checkpoint_dict(), "format_version": ckpt_mod.FORMAT_VERSION + 1},
                           tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="future.pt.*newer"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_architecture_raise_checkpoint_error(tmp_path):
    ckpt = tiny_checkpoint_dict()
    ckpt["arch"] = {**ckpt["arch"], "width": 2}
    with pytest.raises(CheckpointError, match="mismatch.pt"):
        network_from_checkpoint(ckpt, tmp_path / "mismatch.pt")


def test_shared_fixture_checkpoint_loads(tiny_checkpoint):
    net, ckpt = load_network(tiny_checkpoint)
    assert ckpt["class_names"] == [str(d) for d in range(10)]
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
