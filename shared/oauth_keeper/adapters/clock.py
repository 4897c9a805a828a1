"""The `Clock` port on the system's clock."""

from __future__ import annotations

import time


class SystemClock:
    def now(self) -> float:
        """Epoch seconds, now."""
        return time.time()
