"""Part III of the book: probability and statistics (``chapters/probability``)."""
