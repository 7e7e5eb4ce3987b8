"""dws: model surgery with weight-space networks (DWSNets).

Importing :mod:`dwscli` is cheap: torch is imported only by the submodules that need it, so
``dws --help`` and ``dws --version`` answer quickly.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
