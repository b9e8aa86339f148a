"""Dataset versions: immutable snapshots of a dataset, their splits, forks and comparisons."""
