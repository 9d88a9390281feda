"""A varied, seeded chat prompt set for distillation (tasks x subjects x styles).

Built combinatorially so thousands of distinct prompts need no data download. The
held-out evaluation prompts (clients/prompts/) are written separately, by hand.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from verifier.core.chat_template import Messages

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


def build_prompts(n: int, seed: int) -> list[Messages]:
    """n chat conversations (lists of messages), deterministic for a seed."""
    rng = random.Random(seed)
    out: list[Messages] = []
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


def conversation(request: str, system: str | None) -> Messages:
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


# The "list" source: the target continues a numbered list of messages people send an AI
# assistant, begun with three of these hand-written examples. A 135M model asked outright to
# write a request often answers, rambles or echoes the instruction (8 of 10 sampled);
# continuing a list of real requests it writes short, natural ones, several per call. None of
# these is, or paraphrases, a held-out evaluation prompt (clients/prompts/), and a test checks
# their word overlap.
SEED_REQUESTS = [
    "My roommate never washes the dishes. How can I talk to him about it without starting a fight?",
    "I get nervous when I have to speak in meetings. Any tips to feel more confident?",
    "How can I make new friends after moving to a new town?",
    "My teenage son spends all evening on his phone. How do I set limits that he will accept?",
    "I always put off big assignments until the last minute. How do I get started earlier?",
    "What is a kind way to tell a coworker that their music is too loud?",
    "How do I stop comparing myself to people on social media?",
    "My parents are getting older and I worry about them living alone. How can I help?",
    "How do I remove a red wine stain from a white carpet?",
    "What is the best way to store fresh strawberries so they last longer?",
    "How do I fix a flat tyre on a bicycle?",
    "How can I get rid of fruit flies in my kitchen?",
    "What is the easiest way to learn to touch type?",
    "How do I unclog a bathroom sink without calling a plumber?",
    "How often should I water a cactus?",
    "How do I back up the photos on my phone?",
    "What is a good way to clean a cast iron pan?",
    "How can I make my home Wi-Fi faster?",
    "Why is the sky dark at night if there are so many stars?",
    "How does a microwave oven heat food?",
    "What is compound interest and why does it matter for savings?",
    "Why do we get goosebumps?",
    "What causes thunder?",
    "How do vaccines train the immune system?",
    "What does a credit score measure?",
    "Why does bread go stale?",
    "What is the difference between a virus and a bacterium?",
    "How do noise-cancelling headphones work?",
    "Write a short message to my team saying the meeting is moved to Friday.",
    "Write a friendly reminder to a client who has not paid an invoice yet.",
    "Write a four-line poem about a rainy Monday morning.",
    "Write a short product description for a handmade wooden chopping board.",
    "Help me write a text to cancel dinner plans with a friend because I am sick.",
    "Write a short speech to thank the volunteers at a charity event.",
    "Write the opening paragraph of a cover letter for a job at a public library.",
    "Write a short review of a coffee shop with great cakes but slow service.",
    "Plan a three-day menu for a family of four on a tight budget.",
    "What are some fun things to do with kids on a rainy afternoon?",
    "Suggest a few board games for a group of six adults.",
    "Help me plan a surprise picnic for my partner's birthday.",
    "What exercises can I do at my desk during the workday?",
    "Recommend some podcasts for learning about history.",
    "What should I look for when buying a second-hand car?",
    "Give me ideas for a science fair project for a ten-year-old.",
    "Is it better to pay off my credit card or put money into savings first?",
    "Should I learn Spanish or Italian if I want to travel in Europe?",
    "What are the pros and cons of working at a startup?",
    "Which is healthier, brown rice or white rice?",
    "Who invented the telephone, and how did it change communication?",
    "What happened when the Berlin Wall fell?",
    "How many planets are in the solar system, and which is the largest?",
    "What are the main causes of air pollution in cities?",
    "Write a Python function that checks whether a list is sorted.",
    "How do I rename many files at once on Windows?",
    "What is the difference between RAM and storage on a computer?",
    "In JavaScript, how do I remove an item from an array?",
    "Explain what an API is with a simple example.",
    "How do I center a div with CSS?",
    "Summarize the plot of Romeo and Juliet in three sentences.",
    "Turn these notes into a short paragraph: meeting moved, budget approved, new hire starts Monday.",
    "Give me a short daily routine to improve my posture.",
    "What are some polite phrases to use when I visit Japan?",
    "How can I reduce food waste at home?",
    "What is a healthy breakfast I can make in five minutes?",
]

LIST_KINDS = [
    "questions", "requests for help", "requests for advice", "writing tasks", "how-to questions",
    "everyday questions", "messages",
]
LIST_ITEM = re.compile(r"^\s*\d+\.\s*(.*)$")


def list_request_prompt(rng: np.random.Generator) -> tuple[Messages, str]:
    """The request-writing prompt of the "list" source: a user turn asking for a list of
    messages people send an AI assistant, and the start of the assistant's reply (three seed
    requests, then "4."), which the target continues."""
    kind, area = pick(rng, LIST_KINDS), pick(rng, AREAS)
    seeds = [SEED_REQUESTS[int(i)] for i in rng.choice(len(SEED_REQUESTS), 3, replace=False)]
    ask = conversation(f"List some {kind} that people send to an AI assistant, for example about {area}.", None)
    return ask, "".join(f"{i + 1}. {seed}\n" for i, seed in enumerate(seeds)) + "4."


def listed_requests(text: str, complete: bool, most: int = 3) -> list[str]:
    """Up to ``most`` requests from the target's continuation of a list begun with "4.": its first
    line, then each later numbered line, stopping at the first line that is not an item. An
    incomplete continuation (cut by the token limit) loses its last, unfinished line."""
    lines = text.split("\n")
    if not complete:
        lines = lines[:-1]
    out: list[str] = []
    for i, line in enumerate(lines):
        if i > 0:
            item = LIST_ITEM.match(line)
            if item is None:
                break
            line = item.group(1)
        request = clean_request(line)
        if request and request not in SEED_REQUESTS and request not in out:
            out.append(request)
        if len(out) == most:
            break
    return out


# How apps ask for JSON mode: OpenAI's API wants the word "JSON" in the messages, so most say it; some
# rely on response_format alone (as the bench's JSON-mode requests do). None: the request as it is.
JSON_ASKS = [
    None,
    "Answer in JSON.",
    "Respond with a JSON object.",
    "Reply only with JSON.",
    "Give your answer as a JSON object with descriptive keys.",
]


def json_request(messages: Messages, rng: np.random.Generator) -> Messages:
    """A conversation as a JSON-mode request: one of ``JSON_ASKS`` appended to the last user turn."""
    ask = pick(rng, JSON_ASKS)
    if ask is None:
        return messages
    last = messages[-1]
    return [*messages[:-1], {**last, "content": f"{last['content']} {ask}"}]
