"""Writing safely: the output-safety rule and locks (guard), atomic writers (writers)."""
