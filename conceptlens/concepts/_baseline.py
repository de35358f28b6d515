"""A random-words bank: the backbone's own score distribution for text that means nothing.

Absolute score cutoffs do not travel between backbones (Label-free CBM's 0.25 was set for
CLIP ViT-B/16 cosines on ImageNet-scale data; synthderm-lit's cosines of real concepts
mostly sit between 0.1 and 0.25). Scoring a bank of random word pairs with the same
backbone, templates and reference prompts, on the same images, gives the scale against
which a concept's activations can be judged (as WaffleCLIP uses random words to show how
much of a concept's score is the prompt format).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from conceptlens.concepts._bank import ConceptBank
from conceptlens.exceptions import ConfigError

__all__ = ["RANDOM_WORDS", "random_words_bank"]

# Common English words with no dermatological or imaging meaning (no colours, shapes,
# textures or body parts), so that random pairs describe nothing a lesion image shows.
_WORDS = """
    account advice airport album answer anthem apology apple archive argument army
    auction author autumn bakery balcony ballot banana bargain basket battery beach
    bicycle biscuit blanket bookcase bottle bracket breakfast bridge budget butter
    cabinet calendar camera candle canoe captain carpet castle catalog cathedral ceiling
    century chapter charity cheese chess chimney chorus cinema citizen classroom climate
    clock coffee college comedy committee compass concert contract cookie cottage
    council courage cousin cricket crowd cucumber curtain customer dancer debate degree
    delivery dentist desert diary dinner diploma doctor dolphin donkey drawer dream
    driver election elephant elevator embassy engine envelope episode evening factory
    farmer festival fiction finance fireplace fishing football forest fountain freedom
    furniture gallery garage garden gasoline giraffe glove gossip government grammar
    guitar hammer harbor harvest helmet highway history holiday homework honey horizon
    hospital hotel husband insurance interview invoice island jacket journey judge
    jungle kettle keyboard kingdom kitchen ladder language laptop lawyer lecture lemon
    letter library license lighthouse luggage magazine manager marathon market meadow
    melody memory menu message meeting microwave minister mirror monday monkey morning
    mountain museum musician napkin neighbor newspaper novel ocean office onion opera
    orchestra package painter pancake parade parliament passenger passport
    pencil piano picnic pilot pizza planet playground pocket poetry police
    politics postcard potato pottery president printer prison professor pumpkin puzzle
    question rabbit radio railway recipe referee restaurant ribbon river rocket
    sailor salad sandwich saturday scholar science scissors season senator shelter
    shopping signal singer soldier sofa spoon stadium station statue story student
    subway sugar suitcase summer sunday supermarket teacher telephone television tennis
    theater ticket tiger tomato tourist tractor traffic train treaty trumpet tuesday
    umbrella uncle universe vacation valley vegetable village violin volcano voyage
    waiter wallet wedding weekend whistle window winter witness wizard yacht yogurt
    """
RANDOM_WORDS: tuple[str, ...] = tuple(_WORDS.split())


def random_words_bank(
    like: ConceptBank,
    n: int = 64,
    *,
    n_words: int = 2,
    seed: int = 0,
    words: Sequence[str] | None = None,
) -> ConceptBank:
    """A bank of ``n`` random word combinations matched to ``like``.

    The bank has ``like``'s classes, templates and reference prompts, so it is scored
    exactly as ``like`` is (same templates, same ``relative`` reference); only the concept
    text is meaningless. Concepts are named ``random_000``... in group ``random``.

    Parameters
    ----------
    like : ConceptBank
        The bank to calibrate against.
    n : int
        Number of random concepts (64 gives a stable 90th percentile).
    n_words : int
        Words per prompt (concept prompts are mostly two or three words).
    seed : int
        Seed of the draw (the same seed gives the same bank).
    words : sequence of str, optional
        Vocabulary to draw from; default :data:`RANDOM_WORDS`.

    Examples
    --------
    >>> from conceptlens.concepts import load_bank
    >>> rnd = random_words_bank(load_bank("dermoscopy"), 3, seed=0)
    >>> rnd.names, rnd.reference_prompts == load_bank("dermoscopy").reference_prompts
    (('random_000', 'random_001', 'random_002'), True)
    """
    if int(n) < 1 or int(n_words) < 1:
        raise ConfigError(f"n and n_words must be >= 1, got n={n}, n_words={n_words}")
    vocab = list(words) if words is not None else list(RANDOM_WORDS)
    if len(vocab) < n_words:
        raise ConfigError(f"need at least {n_words} words to draw from, got {len(vocab)}")
    rng = np.random.default_rng(seed)
    concepts = []
    for i in range(int(n)):
        text = " ".join(rng.choice(vocab, size=int(n_words), replace=False).tolist())
        concepts.append(
            {
                "name": f"random_{i:03d}",
                "prompts": [text],
                "group": "random",
                "provenance": {
                    "kind": "curated",
                    "note": f"random-words baseline (seed {seed}); describes nothing",
                },
            }
        )
    data = like.to_dict()
    data.update(
        id=f"{like.id}_random_words",
        name=f"Random-words baseline for {like.id}",
        concepts=concepts,
    )
    data.pop("citations", None)
    return ConceptBank.from_dict(data, source=f"<random words for {like.id}>")
