"""A model's version for provenance (preference events carry the generator's and the reward
model's): a short hash of a model directory's config and of its weight files' names, sizes and
modification times, so a model retrained in place (same shapes, new weights) gets a new version.
Cheap (file stats, no reading of weights). A hub id, not a directory, has no version here ("")."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def model_version(model: str) -> str:
    """12 hex digits identifying the files of the model directory `model` ("" if not a dir)."""
    root = Path(model)
    if not root.is_dir():
        return ""
    digest = hashlib.blake2b(digest_size=6)
    config = root / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for path in sorted(p for p in root.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
