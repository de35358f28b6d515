"""conceptlens.backbones."""

__all__: list[str] = []
