"""The network and its training. A network kind is three pieces: settings (convnet_settings.py, resnet_settings.py;
checked, no torch), a builder (convnet.py, resnet.py) and a card in configs/model/; arch.py is the table of kinds
and network.py what every builder returns. settings.py holds the model.* settings (loss, augmentation, progressive
resizing, whitening, freeze; checked, no torch) and augment_settings.py model.augment's. classifier.py is the
LightningModule (loss, metrics, optimizer) with schedule.py (the learning-rate schedule, planned again when a resumed
run is longer), freeze.py, shards.py (DDP's padded photos left out), temperature.py (probability calibration),
augment.py and policies.py (batch augmentation), resize.py (progressive resizing), whiten.py, rng_state.py. Import
the modules themselves: this package imports nothing, so checking a config stays light."""
