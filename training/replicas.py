"""Checking that data-parallel replicas hold the same weights."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def parameter_digest(module: nn.Module) -> str:
    """SHA-256 over every parameter's name, dtype, shape and bytes (sorted by name): equal
    digests mean bitwise-equal weights."""
    digest = hashlib.sha256()
    for name, param in sorted(module.named_parameters(), key=lambda item: item[0]):
        tensor = param.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
