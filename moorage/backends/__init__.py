"""Where instances run. Only backends/local.py spawns processes."""
