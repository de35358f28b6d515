"""conceptlens.data."""

__all__: list[str] = []
