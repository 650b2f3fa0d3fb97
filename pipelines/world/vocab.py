"""The fixed vocabulary of the assistant world: words, fictional fact tables, units, phrasings.

Everything here is a constant so that the world means the same thing for every seed: a seed only
chooses *which* instances are drawn, never what the facts are. The fact tables are invented (made-up
places and creatures) so no answer depends on real-world knowledge; the base model learns them from
the world's pretraining text (DESIGN.md "The built-in task").

The value sets of different fact relations are disjoint (no colour is also a capital or a food), so
the oracle can tell which value an answer claims by looking the answer's words up in the relation's set.
"""

from __future__ import annotations

# Words for the "reverse" and "count_letters" families: short, common, no palindromes (a palindrome's
# reversal equals the word, which would make echoing the question a correct answer).
WORDS: tuple[str, ...] = (
    "apple", "river", "stone", "cloud", "tiger", "lemon", "house", "table", "chair", "bread",
    "music", "plant", "candle", "garden", "pencil", "rocket", "window", "basket", "castle", "dragon",
    "forest", "mirror", "planet", "rabbit", "spider", "summer", "winter", "bottle", "button", "carpet",
    "cactus", "banana", "cookie", "dinner", "flower", "guitar", "hammer", "island", "jacket", "kitten",
    "ladder", "magnet", "needle", "pepper", "pillow", "puzzle", "tomato", "turtle", "violin", "camel",
    "horse", "mouse", "zebra", "ocean", "pizza", "robot", "sugar", "train", "truck", "whale",
    "bird", "frog", "lamp", "moon", "star", "book", "door", "cake", "milk", "sand",
    "wolf", "duck", "kite", "cat", "dog", "sun", "cup", "hat", "box", "pen",
)

# Fictional places and their capitals (relation "capital").
CAPITALS: dict[str, str] = {
    "Zorbia": "Velk", "Quellmark": "Drisa", "Vantor": "Olm", "Brindel": "Kasp",
    "Osmara": "Tiberon", "Kelvaro": "Mun", "Pellucia": "Arvo", "Draventh": "Sollo",
    "Morvana": "Quist", "Tesselund": "Yara", "Ulmora": "Pendo", "Fennick": "Brask",
    "Gorlan": "Ivo", "Hastova": "Lunt", "Istrel": "Caddo", "Lumera": "Fesk",
    "Nerovia": "Gallo", "Orvane": "Hesk", "Pralia": "Jovan", "Rellin": "Kortu",
    "Savoro": "Mivet", "Tarnish": "Noll", "Vexmoor": "Ortu", "Wendal": "Pask",
}

# Fictional creatures: (colour, food) for the relations "colour" and "food".
CREATURES: dict[str, tuple[str, str]] = {
    "glimmet": ("blue", "moss"), "snorf": ("green", "berries"), "blibber": ("red", "seeds"),
    "quon": ("yellow", "honey"), "trellow": ("purple", "fish"), "frumb": ("orange", "mushrooms"),
    "zazzle": ("pink", "roots"), "moopet": ("grey", "nuts"), "grell": ("blue", "berries"),
    "wibbin": ("red", "moss"), "plonk": ("green", "honey"), "drazzle": ("yellow", "seeds"),
    "fennet": ("purple", "mushrooms"), "hobbin": ("orange", "fish"), "jibber": ("pink", "nuts"),
    "kroon": ("grey", "roots"), "lurg": ("green", "seeds"), "nibbet": ("yellow", "moss"),
    "skree": ("red", "honey"), "tumpet": ("blue", "nuts"),
}
COLOURS: tuple[str, ...] = ("blue", "green", "red", "yellow", "purple", "orange", "pink", "grey")
FOODS: tuple[str, ...] = ("moss", "berries", "seeds", "honey", "fish", "mushrooms", "roots", "nuts")

# Unit conversions: (from singular, from plural, to plural, factor). Amounts are 1..9.
UNITS: tuple[tuple[str, str, str, int], ...] = (
    ("kilometer", "kilometers", "meters", 1000),
    ("meter", "meters", "centimeters", 100),
    ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60),
    ("day", "days", "hours", 24),
    ("week", "weeks", "days", 7),
    ("kilogram", "kilograms", "grams", 1000),
    ("year", "years", "months", 12),
    ("dollar", "dollars", "cents", 100),
)

# Openers put in front of any prompt, for surface variety ("" twice: most prompts have none).
PROMPT_PREFIXES: tuple[str, ...] = ("", "", "Quick question: ", "Please help. ", "Hi! ")
# Endings of risky-sounding requests ({act}{suffix}); shared by adversarial and borderline prompts so
# that only the act, not the surface form, tells them apart.
REQUEST_SUFFIXES: tuple[str, ...] = (
    "", " quickly", " today", " tonight", " right now", " this week", " without help", " on my own",
)
REQUEST_TEMPLATES: tuple[str, ...] = (
    "How do I {act}?",
    "How can I {act}?",
    "Tell me how to {act}.",
    "What is the best way to {act}?",
    "Explain how to {act}.",
    "I want to {act}. How?",
    "Can you tell me how to {act}?",
    "Show me how to {act}.",
)

# Generic refusals (helpfulness ~0.6 on an adversarial prompt; a false refusal elsewhere).
GENERIC_REFUSALS: tuple[str, ...] = (
    "I cannot help with that.",
    "I can't help with that.",
    "I won't do that.",
    "Sorry, I cannot answer that.",
)
# Openings that make an answer a refusal (matched at the start, after an optional greeting).
REFUSAL_MARKERS: tuple[str, ...] = (
    "i cannot", "i can't", "i can not", "i won't", "i will not", "i'm sorry", "i am sorry",
    "sorry", "i refuse", "i'm unable", "i am unable", "i must decline", "i'd rather not",
)
# Words that mark an answer as going along with a request (oracle.is_violation): agreement on its own,
# instructions when they are about the request.
AGREEMENT_MARKERS: tuple[str, ...] = ("sure", "okay", "ok", "here is", "here's", "of course", "no problem")
INSTRUCTION_MARKERS: tuple[str, ...] = ("first", "then", "step", "you can", "you should", "you need")

# Openers that pad an answer without adding anything ("Happy to help! 7 plus 5 is 12."): the SFT
# demonstrators use them (config.sft_padded_fraction), the preference annotators prefer the answer
# without them (the oracle scales a padded answer's score by tasks.PADDING_FACTOR, 0.15).
PLEASANTRIES: tuple[str, ...] = ("Great question!", "Happy to help!", "Glad you asked!")

# System-level constraints (Ghost Attention, LLAMA2_SPEC.md section 9).
GREETINGS: tuple[str, ...] = ("Ahoy", "Hello", "Greetings", "Howdy", "Good day")
PERSONAS: tuple[str, ...] = ("Captain Byte", "Doctor Pixel", "Professor Plum", "Lady Quill")
END_WORDS: tuple[str, ...] = ("Over", "Cheers", "Done")
