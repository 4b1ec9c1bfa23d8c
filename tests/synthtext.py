"""Synthetic descriptions for the labelled tuxpaint stamps: what a vision LLM might write
about each category (three of its four words), among words every category shares
(colours, sizes, the "on a white background" of clip art) and English function words."""
from __future__ import annotations

import random

CATEGORY_WORDS = {
    "birds": ["bird", "feathers", "wings", "beak"],
    "clothes": ["shirt", "dress", "fabric", "clothing"],
    "coins": ["coin", "money", "metal", "currency"],
    "fish": ["fish", "fins", "scales", "aquarium"],
    "flowers": ["flower", "petals", "bloom", "stem"],
    "fruit": ["fruit", "apple", "juicy", "sweet"],
    "household": ["household", "kitchen", "furniture", "home"],
    "insects": ["insect", "bug", "antennae", "legs"],
    "mammals": ["mammal", "fur", "paws", "tail"],
    "music_instruments": ["instrument", "music", "strings", "melody"],
    "roadsigns": ["sign", "traffic", "road", "warning"],
    "space": ["space", "planet", "rocket", "stars"],
    "tools": ["tool", "hammer", "workshop", "repair"],
    "trees_plants": ["tree", "leaves", "plant", "branches"],
    "vegetables": ["vegetable", "carrot", "harvest", "farm"],
    "vehicles": ["vehicle", "wheels", "car", "engine"],
}
NOISE = ("red green blue yellow brown grey orange pink purple black small large bright dark simple "
         "colourful cartoon outline shiny flat detailed cheerful old new tiny big").split()
TEMPLATE = "The image shows a {n1} {c1} with {c2} and {c3}, drawn in {n2} and {n3} on a white background."
WORDS = sorted({w for ws in CATEGORY_WORDS.values() for w in ws} | set(NOISE)
               | set("the image shows a with and drawn in on white background".split()))


def describe(category: str, rng: random.Random) -> str:
    c = rng.sample(CATEGORY_WORDS[category], 3)
    n = rng.sample(NOISE, 3)
    return TEMPLATE.format(c1=c[0], c2=c[1], c3=c[2], n1=n[0], n2=n[1], n3=n[2])
