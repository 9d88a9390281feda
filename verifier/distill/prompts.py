"""A varied, seeded chat prompt set for distillation (tasks x subjects x styles).

Built combinatorially so thousands of distinct prompts need no data download. The
held-out evaluation prompts (clients/prompts/) are written separately, by hand.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

SUBJECTS = [
    "photosynthesis", "black holes", "the French Revolution", "machine learning", "climate change",
    "the immune system", "volcanoes", "the stock market", "renewable energy", "ancient Rome",
    "the water cycle", "quantum computing", "honey bees", "the human heart", "coffee",
    "the internet", "electric cars", "sleep", "the moon landing", "chess", "jazz music",
    "the Great Wall of China", "vaccines", "recycling", "earthquakes", "the Olympic Games",
    "DNA", "rainbows", "the printing press", "cloud computing", "healthy breakfast ideas",
    "time management", "learning a new language", "public speaking", "gardening",
    "budgeting", "the solar system", "penguins", "the Renaissance", "artificial intelligence",
    "democracy", "friendship", "the ocean", "deserts", "bread baking", "marathon training",
    "cybersecurity", "the history of writing", "dinosaurs", "music theory", "meditation",
    "supply and demand", "the Amazon rainforest", "bicycles", "smartphones", "tea",
    "mountains", "volunteering", "video games", "the theory of evolution",
]

TASKS = [
    "Explain {s} in simple terms.",
    "What is {s}?",
    "Give me three interesting facts about {s}.",
    "Write a short paragraph about {s}.",
    "Why is {s} important?",
    "Write a short poem about {s}.",
    "Summarize the key ideas of {s} in a few sentences.",
    "What are the pros and cons of {s}?",
    "How would you explain {s} to a ten-year-old?",
    "List some common misconceptions about {s}.",
    "Write a tweet about {s}.",
    "Describe the history of {s} briefly.",
    "Give me a step-by-step guide to getting started with {s}.",
    "What questions should I ask to learn more about {s}?",
    "Compare {s} with something from everyday life.",
]

CODE_TASKS = [
    "Write a Python function that {c}.",
    "How do I {c} in Python? Show a short example.",
    "Write a JavaScript function that {c}.",
    "Explain how to {c} and give code.",
]

CODE_SUBJECTS = [
    "reverses a string", "checks if a number is prime", "computes the factorial of n",
    "sorts a list of numbers", "counts the words in a sentence", "finds the largest element in a list",
    "removes duplicates from a list", "reads a text file line by line", "converts Celsius to Fahrenheit",
    "checks whether a word is a palindrome", "computes the Fibonacci sequence",
    "merges two dictionaries", "returns the sum of a list", "finds the average of numbers",
]

MATH = [
    "What is {a} plus {b}?", "What is {a} times {b}?", "If I have {a} apples and eat {b}, how many are left?",
    "A train travels {a} km in {b} hours. What is its average speed?",
]

SYSTEMS = [
    None,
    "You are a helpful assistant.",
    "You are a concise assistant. Answer briefly.",
    "You are a friendly teacher.",
]


def build_prompts(n: int, seed: int) -> list[list[dict[str, str]]]:
    """n chat conversations (lists of messages), deterministic for a seed."""
    rng = random.Random(seed)
    out: list[list[dict[str, str]]] = []
    while len(out) < n:
        r = rng.random()
        if r < 0.7:
            text = rng.choice(TASKS).format(s=rng.choice(SUBJECTS))
        elif r < 0.9:
            text = rng.choice(CODE_TASKS).format(c=rng.choice(CODE_SUBJECTS))
        else:
            text = rng.choice(MATH).format(a=rng.randint(2, 99), b=rng.randint(2, 20))
        out.append(conversation(text, rng.choice(SYSTEMS)))
    return out


def conversation(request: str, system: str | None) -> list[dict[str, str]]:
    """A one-turn chat: the user's request, after a system prompt when there is one."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": request}]


def pick(rng: np.random.Generator, xs: Sequence[T]) -> T:
    """One element of xs, drawn with a numpy generator (the data writers' seeded rng)."""
    return xs[int(rng.integers(len(xs)))]


# Self-instruct: the target writes the user requests too, so the prompt set is as varied as the
# target's own sampling. A 5-layer draft trained on the ~4,000 template prompts above reached
# 0.72 greedy acceptance on prompts of that family but 0.36 on hand-written held-out chat.
AREAS = [
    "cooking", "travel", "health", "fitness", "money", "a job search", "work and colleagues", "school",
    "university", "parenting", "pets", "gardening", "home repair", "cleaning", "relationships",
    "friendship", "a personal problem", "writing an email", "writing a story", "a gift idea", "a party",
    "a wedding", "moving house", "cars", "computers", "phones", "programming", "spreadsheets", "science",
    "history", "geography", "books", "films", "music", "sports", "games", "art", "photography",
    "fashion", "shopping", "a holiday", "the weather", "nature", "animals", "language learning",
    "mathematics homework", "physics", "chemistry", "biology", "philosophy", "law", "a small business",
    "marketing", "public transport", "a recipe", "sleep", "stress", "motivation", "hobbies", "a trip abroad",
]

SELF_INSTRUCT = [
    "Write one question that someone might ask an AI assistant about {a}. Reply with the question only.",
    "Write a short request that a user might send to a chatbot for help with {a}. Reply with the request only.",
    "Imagine a person needs advice about {a}. Write the message they would send to an assistant. "
    "Reply with the message only.",
    "Write a task about {a} that someone could ask an assistant to do. Reply with the task only.",
]


def self_instruct_request(rng: np.random.Generator) -> str:
    """The instruction that makes the target write one user request."""
    return pick(rng, SELF_INSTRUCT).format(a=pick(rng, AREAS))


def clean_request(text: str) -> str | None:
    """The user request in a self-instruct reply, or None when there is none worth keeping."""
    text = text.strip().strip('"').strip()
    for prefix in ("Question:", "Request:", "Task:", "Message:", "User:"):
        if text.lower().startswith(prefix.lower()):
            text = text[len(prefix):].strip().strip('"').strip()
    return text if len(text.split()) >= 4 else None
