"""Prompts on two topics, drawn at random from templates with a fixed seed: same-topic windows are
draws from one distribution, so only the change of topic is a real shift."""

from __future__ import annotations

import random

COOKING = (
    ["How long should I {verb} {food}?", "What is the best way to {verb} {food} for dinner?",
     "Can I {verb} {food} without a recipe?", "Which spices go well when you {verb} {food}?"],
    {"verb": ["roast", "bake", "grill", "simmer", "fry", "braise"],
     "food": ["chicken thighs", "a salmon fillet", "root vegetables", "lentil soup", "a loaf of bread",
              "mushroom risotto", "pork shoulder", "a vegetable curry"]},
)
PROGRAMMING = (
    ["How do I {verb} {thing} in Python?", "Why does my code fail when I {verb} {thing}?",
     "What is the fastest way to {verb} {thing}?", "Show an example that shows how to {verb} {thing}."],
    {"verb": ["sort", "serialize", "parse", "cache", "profile", "refactor"],
     "thing": ["a list of dictionaries", "a JSON config file", "a SQL query result", "an async HTTP client",
               "a recursive function", "a pandas dataframe", "a binary search tree", "a regular expression"]},
)


def prompts(topic: tuple[list[str], dict[str, list[str]]], count: int, seed: int) -> list[str]:
    templates, slots = topic
    rng = random.Random(seed)
    return [rng.choice(templates).format(**{k: rng.choice(v) for k, v in slots.items()}) for _ in range(count)]
