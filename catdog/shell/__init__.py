"""The commands' shell: what every command does with its command line, its errors and its exit (cli.py), mistyped
keys (config_errors.py), room for Hydra's files (disk_space.py) and the command that resumes a run (rerun.py)."""
