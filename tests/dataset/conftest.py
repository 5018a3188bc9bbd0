"""Makes the table oracle (``tests/tables/oracle.py``) importable as ``tables_oracle`` and this
folder's readers (``helpers.py``) as ``dataset_helpers``.

Test folders are not packages (pytest runs with ``--import-mode=importlib``), so helpers are loaded
under names no other folder's helper can take; ``tables_oracle`` is the same module that
``tests/tables/conftest.py`` registers, so either conftest may load it first.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _register(name: str, path: Path) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_register("tables_oracle", _HERE.parent / "tables" / "oracle.py")
_register("dataset_helpers", _HERE / "helpers.py")
