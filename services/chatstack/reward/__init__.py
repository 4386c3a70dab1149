"""The reward service: a reward model (sequence classifier, one label) scoring answers via vLLM."""
