"""The hostile-input suite's modules (``hostile.py``, ``cases_*.py``) import one another by
name: put this folder on the path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
