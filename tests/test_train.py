"""Training end to end on tiny files in the official formats: outputs, resume, interruption, DDP, errors.

Everything runs a WRN-10-1 for a few batches on CPU. In-process runs use one intra-op thread and
subprocesses get OMP_NUM_THREADS=1: on a small shared CPU, more threads only add contention.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from official_formats import CIFAR10_TEST_NAMES, run_cli, write_cifar10, write_cifar100, write_npz, write_svhn
from train import cli, crossval, datasets, engine, loop, wiseft
from train.config import TrainConfig
from train.engine import EpochSampler, MixedEpochSampler
from train.logs import read_metrics

REPO = Path(__file__).resolve().parents[1]
TINY = ["--depth", "10", "--width", "1", "--batch-size", "16", "--workers", "0", "--device", "cpu"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def svhn_run(tmp_path_factory):
    """One epoch of SVHN (real loader, tiny .mat files) through the command line; shared, read-only."""
    root = tmp_path_factory.mktemp("svhn")
    write_svhn(root / "data", n_train=60, n_test=20)
    argv = ["-d", "svhn", "--data-dir", root / "data", "--out", root / "run", "--epochs", "1",
            "--val-size", "12", "--dropout", "0.1", *TINY]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main([str(a) for a in argv]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


def test_svhn_epoch_writes_checkpoints_metrics_and_curves(svhn_run):
    run = svhn_run / "run"
    assert {"best.pt", "last.pt", "metrics.jsonl", "curves.png"} <= {p.name for p in run.iterdir()}
    assert not list(run.glob("*.tmp"))
    rows = read_metrics(run)
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    assert rows[0]["train_images"] == 48  # 60 - 12 validation images, each seen once
    for key in ("train_loss", "train_accuracy", "val_accuracy", "val_loss", "lr"):
        assert key in rows[0]


def test_svhn_best_checkpoint_records_metrics_with_their_data(svhn_run):
    best = torch.load(svhn_run / "run" / "best.pt", weights_only=True)
    assert "training_state" not in best  # weights and metadata only
    assert best["class_names"] == [str(d) for d in range(10)]  # label 10 of the .mat is the digit 0
    metrics = best["metrics"]
    assert "validation split" in metrics["val_accuracy"]["data"] and "12 images" in metrics["val_accuracy"]["data"]
    assert metrics["test_accuracy"]["data"] == "SVHN test split (20 images)"
    assert 0.0 <= metrics["test_accuracy"]["value"] <= 1.0
    assert best["dataset"] == "SVHN train, 48 images"
    assert best["train_config"]["val_size"] == 12 and best["train_config"]["dataset"] == "SVHN"
    last = load_checkpoint(svhn_run / "run" / "last.pt")
    assert last["epoch"] == 1 and last["training_state"]["batches_done"] == 0


def test_cifar10_epoch_takes_class_names_from_meta(tmp_path):
    write_cifar10(tmp_path / "data", n_per_batch=8, n_test=10)
    cfg = TrainConfig(dataset="CIFAR-10", data_dir=str(tmp_path / "data"), val_size=8, depth=10, width=1,
                      dropout=0.0, epochs=1, batch_size=16, lr=0.05, milestones=(1,), augment=True,
                      device="cpu")
    metrics = loop.fit(cfg, tmp_path / "run")
    assert metrics["test_accuracy"]["data"] == "CIFAR-10 test split (10 images)"
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["class_names"] == CIFAR10_TEST_NAMES
    assert best["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert read_metrics(tmp_path / "run")[0]["train_images"] == 32  # 5 batches x 8 - 8 validation


def test_cifar100_epoch_through_the_command_line(tmp_path, capsys):
    write_cifar100(tmp_path / "data", n_train=40, n_test=10)
    code, out, err = run_cli(["-d", "c100", "--data-dir", tmp_path / "data", "--out", tmp_path / "run",
                              "--epochs", "1", "--val-size", "8", *TINY], capsys)
    assert code == 0, err
    assert json.loads(out)["test_accuracy"]["data"] == "CIFAR-100 test split (10 images)"
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["class_names"][:2] == ["fine000", "fine001"] and len(best["class_names"]) == 100
    assert best["state_dict"]["fc.weight"].shape == (100, 64)


def test_missing_data_offline_exits_2_naming_files_and_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), "-d", "SVHN", "--data-dir", str(empty),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error) == 1, proc.stderr  # one paragraph
    for part in ("train_32x32.mat", "test_32x32.mat", str(empty / "svhn")):
        assert part in error[0]


def test_refuses_to_overwrite_a_run_without_resume(svhn_run, capsys):
    before = (svhn_run / "run" / "last.pt").read_bytes()
    code, _, err = run_cli(["-d", "svhn", "--data-dir", svhn_run / "data", "--out", svhn_run / "run",
                            "--epochs", "1", "--val-size", "12", *TINY], capsys)
    assert code == 2
    assert "already holds a run" in err and "--resume" in err and str(svhn_run / "run") in err
    assert (svhn_run / "run" / "last.pt").read_bytes() == before


@pytest.mark.parametrize("args, named", [
    (["-d", "mnist"], "'mnist'"),
    (["--depth", "12"], "depth 12"),
    (["--arch", "resnet", "--depth", "16"], "depth 16"),
    (["--lr", "-0.1"], "--lr -0.1"),
    (["--milestones", "30", "10"], "--milestones [30, 10]"),
    (["--milestones", "0", "10"], "--milestones [0, 10]"),
    (["--epochs", "0"], "--epochs 0"),
    (["--dropout", "1.5"], "dropout 1.5"),
])
def test_bad_arguments_exit_2_naming_the_value(tmp_path, capsys, args, named):
    code, _, err = run_cli(["--data-dir", tmp_path, "--out", tmp_path / "run", *args], capsys)
    assert code == 2
    assert named in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # rejected before anything is written


def test_unknown_dataset_error_lists_the_supported_ones(tmp_path, capsys):
    _, _, err = run_cli(["-d", "mnist", "--out", tmp_path / "run"], capsys)
    assert "SVHN" in err and "CIFAR-10" in err and "SynthDigits" in err


def test_resume_from_weights_only_checkpoint_is_refused(svhn_run, capsys):
    code, _, err = run_cli(["--resume", svhn_run / "run" / "best.pt", "--workers", "0"], capsys)
    assert code == 2
    assert "best.pt" in err and "weights only" in err and "last.pt" in err


def test_resume_can_extend_the_epochs_but_not_shorten_them(svhn_run, tmp_path, capsys):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(svhn_run / "run", run)
    code, _, err = run_cli(["--resume", run / "last.pt", "--epochs", "0", "--workers", "0"], capsys)
    assert code == 2 and "--epochs" in err
    code, _, _ = run_cli(["--resume", run / "last.pt", "--epochs", "2", "--workers", "0"], capsys)
    assert code == 0
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2


def test_resume_from_missing_checkpoint_is_refused(tmp_path, capsys):
    code, _, err = run_cli(["--resume", tmp_path / "nowhere" / "last.pt"], capsys)
    assert code == 2 and "nowhere" in err


def test_val_size_larger_than_the_data_is_refused(svhn_run, tmp_path, capsys):
    code, _, err = run_cli(["-d", "svhn", "--data-dir", svhn_run / "data", "--out", tmp_path / "run",
                            "--val-size", "500", "--epochs", "1", *TINY], capsys)
    assert code == 2
    assert "--val-size 500" in err and "60 images" in err


def _svhn_config(data_dir: Path, **overrides) -> TrainConfig:
    values = dict(dataset="SVHN", data_dir=str(data_dir), val_size=8, depth=10, width=1, dropout=0.3, epochs=2,
                  batch_size=16, lr=0.05, milestones=(1,), gamma=0.5, augment=True, device="cpu", seed=3)
    return TrainConfig(**{**values, **overrides})


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), f"weights differ at {k}"
    opt_a, opt_b = a["training_state"]["optimizer"], b["training_state"]["optimizer"]
    assert opt_a["param_groups"] == opt_b["param_groups"]
    assert opt_a["state"].keys() == opt_b["state"].keys() and opt_a["state"]
    for i in opt_a["state"]:
        for name, value in opt_a["state"][i].items():
            assert torch.equal(value, opt_b["state"][i][name]), f"optimizer {name} differs for parameter {i}"
    assert a["training_state"]["scheduler"] == b["training_state"]["scheduler"]


def test_resume_equals_uninterrupted_training(tmp_path, monkeypatch, capsys):
    write_svhn(tmp_path / "data", n_train=40, n_test=10)
    cfg = _svhn_config(tmp_path / "data")
    loop.fit(cfg, tmp_path / "straight")

    real_seed_epoch = loop.Run.seed_epoch

    def stop_before_second_epoch(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt  # what Ctrl-C between the epochs does
        real_seed_epoch(self, epoch)

    monkeypatch.setattr(loop.Run, "seed_epoch", stop_before_second_epoch)
    with pytest.raises(loop.Interrupted, match="--resume"):
        loop.fit(cfg, tmp_path / "resumed")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    code, _, err = run_cli(["--resume", tmp_path / "resumed" / "last.pt", "--workers", "0"], capsys)
    assert code == 0, err

    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")
    _assert_same_training_state(straight, resumed)
    drop = ("time", "images_per_s")
    rows = [[{k: v for k, v in r.items() if k not in drop} for r in read_metrics(tmp_path / d)]
            for d in ("straight", "resumed")]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    assert [r["lr"] for r in rows[0]] == pytest.approx([0.05, 0.025])  # the rate each epoch trained at


def test_same_seed_gives_the_same_network(tmp_path):
    """Weight initialisation is seeded too, so two runs of one command agree (what resume relies on)."""
    write_svhn(tmp_path / "data", n_train=20, n_test=10)
    cfg = _svhn_config(tmp_path / "data", epochs=1)
    runs = [loop.Run(cfg, tmp_path / f"run{i}") for i in range(2)]
    for k, v in runs[0].net.state_dict().items():
        assert torch.equal(v, runs[1].net.state_dict()[k]), k
    other = loop.Run(_svhn_config(tmp_path / "data", epochs=1, seed=4), tmp_path / "run3")
    assert not torch.equal(other.net.conv1.weight, runs[0].net.conv1.weight)


def test_init_starts_from_the_checkpoint_weights_and_names_it(svhn_run, tmp_path):
    """--init: fine-tuning starts from the given weights, with a fresh optimiser, and says so."""
    init = svhn_run / "run" / "best.pt"
    cfg = _svhn_config(svhn_run / "data", epochs=1, dropout=0.1, val_size=12, init=str(init))
    run = loop.Run(cfg, tmp_path / "fine")
    source = load_checkpoint(init)
    for k, v in source["state_dict"].items():
        assert torch.equal(v, run.net.state_dict()[k]), k
    assert not run.optimizer.state  # fresh momentum: fine-tuning, not resuming
    assert run.dataset_description == "SVHN train, 48 images; then fine-tuned on SVHN train, 48 images"
    scratch = loop.Run(_svhn_config(svhn_run / "data", epochs=1, dropout=0.1, val_size=12), tmp_path / "scratch")
    assert not torch.equal(scratch.net.conv1.weight, run.net.conv1.weight)


def test_resumed_fine_tuning_still_names_its_start(svhn_run, tmp_path, capsys):
    init = svhn_run / "run" / "best.pt"
    loop.fit(_svhn_config(svhn_run / "data", epochs=1, dropout=0.1, val_size=12, init=str(init)), tmp_path / "fine")
    code, _, err = run_cli(["--resume", tmp_path / "fine" / "last.pt", "--epochs", "2", "--workers", "0"], capsys)
    assert code == 0, err
    for name in ("last.pt", "best.pt"):
        assert load_checkpoint(tmp_path / "fine" / name)["dataset"] == \
            "SVHN train, 48 images; then fine-tuned on SVHN train, 48 images", name


def test_init_with_another_architecture_is_refused(svhn_run, tmp_path, capsys):
    code, _, err = run_cli(["-d", "svhn", "--data-dir", svhn_run / "data", "--out", tmp_path / "run",
                            "--epochs", "1", "--val-size", "12", "--init", svhn_run / "run" / "best.pt",
                            *TINY[:2], "--width", "2", *TINY[4:]], capsys)
    assert code == 2
    assert "--init" in err and "best.pt" in err and "WRN-10-2" in err and "--width" in err
    assert not (tmp_path / "run").exists()


def test_tune_trains_only_the_named_parts_of_an_init_network_and_says_so(svhn_run, tmp_path, caplog):
    """--tune conv1 group1 (surgical fine-tuning): those parts move, the others keep --init's weights
    (batch-norm statistics still follow the data), and the checkpoint's data description says so."""
    init = svhn_run / "run" / "best.pt"
    cfg = _svhn_config(svhn_run / "data", epochs=1, dropout=0.1, val_size=12, init=str(init), tune=("conv1", "group1"))
    with caplog.at_level(logging.INFO, logger="train.loop"):
        loop.fit(cfg, tmp_path / "fine")
    assert re.search(r"WRN-10-1, [\d,]+ parameters \([\d,]+ of them trained\)", caplog.text)
    before, tuned = load_checkpoint(init), load_checkpoint(tmp_path / "fine" / "last.pt")
    for key, value in before["state_dict"].items():
        if "running_" in key or "num_batches" in key:
            continue
        moved = not torch.equal(value, tuned["state_dict"][key])
        if key.startswith(("conv1.", "group1.")) and key.endswith("conv1.weight"):
            assert moved, key
        elif not key.startswith(("conv1.", "group1.")):
            assert not moved, key
    assert "then fine-tuned (conv1 group1 only) on" in tuned["dataset"]
    assert tuned["train_config"]["tune"] == ["conv1", "group1"]


@pytest.mark.parametrize("extra, message", [
    (["--tune", "group9"], "Invalid --tune group9: the parts of this network are conv1 group1 group2 group3 bn fc."),
    (["--tune", "conv1"], "--tune trains part of a network that starts from --init: give --init."),
])
def test_tune_refuses_an_unknown_part_or_a_run_without_init(svhn_run, tmp_path, capsys, extra, message):
    init = ["--init", svhn_run / "run" / "best.pt"] if "group9" in extra else []
    code, _, err = run_cli(["-d", "svhn", "--data-dir", svhn_run / "data", "--out", tmp_path / "run", "--epochs", "1",
                            "--val-size", "12", "--dropout", "0.1", *init, *extra, *TINY], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


class StderrReader:
    """Collect a subprocess's stderr in the background (tqdm writes '\\r' without newlines)."""

    def __init__(self, stream):
        self.text, self._stream = "", stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for chunk in iter(lambda: self._stream.read1(4096), b""):
            self.text += chunk.decode(errors="replace")

    def wait_for(self, pattern: str, proc: subprocess.Popen, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if re.search(pattern, self.text):
                return True
            time.sleep(0.05)
        return bool(re.search(pattern, self.text))

    def join(self):
        self._thread.join(timeout=10)


STEPS = 160


def _sigint_default() -> None:
    """In the child: Ctrl-C acts by default even when the suite itself was started in the background
    (a shell starts background commands with SIGINT ignored, and Python then keeps ignoring it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_mid_epoch_saves_a_resumable_checkpoint(tmp_path, capsys):
    write_svhn(tmp_path / "data", n_train=STEPS * 16 + 16, n_test=10)   # 16 images a step
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "-d", "svhn", "--data-dir", str(tmp_path / "data"),
                             "--out", str(run), "--epochs", "1", "--val-size", "16", *TINY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(), cwd=tmp_path,
                            preexec_fn=_sigint_default)
    reader = StderrReader(proc.stderr)
    try:
        # tqdm shows "epoch 1/1: ... | 3/160 [" once three of the 160 steps are done: then we are mid-epoch
        # (enough steps that a fast CPU, bf16 autocast, cannot finish the epoch before the signal lands).
        started = reader.wait_for(rf"epoch 1/1:[^\r]*\| ([3-9]|[1-9]\d)/{STEPS} \[", proc, timeout=120)
        assert started, reader.text[-2000:]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join()
    assert code == 130, reader.text[-2000:]
    assert f"--resume {run / 'last.pt'}" in reader.text and "Traceback" not in reader.text
    raw = torch.load(run / "last.pt", weights_only=True)
    done = raw["training_state"]["batches_done"]
    assert raw["epoch"] == 0 and 3 <= done < STEPS
    assert not (run / "best.pt").exists()

    code, out, err = run_cli(["--resume", run / "last.pt", "--workers", "0"], capsys)
    assert code == 0, err
    rows = read_metrics(run)
    assert len(rows) == 1 and rows[0]["train_images"] == STEPS * 16 - done * 16  # only the rest of the epoch
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert "test_accuracy" in load_checkpoint(run / "best.pt")["metrics"]


def test_two_process_ddp_run_covers_the_training_set_once(tmp_path):
    write_svhn(tmp_path / "data", n_train=72, n_test=10)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "main.py"), "-d", "svhn", "--data-dir", str(tmp_path / "data"), "--out", str(run),
           "--epochs", "1", "--val-size", "8", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "curves.png", "last.pt", "metrics.jsonl"]
    rows = read_metrics(run)
    assert len(rows) == 1  # only rank 0 writes
    assert rows[0]["train_images"] == 64  # 72 - 8: 2 ranks x 2 batches x 16, no image twice or missed
    best = load_checkpoint(run / "best.pt")
    assert not any(k.startswith("module.") for k in best["state_dict"])
    assert "test_accuracy" in best["metrics"]


def test_epoch_sampler_shards_cover_every_index_and_skip_resumes():
    shards = [list(EpochSampler(10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(sum(shards, [])) == set(range(10))
    sampler = EpochSampler(10, seed=1)
    full = list(sampler)
    sampler.set_epoch(0, skip=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    sampler.set_epoch(1)
    assert list(sampler) != full and sorted(sampler) == list(range(10))


def test_mixed_sampler_puts_the_asked_share_of_extra_images_in_every_batch():
    sampler = MixedEpochSampler(n_base=100, n_extra=7, weight=0.25, batch_size=16, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 6 * 16  # 100 // 16 steps, as without the extra images
    for b in range(6):
        batch = indices[b * 16:(b + 1) * 16]
        assert sum(i >= 100 for i in batch) == 4  # 0.25 x 16 from ConcatDataset([base, extra])
    assert len(set(i for i in indices if i < 100)) == 72  # no base image twice in an epoch
    assert set(i for i in indices if i >= 100) == set(range(100, 107))  # the extra ones cycle
    sampler.set_epoch(0, skip=32)
    assert list(sampler) == indices[32:]  # resumes mid-epoch


def test_train_npz_images_join_the_batches_and_the_description(tmp_path):
    write_svhn(tmp_path / "data", n_train=40, n_test=8)
    npz = write_npz(tmp_path / "real.npz", 20)
    cfg = _svhn_config(tmp_path / "data", train_npz=(str(npz),), train_npz_weight=0.5, folds=4, holdout_fold=1)
    run = loop.Run(cfg, tmp_path / "run")
    assert len(run.train_loader.dataset) == 32 + 15  # 40 - 8 validation; 20 less one fold of 5
    x, _ = next(iter(run.train_loader))
    assert x.shape == (16, 3, 32, 32) and run.sampler.per_batch == 8
    assert "15 labelled images of real.npz (fold 1 of 4" in run.dataset_description


def test_what_weights_trained_on_follows_them_and_no_accuracy_is_printed_on_it(tmp_path, capsys):
    """seen_npz: a fine-tune's real images stay with its weights through --init, WiSE-FT and soups,
    so no command prints an accuracy on images they trained on, and no cross-validation starts there."""
    from model.checkpoint import seen_npz
    write_svhn(tmp_path / "data", n_train=40, n_test=8)
    npz = write_npz(tmp_path / "real.npz", 20)
    tuned = save_checkpoint(loop.Run(_svhn_config(tmp_path / "data", train_npz=(str(npz),)), tmp_path / "a")
                            .checkpoint(with_state=False), tmp_path / "tuned.pt")
    plain = save_checkpoint(loop.Run(_svhn_config(tmp_path / "data"), tmp_path / "b").checkpoint(with_state=False),
                            tmp_path / "plain.pt")
    assert seen_npz(load_checkpoint(tuned)) == ["real.npz"] and seen_npz(load_checkpoint(plain)) == []
    child = loop.Run(_svhn_config(tmp_path / "data", init=str(tuned)), tmp_path / "c")   # no --train-npz of its own
    assert child.checkpoint(with_state=False)["seen_npz"] == ["real.npz"]
    with pytest.raises(ValueError, match="Invalid --eval-npz .*real.npz.*--cross-validate"):
        loop.Run(_svhn_config(tmp_path / "data", init=str(tuned), eval_npz=str(npz)), tmp_path / "d")
    assert crossval.trained_on(wiseft.wise_ft(plain, tuned, 0.5, tmp_path / "w.pt"), npz)
    assert crossval.trained_on(wiseft.average_weights([plain, tuned], tmp_path / "s.pt"), npz)
    assert not crossval.trained_on(wiseft.average_weights([plain, plain], tmp_path / "p.pt"), npz)
    old = load_checkpoint(tuned)
    del old["seen_npz"]                                             # a checkpoint from before the field
    assert seen_npz(old) == ["real.npz"]
    code, _, err = run_cli(["--evaluate", tuned, "--eval-npz", npz, "--device", "cpu"], capsys)
    assert code == 2 and "trained on real.npz" in err and "cross-validation" in err
    code, _, err = run_cli(["--evaluate", plain, "--eval-npz", npz, "--device", "cpu"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["-d", "svhn", "--data-dir", tmp_path / "data", "--out", tmp_path / "cv", "--epochs", "1",
                            "--val-size", "8", "--dropout", "0.3", "--init", tuned, "--cross-validate", npz, *TINY], capsys)
    assert code == 2 and "Invalid --init" in err and "trained on real.npz" in err and not (tmp_path / "cv").exists()


def test_bad_train_npz_exits_2_naming_the_file(svhn_run, tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((4, 32, 32, 3), np.uint8), y=np.array([0, 1, 2, 12]))
    code, _, err = run_cli(["-d", "svhn", "--data-dir", svhn_run / "data", "--out", tmp_path / "run",
                            "--epochs", "1", "--val-size", "8", "--train-npz", bad, *TINY], capsys)
    assert code == 2 and "bad.npz: labels must lie in 0..9" in err and not (tmp_path / "run").exists()


def test_cpu_bf16_autocast_is_the_default_where_the_cpu_has_it_and_falls_back(monkeypatch):
    rt = engine.setup_runtime("cpu", amp=True)
    assert rt.amp_dtype == (torch.bfloat16 if engine.cpu_has_bf16() else None)
    assert engine.setup_runtime("cpu", amp=False).amp_dtype is None  # --no-amp
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: (_ for _ in ()).throw(RuntimeError))
    assert engine.cpu_has_bf16() is False and engine.setup_runtime("cpu", amp=True).amp_dtype is None


def test_a_training_step_runs_under_cpu_bf16_autocast():
    from model.networks import ArchConfig, build_network
    rt = engine.Runtime(torch.device("cpu"), torch.bfloat16)
    torch.manual_seed(0)
    net = build_network(ArchConfig("wrn", 10, 1)).to(memory_format=rt.memory_format)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(10, (8,)))]
    stats = engine.train_one_epoch(net, batches, opt, torch.amp.GradScaler("cpu", enabled=False), rt)
    assert stats["train_images"] == 8 and np.isfinite(stats["train_loss"])
    assert all(p.dtype == torch.float32 for p in net.parameters())  # weights stay fp32
    assert all(not torch.equal(a, p) for a, p in zip(before, net.parameters()) if p.requires_grad)


def test_cross_validation_trains_a_run_per_fold_and_one_without(tmp_path, capsys):
    write_svhn(tmp_path / "data", n_train=40, n_test=8)
    npz = write_npz(tmp_path / "real.npz", 30)
    argv = ["-d", "svhn", "--data-dir", tmp_path / "data", "--out", tmp_path / "cv", "--epochs", "1",
            "--val-size", "8", "--dropout", "0.3", "--folds", "3", "--train-npz-weight", "0.5",
            "--cross-validate", npz, *TINY]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "cv").iterdir()) == ["crossval.json", "fold-0", "fold-1", "fold-2", "no-real"]
    result = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [r["images"] for r in result["folds"]] == [10, 10, 10]
    assert "3-fold cross-validation on real.npz (30 images)" in out and "without real" in out
    assert "fold 2 of 3" in load_checkpoint(tmp_path / "cv" / "fold-2" / "last.pt")["dataset"]
    assert "real.npz" not in load_checkpoint(tmp_path / "cv" / "no-real" / "last.pt")["dataset"]
    code, out2, _ = run_cli([*argv, "--final"], capsys)  # again: the runs have finished, so it only scores them
    assert code == 0 and out2.splitlines()[-2] == out.splitlines()[-1]
    final = load_checkpoint(tmp_path / "cv" / "all" / "final.pt")
    assert "training_state" not in final and "30 labelled images of real.npz" in final["dataset"]
    assert final["metrics"]["crossval_accuracy"]["value"] == result["with"]
    assert "3-fold cross-validation on real.npz" in final["metrics"]["crossval_accuracy"]["data"]
    assert crossval.trained_on(tmp_path / "cv" / "all" / "final.pt", npz)      # benches must score it by fold
    assert not crossval.trained_on(tmp_path / "cv" / "no-real" / "last.pt", npz)
    # WiSE-FT: the finished runs are averaged with the --init weights (here the baseline's) and scored
    code, out3, err = run_cli([*argv, "--wise-ft", "0.5", "--init", tmp_path / "cv" / "no-real" / "last.pt"], capsys)
    assert code == 0, err
    assert "WiSE-FT 0.5 with the --init weights" in out3 and "fine-tune alone" in out3
    averaged = load_checkpoint(tmp_path / "cv" / "fold-1" / "wise-ft-0.5.pt")
    assert "WiSE-FT: weights 0.5 x this fine-tune + 0.5 x the weights it started from (last.pt)" in averaged["dataset"]
    assert averaged["metrics"] == {}  # one run's accuracies do not describe the averaged weights
    result = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert result["finetune_alone"] == pytest.approx(float(out.splitlines()[-1].split()[2]))  # the runs alone, as before
    # benches find each fold's scored model and the fold of every image, as the folds were dealt
    labels = np.load(npz)["y"]
    models, fold_of = crossval.fold_models(tmp_path / "cv", labels)
    assert models == [tmp_path / "cv" / f"fold-{f}" / "wise-ft-0.5.pt" for f in range(3)]
    assert fold_of.tolist() == datasets.stratified_folds(labels, 3, 0).tolist()
    with pytest.raises(ValueError, match="cross-validated 30 images"):
        crossval.fold_models(tmp_path / "cv", labels[:20])
    (tmp_path / "cv" / "fold-2" / "wise-ft-0.5.pt").unlink()
    with pytest.raises(FileNotFoundError, match="fold-2"):
        crossval.fold_models(tmp_path / "cv", labels)
    with pytest.raises(FileNotFoundError, match="crossval.json: no such file"):
        crossval.fold_models(tmp_path, labels)


def test_a_soup_trains_each_run_once_per_seed_and_scores_their_averaged_weights(tmp_path, capsys):
    write_svhn(tmp_path / "data", n_train=40, n_test=8)
    npz = write_npz(tmp_path / "real.npz", 20)
    argv = ["-d", "svhn", "--data-dir", tmp_path / "data", "--out", tmp_path / "cv", "--epochs", "1",
            "--val-size", "8", "--folds", "2", "--train-npz-weight", "0.5", "--seed", "3", "--soup", "2",
            "--cross-validate", npz, *TINY]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    cv = tmp_path / "cv"
    assert sorted(p.name for p in cv.iterdir()) == ["crossval.json", "fold-0", "fold-1", "no-real", "seed-3", "seed-4"]
    assert sorted(p.name for p in (cv / "seed-4").iterdir()) == ["fold-0", "fold-1", "no-real"]
    assert "model soup of 2 runs per fold (seeds 3 to 4)" in out
    members = [load_checkpoint(cv / f"seed-{s}" / "fold-1" / "last.pt") for s in (3, 4)]
    assert members[0]["train_config"]["seed"] == 3 and members[1]["train_config"]["seed"] == 4
    soup = load_checkpoint(cv / "fold-1" / "soup.pt")
    assert "model soup: the weights of 2 such runs averaged (seed-3/fold-1, seed-4/fold-1)" in soup["dataset"]
    name = next(n for n, t in members[0]["state_dict"].items()
                if t.is_floating_point() and not torch.equal(t, members[1]["state_dict"][n]))
    torch.testing.assert_close(soup["state_dict"][name],
                               (members[0]["state_dict"][name] + members[1]["state_dict"][name]) / 2)
    assert json.loads((cv / "crossval.json").read_text())["protocol"]["soup"] == 2
    with pytest.raises(ValueError, match="--soup 0"):
        TrainConfig(soup=0)


def test_wise_ft_averages_the_weights_with_the_initial_ones(tmp_path):
    from model.checkpoint import make_checkpoint, save_checkpoint
    from model.networks import ArchConfig, build_network
    from train.wiseft import wise_ft

    arch = ArchConfig("wrn", 10, 1)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_network(arch)
        paths.append(tmp_path / f"{seed}.pt")
        save_checkpoint(make_checkpoint(arch, net.state_dict(), dataset="d", class_names=list("0123456789"),
                                        input_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3), paths[-1])
    a, b = (load_checkpoint(p)["state_dict"] for p in paths)
    mixed = load_checkpoint(wise_ft(paths[1], paths[0], 0.25, tmp_path / "w.pt"))["state_dict"]
    name = next(n for n, t in a.items() if t.is_floating_point() and not torch.equal(t, b[n]))
    torch.testing.assert_close(mixed[name], 0.25 * b[name] + 0.75 * a[name])
    ints = [n for n, t in b.items() if not t.is_floating_point()]
    assert ints and all(torch.equal(mixed[n], b[n]) for n in ints)       # counters are the fine-tune's
    with pytest.raises(ValueError, match="must be in"):
        wise_ft(paths[1], paths[0], 1.5, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="give --init"):
        TrainConfig(wise_ft=0.5)
