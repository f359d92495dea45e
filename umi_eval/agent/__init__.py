"""umieval run: the agent loop and DFSDT, tool executors, query readers."""
