"""Camera hardware: backends that produce H.264 frames, board detection, watchdog."""
