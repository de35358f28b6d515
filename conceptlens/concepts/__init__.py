"""conceptlens.concepts."""

__all__: list[str] = []
