"""Makes ``tests/model/training_sets.py`` importable as ``model_training_sets`` (test folders are not
packages: pytest runs with ``--import-mode=importlib``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "model_training_sets"

if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("training_sets.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
