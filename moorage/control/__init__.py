"""The control plane: the only writer of state."""
