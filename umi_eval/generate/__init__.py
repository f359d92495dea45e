"""umieval generate: test steps and their prompts, clean-up and routing of outputs, model backends,
the prediction run."""
