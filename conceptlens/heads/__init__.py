"""conceptlens.heads."""

__all__: list[str] = []
