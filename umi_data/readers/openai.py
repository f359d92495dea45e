"""OpenAI-style chat trajectories → canonical trajectories (being written)."""

FORMAT = "openai"


def sniff(obj):
    return isinstance(obj, dict) and "messages" in obj


def read(obj, source, traj_id):
    raise NotImplementedError
