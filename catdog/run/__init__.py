"""One training run: its config checks, hardware and speed settings, resume, provenance and the run itself."""
