"""`python -m catdog.audit`: find mislabeled, non-pet and near-copy photos before they mislead a run."""
