"""Why the net says what it says, and how far to believe it: Grad-CAM heatmaps, temperature calibration,
accuracy under corrupted inputs."""
