"""One module per backend. Each source's ``poll()`` returns an immutable snapshot and never raises."""
