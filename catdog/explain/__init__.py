"""Why the net says what it says, and how far to believe it: Grad-CAM heatmaps, calibration error and reliability
diagrams, accuracy under corrupted inputs."""
