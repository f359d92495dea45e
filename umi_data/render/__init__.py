"""Rendering a trajectory for training: α-UMi items and tool docs, the template engine, the role
rules, the chat rendering, and the parser of role outputs (their inverse)."""
