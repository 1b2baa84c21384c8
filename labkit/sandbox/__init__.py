"""The sandbox: the lab in miniature on this machine, from real software."""
