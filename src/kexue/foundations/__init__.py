"""Part 0 of the book: how the chapters work (``chapters/foundations``)."""
