"""Where models compute: the device setting ('auto' | 'cpu' | 'cuda') as a `torch.device`, and torch's threads.

The one home of both rules: runners, loaders, training commands and benchmarks all go through here.
"""

from __future__ import annotations

import logging

import torch

from signals.core.errors import InvalidInput

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
CPU = torch.device("cpu")


def resolve_device(setting: str | torch.device) -> torch.device:
    """'auto' takes the GPU when one is usable, else the CPU; 'cuda' without a GPU is a configuration error.

    Failing at start beats a runner that silently serves from the CPU when the operator asked for a GPU.
    """
    if isinstance(setting, torch.device):
        setting = str(setting)
    choice = setting.strip().lower()
    if choice.startswith("cuda:"):
        choice, index = "cuda", choice.partition(":")[2]
    else:
        index = ""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise InvalidInput(
                "SIGNALS_DEVICE=cuda, but CUDA is not available here (torch "
                f"{torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                "set SIGNALS_DEVICE=auto or cpu"
            )
        return torch.device(f"cuda:{index}" if index else "cuda")
    if choice == "cpu":
        return torch.device("cpu")
    raise InvalidInput(f"device setting {setting!r} is not one of {', '.join(DEVICE_CHOICES)}")


def configure_torch(device: torch.device = CPU) -> None:
    """One intra-op thread on CPU: on a shared 2-core box two threads fighting a neighbour cost 1000x at p90."""
    if device.type == "cpu":
        torch.set_num_threads(1)
    logger.info("runner computes on %s (%d torch threads)", device, torch.get_num_threads())
