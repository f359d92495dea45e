"""umi_eval: run and measure a trained α-UMi trio (or a single model).

The flow: test steps (``steps``) from any input umidata reads → ``generate`` (planner, routed to the
caller or summarizer) → ``score`` (the paper's step-level metrics); and ``run``, the agent loop
against real tools, whose runs are canonical trajectories again.
"""

from umi_data import __version__

__all__ = ["__version__"]
