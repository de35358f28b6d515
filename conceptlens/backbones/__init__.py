"""conceptlens.backbones: named vision-language backbones, encoding and the embedding cache."""

from conceptlens.backbones._backbone import Backbone, image_key, load_backbone
from conceptlens.backbones._cache import EmbeddingCache
from conceptlens.backbones._registry import BackboneConfig, get_backbone_config, list_backbones

__all__ = [
    # registry
    "BackboneConfig",
    "get_backbone_config",
    "list_backbones",
    # loading and encoding
    "Backbone",
    "load_backbone",
    "image_key",
    # cache
    "EmbeddingCache",
]
