"""Lookahead: slow weights pulled toward the trained ones every k steps, training restarting from them."""

import pytest
import pytorch_lightning as pl
import torch
from test_ema import first_conv, fit

from catdog.callbacks.lookahead import Lookahead
from catdog.errors import CatdogError


class FastWeights(pl.Callback):
    """The first conv's weight at the start and after every optimizer step, before Lookahead (listed after)."""

    def __init__(self):
        self.weights = []

    def on_train_start(self, trainer, pl_module):
        self.weights.append(first_conv(pl_module).clone())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.weights.append(first_conv(pl_module).clone())


def test_schedule_of_the_share_the_slow_weights_keep():
    assert Lookahead(alpha=0.5).keep(10, 100) == 0.5
    assert Lookahead(alpha=0.2, ramp=3).keep(50, 100) == pytest.approx(0.8 * 0.125)
    assert Lookahead(alpha=0.2, ramp=3).keep(0, 100) == 0
    assert Lookahead(alpha=0.2, ramp=3).keep(7, 0) == pytest.approx(0.8)  # no known end: fully ramped
    with pytest.raises(CatdogError, match="alpha=0"):
        Lookahead(alpha=0)


def test_the_weights_restart_from_the_slow_ones_every_k_steps(image_folder, tmp_path):
    # 30 training images in batches of 8: 4 steps an epoch, 8 in all; syncs after steps 3, 6 and the last, 8
    recorder, lookahead = FastWeights(), Lookahead(k=3, alpha=0.4, ramp=1)
    model = fit(image_folder, tmp_path, epochs=2, callbacks=[recorder, lookahead])
    slow, synced = recorder.weights[0], []
    for step, fast in enumerate(recorder.weights[1:], start=1):
        if step % 3 == 0 or step == 8:
            slow = torch.lerp(slow, fast, 1 - lookahead.keep(step, 8))
            synced.append(step)
    assert synced == [3, 6, 8] and len(recorder.weights) == 9
    assert torch.allclose(first_conv(model), slow, atol=1e-6)
    assert not torch.allclose(slow, recorder.weights[-1], atol=1e-4)
    # between syncs training goes on from the slow weights: step 4 starts where the sync after step 3 left them
    assert not torch.allclose(recorder.weights[4], recorder.weights[3], atol=1e-6)


class StopAfterFirstEpoch(pl.Callback):
    """A run of 2 epochs killed after the first one's checkpoint (the total steps, which the syncs follow, stay 8)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def test_a_resumed_run_continues_from_the_slow_weights(image_folder, tmp_path):
    straight = fit(image_folder, tmp_path / "a", epochs=2, callbacks=[Lookahead(k=3, alpha=0.4)])
    fit(image_folder, tmp_path / "b", epochs=2, callbacks=[Lookahead(k=3, alpha=0.4), StopAfterFirstEpoch()])
    resumed = fit(
        image_folder,
        tmp_path / "b",
        epochs=2,
        callbacks=[Lookahead(k=3, alpha=0.4)],
        ckpt_path=tmp_path / "b" / "ckpt" / "last.ckpt",
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-5), name
