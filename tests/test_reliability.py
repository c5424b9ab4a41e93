"""Nothing lost when a run is killed or hits a full disk while preparing or saving: batch order, caches, checkpoints
written on an interrupt, messages (resumes of training runs: test_resume.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest
import torch
from helpers import ROOT

from catdog.data.dataset import prepare_dataset
from catdog.data.loaders import SeededShuffle
from catdog.data.settings import DataSettings
from catdog.run.resume import SaveOnInterrupt
from catdog.shell.cli import user_error


def test_the_batch_order_of_an_epoch_depends_only_on_seed_and_epoch():
    a, b = SeededShuffle(50, seed=1), SeededShuffle(50, seed=1)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        orders.append(list(a))
    b.set_epoch(2)  # a resumed process starts at epoch 2 without drawing epochs 0 and 1
    assert list(b) == orders[2] and orders[0] != orders[1] != orders[2]
    assert sorted(orders[1]) == list(range(50))
    assert list(SeededShuffle(50, seed=2)) != orders[0]


def test_lightning_sets_the_epoch_of_the_tensor_path_sampler(tmp_path):
    from lightning_fabric.utilities.data import _set_sampler_epoch

    from catdog.data.loaders import TensorBatches

    batches = TensorBatches(torch.zeros(10, 2, 2, 1), torch.arange(10), 4, SeededShuffle(10))
    _set_sampler_epoch(batches, 5)  # what the fit loop calls on every train loader before each epoch
    assert batches.sampler.epoch == 5


@pytest.mark.parametrize("path", ["dataloader", "tensor"])
def test_a_training_loader_resumes_mid_epoch_where_it_stopped(path):
    from pytorch_lightning.utilities.combined_loader import CombinedLoader

    from catdog.data.loaders import ResumableDataLoader, TensorBatches

    def loader():
        if path == "tensor":
            return TensorBatches(torch.zeros(10, 1, 1, 1), torch.arange(10), 3, SeededShuffle(10))
        return ResumableDataLoader(torch.arange(10), batch_size=3, sampler=SeededShuffle(10))

    def labels(batches) -> list[list[int]]:
        return [(b[1] if path == "tensor" else b).tolist() for b in batches]

    first = loader()
    first.sampler.set_epoch(4)
    batches = iter(first)
    done = [next(batches), next(batches)]  # stopped after two batches of epoch 4
    state = CombinedLoader(first)._state_dicts()  # what Lightning writes into the checkpoint
    resumed = loader()
    CombinedLoader(resumed)._load_state_dicts(state)
    resumed.sampler.set_epoch(4)
    whole = loader()
    whole.sampler.set_epoch(4)
    assert labels(done) + labels(resumed) == labels(whole)  # the rest of epoch 4, once
    ended = loader()
    ended.load_state_dict({"epoch": 4, "batches_done": 4})  # saved at the end of epoch 4
    ended.sampler.set_epoch(5)
    assert len(labels(ended)) == 4  # epoch 5 is whole


def test_a_build_killed_while_writing_leaves_no_cache_and_the_next_build_finishes(image_folder, tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys, time; from catdog.data import cache\n"
        "real = cache.write_synced\n"
        "def pause_at_report(path, write, binary=True):  # report.json is written last: arrays already on disk\n"
        "    if path.name == 'report.json':\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(600)\n"
        "    real(path, write, binary)\n"
        "cache.write_synced = pause_at_report\n"
        "from catdog.data.dataset import prepare_dataset\n"
        "from catdog.data.settings import DataSettings\n"
        "prepare_dataset(DataSettings.from_config(dict(source=sys.argv[1], resolution=16, cache_dir=sys.argv[2], progress=False, num_workers=1)))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(image_folder), str(cache)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (stale,) = cache.iterdir()
    assert stale.name.startswith(".") and stale.name.endswith(".tmp") and (stale / "images.npy").exists()

    alive = cache / f".other-16px.{socket_host()}-{os.getpid()}.0123abcd.tmp"  # a live process's build: kept
    alive.mkdir()
    arrays = prepare_dataset(
        DataSettings.from_config(
            dict(source=str(image_folder), resolution=16, cache_dir=str(cache), progress=False, num_workers=1)
        )
    )
    assert arrays.images.shape == (40, 16, 16, 1) and (arrays.directory / "report.json").exists()
    assert sorted(p.name for p in cache.iterdir()) == sorted([arrays.directory.name, alive.name])


def socket_host() -> str:
    import socket

    return socket.gethostname()


# --- checkpoints ---


def test_an_interrupt_saves_last_ckpt_an_error_does_not(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    saved = []
    callback, trainer = SaveOnInterrupt(str(tmp_path)), pl.Trainer(logger=False, enable_checkpointing=False)
    trainer.save_checkpoint = saved.append
    # SIGTERM, submitit's requeue on SIGUSR2 (sys.exit), Ctrl-C; then a bug, whose state may be broken
    for exception in (SIGTERMException(), SystemExit(-1), KeyboardInterrupt(), ValueError("a bug")):
        callback.on_exception(trainer, None, exception)
    assert saved == [tmp_path / "last.ckpt"] * 3


def test_ctrl_c_while_training_stops_at_the_next_batch_and_a_second_one_at_once(tmp_path):
    import pytorch_lightning as pl
    from helpers import quiet_trainer
    from torch.utils.data import DataLoader, TensorDataset

    class Steps(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer, self.hook_ran_on = torch.nn.Linear(2, 1), []

        def training_step(self, batch, i):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), 0.1)

        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.ones(8, 2)), batch_size=1)

    class CtrlCAfterBatch2(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, i):
            if i == 2:
                os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, inside a hook
                module.hook_ran_on.append(i)  # and the hook goes on: nothing was raised in it

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        quiet_trainer(callbacks=[SaveOnInterrupt(str(tmp_path))]).fit(Steps())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back after training

        module, saved = Steps(), []
        trainer = quiet_trainer(callbacks=[CtrlCAfterBatch2(), SaveOnInterrupt(str(tmp_path))])
        trainer.save_checkpoint = lambda path: saved.append((path, trainer.global_step))
        with pytest.raises(SystemExit):  # Lightning ends a KeyboardInterrupt with sys.exit(1)
            trainer.fit(module)
        # stopped at batch 3's start: 3 steps done and saved
        assert module.hook_ran_on == [2] and saved == [(tmp_path / "last.ckpt", 3)]

        class CtrlCAfterTheLastBatch(pl.Callback):
            def on_train_end(self, trainer, module):
                os.kill(os.getpid(), signal.SIGINT)

        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning left it ignored
        saved.clear()
        trainer = quiet_trainer(callbacks=[CtrlCAfterTheLastBatch(), SaveOnInterrupt(str(tmp_path))])
        trainer.save_checkpoint = lambda path: saved.append((path, trainer.global_step))
        with pytest.raises(SystemExit):  # not lost: the run stops before anything after training
            trainer.fit(Steps())
        assert saved == [(tmp_path / "last.ckpt", 8)]
    finally:
        signal.signal(signal.SIGINT, previous)

    callback = SaveOnInterrupt(str(tmp_path))
    callback.ctrl_c(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        callback.ctrl_c(signal.SIGINT, None)


def test_no_space_anywhere_is_recognised_as_a_user_error(tmp_path):
    try:
        try:
            open(tmp_path / "x", "w").close()
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "metrics.json"))
        except OSError as e:
            raise RuntimeError("while logging") from e
    except RuntimeError as e:
        message = user_error(e)
    assert "No space left on the device" in message and str(tmp_path / "metrics.json") in message
    assert "Free some space" in message
