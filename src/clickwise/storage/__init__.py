"""Where clickwise keeps its state: a local folder or an object-store prefix, behind one API."""

from clickwise.storage.root import Root, open_root, repetitive_columns

__all__ = ["Root", "open_root", "repetitive_columns"]
