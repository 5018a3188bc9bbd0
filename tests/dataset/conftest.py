"""Makes the table oracle (``tests/tables/oracle.py``) importable as ``tables_oracle`` and this
folder's readers (``helpers.py``) as ``dataset_helpers``.

Test folders are not packages (pytest runs with ``--import-mode=importlib``), so helpers are loaded
under names no other folder's helper can take; ``tables_oracle`` is the same module that
``tests/tables/conftest.py`` registers, so either conftest may load it first.
"""

from __future__ import annotations

from pathlib import Path

from clickwise.testing import register_module

_HERE = Path(__file__).resolve().parent
register_module("tables_oracle", _HERE.parent / "tables" / "oracle.py")
register_module("dataset_helpers", _HERE / "helpers.py")
