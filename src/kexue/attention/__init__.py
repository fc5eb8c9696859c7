"""Part II of the book: attention (``chapters/attention``)."""
