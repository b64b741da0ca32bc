# scikit-learn ships no types; the examples only load data with it (see stubs/README.md).
from typing import Any

def __getattr__(name: str) -> Any: ...
