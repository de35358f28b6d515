"""conceptlens.backbones: named vision-language backbones, encoding and the embedding cache."""

from conceptlens.backbones._backbone import (
    Backbone,
    ImageSource,
    as_image_source,
    image_key,
    load_backbone,
    text_key,
)
from conceptlens.backbones._cache import EmbeddingCache
from conceptlens.backbones._minilm_embed import minilm_embed
from conceptlens.backbones._registry import (
    BackboneConfig,
    add_backbone_config,
    get_backbone_config,
    list_backbones,
)

__all__ = [
    # registry
    "BackboneConfig",
    "add_backbone_config",
    "get_backbone_config",
    "list_backbones",
    # loading and encoding
    "Backbone",
    "load_backbone",
    "ImageSource",
    "as_image_source",
    "image_key",
    "text_key",
    # cache
    "EmbeddingCache",
    # text encoders
    "minilm_embed",
]
