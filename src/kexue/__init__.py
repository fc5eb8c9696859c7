"""kexue: results from *Scientific Spaces* (kexue.fm), in SymPy and PyTorch.

Each result is derived with SymPy and implemented in PyTorch.

Each subpackage mirrors a part of the book (``kexue.positions``, ``kexue.attention``,
...), and each module mirrors one chapter. The helpers every chapter uses live at the
top level:

>>> import kexue
>>> device = kexue.get_device()  # CUDA if available, else CPU (or KEXUE_DEVICE)
>>> generator = kexue.seed_everything(0)  # seeds torch, numpy and random
"""

from kexue.runtime import get_device, seed_everything

#: The version of the package (PEP 440).
__version__ = "0.1.0"

__all__ = ["__version__", "get_device", "seed_everything"]
