"""Makes ``tests/tables/oracle.py`` importable as ``tables_oracle``.

Test folders are not packages (pytest runs with ``--import-mode=importlib``), so the oracle is loaded
under a name no other folder's helper can take.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "tables_oracle"

if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("oracle.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
