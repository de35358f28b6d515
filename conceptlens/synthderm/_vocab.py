"""SynthDerm names and caption vocabulary.

``SYNTHDERM_CLASSES`` and ``SYNTHDERM_CONCEPTS`` fix the ground-truth names (the concept
bank ``concept_banks/synthderm.yaml`` uses the same names). ``CONCEPT_PHRASES`` holds the
descriptive wordings that captions are built from; ``PARAPHRASES`` holds held-out
rewordings that never appear in any caption, for paraphrase-robustness evaluation of a
backbone trained on SynthDerm captions.
"""

from __future__ import annotations

__all__ = [
    "CAPTION_TEMPLATES",
    "CLASS_PHRASES",
    "CONCEPT_PHRASES",
    "PARAPHRASES",
    "SYNTHDERM_ARTIFACTS",
    "SYNTHDERM_CLASSES",
    "SYNTHDERM_STRUCTURES",
    "SYNTHDERM_CONCEPTS",
]

SYNTHDERM_CLASSES: tuple[str, ...] = ("nevus", "melanoma", "seborrheic_keratosis")

SYNTHDERM_CONCEPTS: tuple[tuple[str, str], ...] = (
    ("asymmetry", "morphology"),
    ("irregular_border", "morphology"),
    ("large_diameter", "morphology"),
    ("multiple_colors", "colour"),
    ("blue_white_veil", "colour"),
    ("regression_structures", "colour"),
    ("atypical_pigment_network", "structure"),
    ("irregular_dots_globules", "structure"),
    ("irregular_streaks", "structure"),
    ("milia_like_cysts", "structure"),
    ("comedo_like_openings", "structure"),
    ("dotted_vessels", "structure"),
    ("ruler", "artifact"),
    ("purple_ink", "artifact"),
    ("dark_corners", "artifact"),
    ("hair", "artifact"),
    ("gel_bubbles", "artifact"),
)

SYNTHDERM_ARTIFACTS: tuple[str, ...] = tuple(n for n, g in SYNTHDERM_CONCEPTS if g == "artifact")
#: Lesion structures and colour regions drawn at a known place inside the lesion (each has
#: its own ground-truth mask); the morphology concepts are properties of the lesion outline.
SYNTHDERM_STRUCTURES: tuple[str, ...] = tuple(
    n for n, g in SYNTHDERM_CONCEPTS if g in ("colour", "structure")
)

# Wordings used in captions (the first one is also the bank's first prompt).
CONCEPT_PHRASES: dict[str, list[str]] = {
    "asymmetry": [
        "asymmetric shape",
        "lopsided two-lobed outline",
        "asymmetry of the lesion shape",
        "uneven lesion with an offset lobe",
    ],
    "irregular_border": [
        "irregular border",
        "notched jagged edge",
        "ragged scalloped lesion border",
        "irregular notched margin",
    ],
    "large_diameter": [
        "large diameter",
        "large lesion over six millimetres",
        "big wide lesion",
        "lesion of large size",
    ],
    "multiple_colors": [
        "multiple colors",
        "brown black and red areas",
        "variegated pigmentation",
        "several different colours within the lesion",
    ],
    "blue_white_veil": [
        "blue-white veil",
        "bluish white structureless area",
        "blue whitish haze over the lesion",
        "blue-white veil over the lesion",
    ],
    "regression_structures": [
        "regression structures",
        "white scar-like area",
        "whitish regression zone",
        "scar-like depigmentation",
    ],
    "atypical_pigment_network": [
        "atypical pigment network",
        "irregular dark network",
        "thick irregular pigment lines",
        "broadened dark reticular grid",
    ],
    "irregular_dots_globules": [
        "irregular dots and globules",
        "scattered dark globules",
        "unevenly distributed brown dots",
        "clustered black dots and globules",
    ],
    "irregular_streaks": [
        "irregular streaks",
        "radial streaming at the periphery",
        "pseudopods at the lesion edge",
        "dark radiating lines at the border",
    ],
    "milia_like_cysts": [
        "milia-like cysts",
        "small bright white round spots",
        "white milia-like dots",
        "shiny white cyst-like spots",
    ],
    "comedo_like_openings": [
        "comedo-like openings",
        "dark keratin plugs",
        "blackhead-like openings",
        "brown-yellow rimmed plugs",
    ],
    "dotted_vessels": [
        "dotted vessels",
        "tiny red dots",
        "pinpoint red vascular dots",
        "dotted red blood vessels",
    ],
    "ruler": [
        "ruler markings",
        "measuring scale at the edge",
        "tick-marked ruler bar",
        "millimetre ruler along the border of the image",
    ],
    "purple_ink": [
        "purple ink marking",
        "purple surgical ink marking",
        "violet skin-marker pen line",
        "purple marker stain near the lesion",
    ],
    "dark_corners": [
        "dark corners",
        "black vignette in the corners",
        "dark circular vignetting",
        "shadowed image corners",
    ],
    "hair": [
        "hair",
        "dark hairs crossing the image",
        "thin hair strands over the skin",
        "body hair across the field",
    ],
    "gel_bubbles": [
        "gel bubbles",
        "air bubbles in the immersion gel",
        "round bright bubbles with rims",
        "trapped gel air bubbles",
    ],
}

# Held-out rewordings: different words and word order; none occurs in any caption.
PARAPHRASES: dict[str, list[str]] = {
    "asymmetry": ["shape that is not mirror symmetric", "bilobed unbalanced contour"],
    "irregular_border": ["edge with many indentations", "saw-toothed perimeter"],
    "large_diameter": ["wide mole of considerable extent", "oversized pigmented spot"],
    "multiple_colors": ["many hues inside the mole", "polychromatic pigment pattern"],
    "blue_white_veil": ["milky blue glassy zone", "veil of whitish-blue colour"],
    "regression_structures": ["pale fibrotic patch", "depigmented healing zone"],
    "atypical_pigment_network": ["disorganised brown meshwork", "mesh of uneven pigmented lines"],
    "irregular_dots_globules": ["randomly spread pigment granules", "globular pigment clumps"],
    "irregular_streaks": ["spoke-like projections around the rim", "peripheral linear extensions"],
    "milia_like_cysts": ["pearly horn cysts", "tiny ivory round inclusions"],
    "comedo_like_openings": ["crypts filled with keratin", "pore-like dark follicular holes"],
    "dotted_vessels": ["punctate capillaries", "speckled crimson vascular pattern"],
    "ruler": ["graduated measurement tape", "scale bar with ticks"],
    "purple_ink": ["violet dye from a surgical pen", "mauve pen mark on the skin"],
    "dark_corners": ["vignetted borders of the field", "darkened periphery of the photograph"],
    "hair": ["strands of follicular hair", "filaments of body hair overlying the skin"],
    "gel_bubbles": ["circular trapped air pockets", "immersion fluid droplets"],
}

CLASS_PHRASES: dict[str, list[str]] = {
    "nevus": ["nevus", "benign nevus", "melanocytic nevus", "benign mole"],
    "melanoma": ["melanoma", "malignant melanoma", "cutaneous melanoma"],
    "seborrheic_keratosis": [
        "seborrheic keratosis",
        "benign seborrheic keratosis",
        "seborrhoeic keratosis",
    ],
}

# {lesion}: a class phrase or a neutral lesion word; {findings}: the concept list.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "dermoscopy image of a {lesion} with {findings}.",
    "a dermoscopic view of a {lesion} showing {findings}.",
    "{findings} in a {lesion}.",
    "dermatoscopic photograph of a {lesion}; visible: {findings}.",
    "close-up dermoscopy of a {lesion} presenting {findings}.",
    "a {lesion} on the skin with {findings}.",
    "{lesion} under the dermatoscope, featuring {findings}.",
)

CAPTION_TEMPLATES_EMPTY: tuple[str, ...] = (
    "dermoscopy image of a {lesion}.",
    "a dermoscopic view of a plain {lesion}.",
    "a {lesion} on the skin without notable features.",
    "close-up dermoscopy of a {lesion}.",
)

NEUTRAL_LESION_WORDS: tuple[str, ...] = (
    "pigmented lesion",
    "skin lesion",
    "pigmented skin lesion",
    "lesion",
)
