"""The choices of the data config that other modules check without importing the DataModule (and Lightning)."""

LOADERS = ("dataloader", "tensor")
