"""clickwise: streaming machine learning for ad-click prediction."""

from clickwise.errors import ClickwiseError

__version__ = "0.1.0"

__all__ = ["ClickwiseError", "__version__"]
