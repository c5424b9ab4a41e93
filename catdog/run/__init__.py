"""One training run and what surrounds it: config checks, hardware choices, resume, errors and exits."""
