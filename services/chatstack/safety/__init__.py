"""The safety stage: what checks the input and monitors the output of a chat (issue 27)."""
