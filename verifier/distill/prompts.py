"""A varied, seeded chat prompt set for distillation (tasks x subjects x styles).

Built combinatorially so thousands of distinct prompts need no data download. The
held-out evaluation prompts (clients/prompts/) are written separately, by hand.
"""

from __future__ import annotations

import random

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
        system = rng.choice(SYSTEMS)
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        out.append(msgs)
    return out
