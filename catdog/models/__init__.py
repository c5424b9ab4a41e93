"""The network: spec.py (its shape, checked; no torch), convnet.py (its layers), classifier.py (the
LightningModule: loss, metrics, optimizer), augment_spec.py (model.augment, checked; no torch), augment.py and
policies.py (batch augmentation), rng_state.py (random state in checkpoints), model_spec.py (the loss, augmentation,
progressive resizing and whitening rules, checked; no torch), resize.py (progressive resizing), whiten.py (the whitened first layer), freeze.py (model.freeze's fixed stages),
schedule.py (the learning-rate schedule, planned again when a resumed run is longer). Import the modules
themselves: this package imports nothing, so checking a config stays light."""
