"""Part IV of the book: sequences and state-space memory (``chapters/sequences``)."""

from kexue.sequences.hippo import (
    discretize,
    lagt,
    legendre_projection,
    legs,
    legs_matvec,
    legs_memory,
    legs_solve,
    legt,
    legt_memory,
    reconstruct,
)

__all__ = [
    "discretize",
    "lagt",
    "legendre_projection",
    "legs",
    "legs_matvec",
    "legs_memory",
    "legs_solve",
    "legt",
    "legt_memory",
    "reconstruct",
]
