"""Makes ``tests/tables/oracle.py`` importable as ``tables_oracle``.

Test folders are not packages (pytest runs with ``--import-mode=importlib``), so the oracle is loaded
under a name no other folder's helper can take.
"""

from __future__ import annotations

from pathlib import Path

from clickwise.testing import register_module

register_module("tables_oracle", Path(__file__).with_name("oracle.py"))
