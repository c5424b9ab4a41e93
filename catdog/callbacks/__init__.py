"""Lightning callbacks that show in TensorBoard what the network sees and learns."""
