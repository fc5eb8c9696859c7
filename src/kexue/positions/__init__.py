"""Part I of the book: position encodings (``chapters/positions``)."""
