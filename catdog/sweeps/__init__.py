"""Many runs of one experiment: the Optuna study, the files each job leaves, and the summary, significance tests
and report made of them."""
