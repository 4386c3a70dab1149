"""The RLHF data loop's offline half: preference events out of the session store as training data."""
