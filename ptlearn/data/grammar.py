"""A generated mini-language of movie-review sentences, where word order matters.

``make_grammar_corpus`` writes short English-like sentences with a sentiment label::

    the movie was really good          -> 1 (positive)
    the plot was not very good         -> 0 (negation flips the label)
    i never really liked the acting    -> 0
    this is not a boring film          -> 1

The label is a deterministic rule (:func:`sentiment_label`): the polarity of the one sentiment
word (an adjective or a verb), flipped when a negation (``not``, ``never``) is present, i.e.
``label = polarity XOR negated``. Half of the sentences are negated, so every single word —
"good" included — appears as often in positive as in negative sentences.

Why a bag-of-words model fails: it sees *which* words occur, not how they combine. With the
polarity p and the negation n as its features, a linear classifier must separate the four cases
(p, n) -> p XOR n; the sums of the two positive and two negative cases' inequalities contradict
each other, so at most three of the four cases can be right: accuracy <= 1 - negation_rate / 2
(75% here). A model with attention can relate "not" to "good" and reach 100%.

``make_grammar_documents`` strings such sentences into short reviews (a topic, an opening, ordered
remarks, a verdict) for next-sentence (NSP) and sentence-order (SOP) prediction.

``make_continuation_pairs`` draws labelled sentence pairs from such reviews (is B the sentence
that follows A?): chapter 05's sentence-pair fine-tuning task.

``make_rated_reviews`` pairs each sentence with the reviewer's verdict word (``recommended`` or
``avoid``, :data:`VERDICTS`), which follows the sentence's label: unlabelled text in which the
sentiment is *latent*. Nobody labels anything, yet a model that predicts the verdict from the
sentence must learn the negation rule — chapter 08's testbed for pretraining objectives.
"""

from __future__ import annotations

import random

__all__ = [
    "VERDICTS",
    "make_grammar_corpus",
    "make_continuation_pairs",
    "make_grammar_documents",
    "make_rated_reviews",
    "sentiment_label",
]

POSITIVE_ADJECTIVES = "good great wonderful excellent brilliant fun charming moving clever".split()
NEGATIVE_ADJECTIVES = "bad boring awful terrible dull weak poor silly bland".split()
POSITIVE_VERBS = "liked loved enjoyed admired".split()
NEGATIVE_VERBS = "hated disliked detested".split()
NEGATIONS = {"not", "never"}
ADVERBS = ["", "really", "very", "truly", "quite", "so"]  # intensifiers: no effect on the label
VERB_ADVERBS = ["", "really", "truly"]  # "i really liked"
PHRASE_ADVERBS = ["", "really", "very", "truly"]  # "a very good film"
NOUNS = "movie film acting plot story script music ending cast dialogue soundtrack".split()

_POLARITY = {w: 1 for w in POSITIVE_ADJECTIVES + POSITIVE_VERBS}
_POLARITY.update({w: 0 for w in NEGATIVE_ADJECTIVES + NEGATIVE_VERBS})

# topic -> (opening sentence, aspects that the review's remarks talk about)
TOPICS = {
    "movie": ("i watched a movie last {day}", "acting plot music ending cast dialogue".split()),
    "book": ("i read a book last {day}", "story hero writing ending cover pacing".split()),
    "restaurant": (
        "we went to a new restaurant last {day}",
        "food service soup dessert waiter wine".split(),
    ),
    "concert": ("i went to a concert last {day}", "band singer sound crowd venue show".split()),
    "game": (
        "we played a new game last {day}",
        "gameplay soundtrack story map ending boss".split(),
    ),
}
DAYS = "monday tuesday wednesday thursday friday saturday sunday week night".split()
ORDER_MARKERS = ["first", "then", "after that", "later"]  # remark i starts with marker min(i, 3)
VERDICTS = {1: "recommended", 0: "avoid"}  # label -> the verdict word of a rated review


def sentiment_label(text: str) -> int:
    """The corpus's rule: 1 if the sentence's sentiment word is positive XOR it is negated."""
    words = text.split()
    polar = [_POLARITY[w] for w in words if w in _POLARITY]
    if len(polar) != 1:
        raise ValueError(f"expected exactly one sentiment word in {text!r}, found {len(polar)}.")
    return polar[0] ^ int(any(w in NEGATIONS for w in words))


def _sentence(rng: random.Random, nouns: list[str], negated: bool) -> str:
    """One review sentence about one of ``nouns`` from one of three templates."""
    noun = rng.choice(nouns)
    template = rng.randrange(3)
    if template == 0:  # the plot was (not) very good
        adj = rng.choice(POSITIVE_ADJECTIVES + NEGATIVE_ADJECTIVES)
        words = ["the", noun, "was", "not" if negated else "", rng.choice(ADVERBS), adj]
    elif template == 1:  # i (never) really liked the acting
        verb = rng.choice(POSITIVE_VERBS + NEGATIVE_VERBS)
        words = ["i", "never" if negated else "", rng.choice(VERB_ADVERBS), verb, "the", noun]
    else:  # this is (not) a truly clever film
        adj = rng.choice(POSITIVE_ADJECTIVES + NEGATIVE_ADJECTIVES)
        words = ["this", "is", "not" if negated else "", "a", rng.choice(PHRASE_ADVERBS), adj, noun]
    return " ".join(w for w in words if w)


def make_grammar_corpus(
    n: int, seed: int = 0, negation_rate: float = 0.5
) -> tuple[list[str], list[int]]:
    """``n`` labelled sentences (``texts``, ``labels``; 1 = positive), the same for the same seed.

    ``negation_rate`` is the fraction of negated sentences; a bag-of-words classifier is capped
    at ``1 - negation_rate / 2`` accuracy (see the module docstring).
    """
    rng = random.Random(seed)
    texts = [_sentence(rng, NOUNS, rng.random() < negation_rate) for _ in range(n)]
    return texts, [sentiment_label(t) for t in texts]


def make_grammar_splits(
    n_train: int, n_test: int, seed: int = 1
) -> tuple[tuple[list[str], list[int]], tuple[list[str], list[int]]]:
    """``(train, test)``, each ``(texts, labels)``: ``n_test`` distinct held-out sentences, and up
    to ``n_train`` training rows (drawn like :func:`make_grammar_corpus`, repeats included) none of
    which is a test sentence.

    The language has only a few thousand distinct sentences, so two independent draws share most
    of them (22,000 rows held 97.6% of another draw's 500 sentences): a model tested on such a
    draw is partly tested on sentences it was trained on. Held-out sentences make the test measure
    the rule."""
    test = distinct(*make_grammar_corpus(20 * n_test, seed=seed + 100), n_test)
    held_out = set(test[0])
    kept = [(t, y) for t, y in zip(*make_grammar_corpus(n_train, seed)) if t not in held_out]
    return ([t for t, _ in kept], [y for _, y in kept]), test


def distinct(texts: list[str], labels: list[int], n: int) -> tuple[list[str], list[int]]:
    """The first ``n`` distinct texts (with their labels)."""
    seen: dict[str, int] = {}
    for text, label in zip(texts, labels):
        if len(seen) == n:
            break
        seen.setdefault(text, label)
    return list(seen), list(seen.values())


def _document(rng: random.Random, min_sentences: int, max_sentences: int) -> list[str]:
    topic = rng.choice(sorted(TOPICS))
    opening, aspects = TOPICS[topic]
    n_remarks = rng.randint(min_sentences, max_sentences) - 2  # between opening and verdict
    remarks = []
    for i in range(n_remarks):
        marker = ORDER_MARKERS[min(i, len(ORDER_MARKERS) - 1)]
        remarks.append(f"{marker} {_sentence(rng, aspects, negated=rng.random() < 0.5)}")
    verdict = f"overall i {rng.choice(['liked', 'did not like', 'loved', 'hated'])} the {topic}"
    return [opening.format(day=rng.choice(DAYS)), *remarks, verdict]


def make_grammar_documents(
    n_docs: int, seed: int = 0, min_sentences: int = 3, max_sentences: int = 6
) -> list[list[str]]:
    """``n_docs`` short reviews, each a list of consecutive sentences (no labels).

    A document has a topic (movie, book, restaurant, concert, game): an opening ("i read a book
    last monday"), remarks about the topic's aspects in order ("first ...", "then ...", "after
    that ...", "later ..."), and a verdict ("overall i liked the book"). The topic ties
    consecutive sentences together (learnable next-sentence prediction) and the markers give
    their order (learnable sentence-order prediction).
    """
    if not 3 <= min_sentences <= max_sentences:
        raise ValueError(
            f"need 3 <= min_sentences <= max_sentences, got {min_sentences}, {max_sentences}."
        )
    rng = random.Random(seed)
    return [_document(rng, min_sentences, max_sentences) for _ in range(n_docs)]


def make_rated_reviews(
    n: int, seed: int = 0, negation_rate: float = 0.2, exclude=()
) -> tuple[list[str], list[str]]:
    """``n`` unlabelled rated reviews: ``(sentences, verdicts)``, the verdict word of each sentence
    (:data:`VERDICTS`) following its :func:`sentiment_label`.

    Negation is rarer than in :func:`make_grammar_corpus` by default (20%, as in real reviews), so
    a word's polarity mostly predicts the verdict and the negation rule is the exception to learn.
    Sentences in ``exclude`` (e.g. a held-out test set) are never drawn; the grammar has about
    4,400 distinct sentences, so ``exclude`` must leave some.
    """
    if not 0.0 <= negation_rate <= 1.0:
        raise ValueError(f"negation_rate must be in [0, 1], got {negation_rate}.")
    rng, exclude = random.Random(seed), set(exclude)
    sentences: list[str] = []
    draws = 0
    while len(sentences) < n:
        draws += 1
        if draws > 100 * n + 1000:  # an exclude set covering (nearly) the whole grammar
            raise ValueError(
                f"could not draw {n} reviews outside the {len(exclude)} excluded sentences."
            )
        sentence = _sentence(rng, NOUNS, rng.random() < negation_rate)
        if sentence not in exclude:
            sentences.append(sentence)
    return sentences, [VERDICTS[sentiment_label(s)] for s in sentences]


def make_continuation_pairs(n_docs: int, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    """One labelled sentence pair per generated review: ``(a_texts, b_texts, labels)``.

    A is a random sentence of the review (not its last); B is the sentence that follows it
    (label 1, "continues") or, with probability 1/2, a random sentence of another review (label 0).
    The reviews are :func:`make_grammar_documents` ``(n_docs, seed)``: pick a seed other than a
    pretraining corpus's to get documents it never saw.
    """
    if n_docs < 2:
        raise ValueError(
            f"need at least 2 documents to draw another review's sentence, got {n_docs}."
        )
    docs = make_grammar_documents(n_docs, seed=seed)
    rng = random.Random(seed)
    a_texts, b_texts, labels = [], [], []
    for j, doc in enumerate(docs):
        i = rng.randrange(len(doc) - 1)
        follows = rng.random() < 0.5
        if follows:
            b = doc[i + 1]
        else:
            k = rng.randrange(len(docs) - 1)
            b = rng.choice(docs[k + (k >= j)])  # any review but this one
        a_texts.append(doc[i])
        b_texts.append(b)
        labels.append(int(follows))
    return a_texts, b_texts, labels
