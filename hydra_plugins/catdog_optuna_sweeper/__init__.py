"""catdog's Hydra sweeper on Optuna's ask-and-tell API (`hparams_search=optuna`, README: Hyperparameter search)."""
