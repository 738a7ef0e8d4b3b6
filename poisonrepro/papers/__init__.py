"""One module per paper: the experiments its notebook runs."""
