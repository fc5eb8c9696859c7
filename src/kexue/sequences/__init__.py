"""Part IV of the book: sequences and state-space memory (``chapters/sequences``)."""
