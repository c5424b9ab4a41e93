"""Lightning callbacks configured in configs/callbacks/."""
