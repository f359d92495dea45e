"""What the three command lines share: the exit-code policy (errors) and terminal rules (progress,
consoles, Ctrl-C)."""
