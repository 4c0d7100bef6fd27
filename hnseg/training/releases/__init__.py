"""Training-data release readers: a release folder → patients → training samples (socket → file)."""
