# peewee as `Any` for mypy (see [tool.mypy] in pyproject.toml for why): every name the module has is Any.
from typing import Any

def __getattr__(name: str) -> Any: ...
