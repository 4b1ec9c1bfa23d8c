"""Words of descriptions for the TF-IDF labels (stop-words per language), and tag vectors."""
from __future__ import annotations

import numpy as np

from datasette_imageclust.analysis import labels, textterms
from datasette_imageclust.analysis.tagvectors import MAX_DIMS, tag_vectors


def test_stop_words_of_the_texts_language_are_removed():
    assert set(textterms.stopwords()) >= {"en", "de", "fr", "es", "it", "pt", "nl", "sv"}
    en = "The image shows a protester holding a sign about the climate crisis in front of the parliament."
    assert textterms.language(textterms.words(en)) == "en"
    assert textterms.description_words(en) == {"protester", "holding", "sign", "climate", "crisis", "front",
                                               "parliament"}
    de = "Das Bild zeigt eine Demonstrantin mit einem Schild über die Klimakrise vor dem Parlament."
    assert textterms.language(textterms.words(de)) == "de"
    assert textterms.description_words(de) == {"demonstrantin", "schild", "klimakrise", "parlament"}
    fr = "L'image montre une manifestante qui tient une pancarte sur la crise climatique devant le parlement."
    assert textterms.language(textterms.words(fr)) == "fr"
    assert textterms.description_words(fr) == {"manifestante", "tient", "pancarte", "crise", "climatique",
                                               "devant", "parlement"}
    sv = "Bilden visar en demonstrant som håller en skylt om klimatkrisen framför riksdagen."
    assert textterms.language(textterms.words(sv)) == "sv"
    assert "klimatkrisen" in textterms.description_words(sv) and "som" not in textterms.description_words(sv)
    # A language without a list keeps its words; too few stop-words to tell: none removed.
    pl = "Zdjęcie przedstawia protestującą kobietę z transparentem"
    assert textterms.language(textterms.words(pl)) is None
    assert "protestującą" in textterms.description_words(pl) and "zdjęcie" in textterms.description_words(pl)


def test_description_terms_beat_what_every_description_says():
    # TF-IDF over clusters of descriptions: the words that tell the clusters apart win.
    groups = {1: [textterms.description_words(t) for t in (
                  "The image shows a polar bear on melting ice.", "A photo of a polar bear swimming.",
                  "The image depicts melting ice and a bear.")],
              2: [textterms.description_words(t) for t in (
                  "The image shows a crowd marching with banners.", "A crowd with banners in a city street.",
                  "Protesters march; the image shows banners.")]}
    terms = labels.tfidf_terms(groups)
    assert terms[1][0][0] == "bear" and {w for w, _ in terms[2][:2]} == {"crowd", "banners"}
    assert not {"image", "shows", "photo"} & {w for t in terms.values() for w, _ in t}


def test_tag_vectors_are_tfidf_and_bounded():
    tags = {1: [("cat", 0.3), ("sofa", 0.2)], 2: [("cat", 0.3)], 3: [("dog", None), ("sofa", None)]}
    ids, x, info = tag_vectors(tags)
    assert ids.tolist() == [1, 2, 3] and info == {"tags": 3, "images": 3, "dimensions": 3}
    assert np.allclose(np.linalg.norm(x, axis=1), 1)
    assert x[0] @ x[1] > x[0] @ x[2] > 0 and x[1] @ x[2] == 0  # shared tags make images near
    # Thousands of distinct tags: a bounded dense space (SVD), rows still unit vectors.
    rng = np.random.default_rng(0)
    many = {i: [(f"t{j}", None) for j in rng.choice(3000, 8, replace=False)] for i in range(2000)}
    ids, x, info = tag_vectors(many)
    assert x.shape == (2000, MAX_DIMS) and info["dimensions"] == MAX_DIMS and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
