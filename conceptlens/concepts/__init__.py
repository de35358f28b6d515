"""Concept banks: format, shipped banks, LLM generation, literature retrieval, filtering,
scoring."""

from conceptlens.concepts._bank import (
    PROVENANCE_KINDS,
    SCHEMA_VERSION,
    Concept,
    ConceptBank,
    list_banks,
    load_bank,
    validate_bank_file,
)
from conceptlens.concepts._baseline import random_words_bank
from conceptlens.concepts._filter import (  # noqa: F401  (internals, see below)
    FilterReport,
    facility_location_greedy,
    facility_location_value,
    filter_bank,
    filter_class_names,
    filter_duplicates,
    filter_length,
    filter_unscorable,
    lexical_embed,
    score_lift,
    select_concepts,
)
from conceptlens.concepts._generate import generate_bank
from conceptlens.concepts._llm import LLMClient, LLMError
from conceptlens.concepts._priors import llm_priors, text_priors
from conceptlens.concepts._quality import bank_quality
from conceptlens.concepts._retrieve import (
    CorpusIndex,
    Hit,
    Passage,
    extract_candidates,  # noqa: F401
    read_corpus,
    retrieve_concepts,
    shipped_corpus,
)
from conceptlens.concepts._sanitize import (
    Rejection,
    sanitize_concept,  # noqa: F401
)
from conceptlens.concepts._scoring import (
    ConceptStandardizer,
    concept_text_embeddings,
    embed_images,
    score_concepts,
    write_scores,
)

# The public API. lexical_embed, facility_location_*, extract_candidates and
# sanitize_concept are internals, importable here for existing code only.
__all__ = [
    # bank format
    "SCHEMA_VERSION",
    "PROVENANCE_KINDS",
    "Concept",
    "ConceptBank",
    "list_banks",
    "load_bank",
    "validate_bank_file",
    # generation
    "LLMClient",
    "LLMError",
    "Rejection",
    "generate_bank",
    # retrieval
    "CorpusIndex",
    "Hit",
    "Passage",
    "llm_priors",
    "text_priors",
    "read_corpus",
    "retrieve_concepts",
    "shipped_corpus",
    # filtering and selection
    "FilterReport",
    "filter_bank",
    "filter_class_names",
    "filter_duplicates",
    "filter_length",
    "filter_unscorable",
    "random_words_bank",
    "bank_quality",
    "score_lift",
    "select_concepts",
    # scoring
    "ConceptStandardizer",
    "concept_text_embeddings",
    "embed_images",
    "score_concepts",
    "write_scores",
]
