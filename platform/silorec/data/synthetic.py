"""Synthetic multi-domain data with shared latent structure.

Every synthetic domain belongs to a *world*, derived only from ``world_seed`` and
``n_topics``. The world fixes

- the topics and, for each, a pool of ordinary English descriptive words
  ("hiking", "waterproof", "trail", ...) that every domain uses in its item titles;
- a sparse topic-transition matrix (each topic mostly continues in itself or moves
  to two or three successor topics) and a prior over users' topic preferences.

A domain adds its own *flavour* (product nouns and title phrases: books have guides
and novels, toys have puzzles and kits, ...), its own items, brands and users. Users
walk through topics with the world's transition matrix mixed with their own
preference; the item within a topic is drawn by Zipf-like popularity, with a little
locality (sometimes a neighbour of the previous item in the same topic). Item titles
carry the topic words, so a text-based model that learns "after X comes Y" in one
domain's text space can use it in another domain of the same world: this is the
structure that makes merging domain models worthwhile.

Each node generates only its own domain: :func:`generate_domain` sees one
:class:`~silorec.scenario.schema.SyntheticSource` and the domain name. Output is a
pure function of ``(world_seed, n_topics, flavour, seed, n_users, n_items,
mean_length, name)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from silorec.data.domain import LOO_HOLDOUT, DomainData, ItemCatalogue
from silorec.scenario.schema import SyntheticSource

# ---------------------------------------------------------------------------
# Vocabulary. Every word belongs to exactly one theme (checked by the tests), so a
# shared word between two titles means a shared topic.
# ---------------------------------------------------------------------------

# fmt: off
THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Outdoor Adventure", ("hiking", "trail", "waterproof", "camping", "mountain",
                           "backpack", "compass", "tent", "wilderness", "campfire",
                           "summit", "lantern")),
    ("Ocean", ("ocean", "beach", "coral", "surf", "seashell", "tide", "sailing", "island",
               "dolphin", "wave", "lighthouse", "reef")),
    ("Baking", ("baking", "bread", "pastry", "sourdough", "cookie", "cupcake", "dough",
                "frosting", "oven", "flour", "muffin", "cinnamon")),
    ("Space", ("space", "galaxy", "rocket", "planet", "astronaut", "star", "moon", "cosmic",
               "orbit", "telescope", "nebula", "comet")),
    ("Dinosaurs", ("dinosaur", "fossil", "jurassic", "raptor", "volcano", "prehistoric",
                   "tyrannosaurus", "triceratops", "ancient", "bones", "excavation",
                   "primeval")),
    ("Botanical", ("flower", "botanical", "rose", "succulent", "herb", "blossom", "orchid",
                   "leafy", "greenhouse", "fern", "lavender", "tulip")),
    ("Winter", ("winter", "snow", "ski", "frost", "alpine", "cozy", "fleece", "snowflake",
                "ice", "glacier", "snowboard", "chalet")),
    ("Fitness", ("fitness", "workout", "yoga", "running", "cardio", "strength", "stretch",
                 "marathon", "pilates", "endurance", "gym", "training")),
    ("Music", ("music", "guitar", "piano", "jazz", "rhythm", "melody", "drum", "acoustic",
               "vinyl", "concert", "harmony", "violin")),
    ("Coffee and Tea", ("coffee", "espresso", "tea", "latte", "matcha", "brew", "mocha",
                        "barista", "chai", "roast", "caffeine", "cappuccino")),
    ("Pets", ("dog", "cat", "puppy", "kitten", "paw", "pet", "leash", "furry", "canine",
              "feline", "whisker", "kennel")),
    ("Farmhouse", ("farmhouse", "rustic", "barn", "country", "harvest", "orchard", "tractor",
                   "meadow", "wheat", "cottage", "pumpkin", "hay")),
    ("Tropical", ("tropical", "palm", "mango", "coconut", "pineapple", "hibiscus", "jungle",
                  "parrot", "banana", "rainforest", "papaya", "flamingo")),
    ("Vintage", ("vintage", "retro", "antique", "nostalgic", "victorian", "heirloom",
                 "gramophone", "typewriter", "sepia", "brass", "timeless", "bygone")),
    ("Travel", ("travel", "passport", "journey", "suitcase", "voyage", "map", "explorer",
                "wanderlust", "airport", "luggage", "itinerary", "globe")),
    ("Science", ("science", "chemistry", "physics", "experiment", "laboratory", "microscope",
                 "molecule", "atom", "magnet", "circuit", "formula", "biology")),
    ("Robotics", ("robot", "coding", "digital", "electronic", "smart", "wireless", "gadget",
                  "laser", "cyber", "pixel", "drone", "sensor")),
    ("Arts and Crafts", ("art", "watercolor", "painting", "sketch", "canvas", "crayon",
                         "craft", "origami", "pastel", "calligraphy", "mosaic", "clay")),
    ("Fantasy", ("dragon", "wizard", "castle", "magic", "fairy", "unicorn", "enchanted",
                 "knight", "kingdom", "spell", "myth", "elf")),
    ("Ball Sports", ("soccer", "basketball", "football", "baseball", "tennis", "volleyball",
                     "golf", "stadium", "league", "team", "champion", "goal")),
    ("Cycling", ("bicycle", "cycling", "bike", "pedal", "helmet", "wheel", "gear",
                 "velodrome", "spoke", "saddle", "tour", "sprint")),
    ("Wellness", ("spa", "relaxing", "aromatherapy", "calming", "soothing", "meditation",
                  "mindful", "zen", "eucalyptus", "bath", "serenity", "massage")),
    ("Baby", ("baby", "newborn", "nursery", "toddler", "lullaby", "gentle", "infant",
              "bedtime", "cuddly", "teddy", "rattle", "swaddle")),
    ("Woodland", ("forest", "woodland", "pine", "oak", "cedar", "owl", "fox", "moss",
                  "timber", "birch", "deer", "acorn")),
    ("Urban", ("urban", "city", "street", "metro", "skyline", "downtown", "loft", "graffiti",
               "subway", "neon", "industrial", "concrete")),
    ("Halloween", ("halloween", "spooky", "ghost", "haunted", "witch", "skeleton", "zombie",
                   "vampire", "midnight", "bat", "cobweb", "monster")),
    ("Christmas", ("christmas", "festive", "santa", "reindeer", "ornament", "gingerbread",
                   "jingle", "sleigh", "tinsel", "mistletoe", "advent", "stocking")),
    ("Fishing", ("fishing", "lake", "river", "angler", "bait", "trout", "kayak", "canoe",
                 "reel", "tackle", "bass", "creek")),
    ("Motorsport", ("car", "racing", "motor", "engine", "speed", "turbo", "garage", "rally",
                    "truck", "highway", "drift", "pitstop")),
    ("Safari", ("safari", "lion", "elephant", "giraffe", "zebra", "tiger", "savanna",
                "wildlife", "rhino", "cheetah", "leopard", "hippo")),
    ("History", ("history", "roman", "egyptian", "pyramid", "medieval", "viking", "samurai",
                 "empire", "pharaoh", "gladiator", "archaeology", "dynasty")),
    ("Birds", ("bird", "songbird", "hummingbird", "feather", "nest", "robin", "sparrow",
               "eagle", "wings", "birdwatching", "finch", "cardinal")),
    ("Desert", ("desert", "cactus", "canyon", "sand", "dune", "mesa", "southwest", "sunset",
                "adobe", "arid", "oasis", "coyote")),
    ("Minimalist", ("minimalist", "nordic", "scandinavian", "monochrome", "simple", "clean",
                    "neutral", "linen", "modular", "sleek", "matte", "geometric")),
)
# fmt: on


@dataclass(frozen=True)
class Flavour:
    """How one kind of domain names its products."""

    key: str
    label: str
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    suffixes: tuple[str, ...]
    aliases: tuple[str, ...] = ()


# fmt: off
FLAVOURS: dict[str, Flavour] = {
    f.key: f
    for f in (
        Flavour(
            "books", "Books",
            ("guide", "novel", "handbook", "cookbook", "field guide", "workbook", "atlas",
             "storybook", "memoir", "journal"),
            ("complete", "illustrated", "essential", "pocket", "definitive", "little"),
            ("for beginners", "illustrated edition", "second edition", "paperback",
             "a practical introduction", "for young readers", "hardcover"),
            ("book", "read", "novel", "literature", "kindle", "audible"),
        ),
        Flavour(
            "toys", "Toys & Games",
            ("puzzle", "kit", "playset", "board game", "plush toy", "building set",
             "card game", "figure", "activity set", "jigsaw puzzle"),
            ("deluxe", "mini", "giant", "colorful", "interactive", "classic"),
            ("with 500 pieces", "for kids ages 6 and up", "family edition", "set of 12",
             "for toddlers", "with storage box", "travel size"),
            ("toy", "game", "play", "kid", "child", "hobby"),
        ),
        Flavour(
            "kitchen", "Home & Kitchen",
            ("mug", "frying pan", "cutting board", "spice rack", "apron", "tea towel set",
             "mixing bowl", "storage jar", "serving tray", "dinner plate set"),
            ("ceramic", "stainless", "nonstick", "handmade", "dishwasher safe", "stackable"),
            ("set of 4", "12 ounce", "with lid", "gift set", "for everyday use",
             "large", "with wooden handle"),
            ("kitchen", "home", "cook", "dining", "food", "grocery", "appliance"),
        ),
        Flavour(
            "sports", "Sports & Outdoors",
            ("water bottle", "gym bag", "jersey", "headband", "cap", "duffel bag",
             "training shorts", "towel", "wristband", "socks"),
            ("lightweight", "breathable", "quick dry", "insulated", "durable", "pro"),
            ("for men and women", "32 ounce", "one size", "pack of 3", "with zip pocket",
             "for outdoor use", "large"),
            ("sport", "outdoor", "fitness", "athletic", "exercise"),
        ),
        Flavour(
            "beauty", "Beauty",
            ("face cream", "lip balm", "shampoo", "body lotion", "perfume", "soap bar",
             "hand cream", "face mask", "bath bombs", "body scrub"),
            ("organic", "natural", "vegan", "gentle", "nourishing", "scented"),
            ("for dry skin", "8 fl oz", "gift set", "travel size", "with shea butter",
             "for all skin types", "pack of 2"),
            ("beauty", "cosmetic", "skin", "care", "makeup", "luxury", "fragrance"),
        ),
        Flavour(
            "garden", "Patio, Lawn & Garden",
            ("planter", "seed kit", "trowel", "bird feeder", "watering can", "garden stake",
             "wind chime", "doormat", "garden flag", "solar light"),
            ("weatherproof", "outdoor", "decorative", "galvanized", "hanging", "sturdy"),
            ("for patio", "set of 2", "with drainage hole", "for balcony", "large",
             "for yard and lawn", "easy to assemble"),
            ("garden", "patio", "lawn", "yard", "plant"),
        ),
        Flavour(
            "electronics", "Electronics",
            ("phone case", "bluetooth speaker", "charger", "headphones", "watch band",
             "mouse pad", "keyboard cover", "tablet stand", "usb cable", "earbuds"),
            ("portable", "rechargeable", "slim", "magnetic", "fast charging", "noise cancelling"),
            ("for iphone", "with usb c", "2 pack", "10 ft", "compatible with android",
             "with carrying case", "black"),
            ("electronic", "tech", "phone", "computer", "cell", "video", "camera"),
        ),
        Flavour(
            "clothing", "Clothing",
            ("t-shirt", "hoodie", "socks", "scarf", "tote bag", "beanie", "pajama set",
             "sweatshirt", "baseball cap", "leggings"),
            ("cotton", "oversized", "soft", "unisex", "printed", "embroidered"),
            ("for women", "for men", "medium", "graphic tee", "pack of 3", "gift for her",
             "relaxed fit"),
            ("cloth", "fashion", "apparel", "shoe", "jewel", "wear"),
        ),
    )
}

_BRAND_HEADS = ("Nor", "Kel", "Bram", "Vis", "Ash", "Oak", "Lum", "Ter", "Zen", "Bright",
                "Sil", "Mar", "Cor", "Fen", "Hal", "Wren", "Pell", "Quin", "Rav", "Tal",
                "Ever", "Mo", "Sol", "Arden", "Bel", "Cas", "Dun", "Elm")
_BRAND_TAILS = ("ly", "ora", "wick", "field", "ton", "craft", "co", "ware", "works", "ix",
                "wood", "stone", "line", "nest", "vale", "bury", "ara", "ette", "mont", "ley")
# fmt: on

#: Probability that the next topic comes from the user's preference instead of the
#: world's transition matrix.
PREFERENCE_MIX = 0.25
#: Probability of picking a neighbour of the previous item (same topic only).
LOCALITY = 0.25
#: Zipf exponent of item popularity within a topic.
ZIPF_EXPONENT = 1.0
#: Dispersion of the (negative binomial) sequence-length distribution.
LENGTH_DISPERSION = 1.5


# ---------------------------------------------------------------------------
# The world.
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SyntheticWorld:
    """Latent structure shared by every domain of one ``(world_seed, n_topics)``."""

    world_seed: int
    labels: tuple[str, ...]  # one per topic
    words: tuple[tuple[str, ...], ...]  # descriptive words per topic
    transition: np.ndarray  # float64 [n_topics, n_topics], rows sum to 1
    topic_prior: np.ndarray  # float64 [n_topics], base measure of user preferences

    @property
    def n_topics(self) -> int:
        return len(self.labels)


def _rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (never Python's salted hash)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    entropy = int.from_bytes(hashlib.blake2b(blob, digest_size=16).digest(), "little")
    return np.random.default_rng(entropy)


@lru_cache(maxsize=32)
def make_world(world_seed: int, n_topics: int) -> SyntheticWorld:
    """The world of ``(world_seed, n_topics)``: topics, their words, transitions.

    With more topics than built-in themes, the extra topics combine two themes (their
    words then overlap with the pure ones, which makes them harder to tell apart).
    """
    if n_topics < 2:
        raise ValueError("a synthetic world needs at least 2 topics")
    rng = _rng("silorec-world-v1", int(world_seed), int(n_topics))
    order = rng.permutation(len(THEMES))
    labels: list[str] = []
    words: list[tuple[str, ...]] = []
    pairs: set[tuple[int, int]] = set()
    for t in range(n_topics):
        if t < len(THEMES):
            label, pool = THEMES[order[t]]
        else:
            while True:  # a pair of themes not combined before
                a, b = (int(v) for v in rng.choice(len(THEMES), size=2, replace=False))
                if (a, b) not in pairs:
                    pairs.add((a, b))
                    break
            (la, wa), (lb, wb) = THEMES[order[a]], THEMES[order[b]]
            label, pool = f"{la} & {lb}", wa[: len(wa) // 2] + wb[len(wb) // 2 :]
        labels.append(label)
        words.append(tuple(pool))

    # Sparse, strongly structured transitions: stay with probability ~0.15-0.4, else
    # move to one of 2-3 successors; a little smoothing keeps every move possible.
    smoothing = 0.04
    transition = np.full((n_topics, n_topics), smoothing / n_topics)
    for t in range(n_topics):
        stay = rng.uniform(0.15, 0.4)
        others = np.delete(np.arange(n_topics), t)
        k = min(len(others), int(rng.integers(2, 4)))
        succ = rng.choice(others, size=k, replace=False)
        transition[t, t] += (1 - smoothing) * stay
        transition[t, succ] += (1 - smoothing) * (1 - stay) * rng.dirichlet(np.full(k, 2.0))
    transition /= transition.sum(axis=1, keepdims=True)
    topic_prior = rng.dirichlet(np.full(n_topics, 4.0))
    transition.setflags(write=False)
    topic_prior.setflags(write=False)
    return SyntheticWorld(int(world_seed), tuple(labels), tuple(words), transition, topic_prior)


# ---------------------------------------------------------------------------
# Flavours.
# ---------------------------------------------------------------------------


def resolve_flavour(flavour: str | None, name: str) -> Flavour:
    """The explicit flavour (must be known), else one matched from the domain name's
    words (``'toys_and_games'`` -> toys), else a stable hash of the name."""
    if flavour is not None:
        key = flavour.strip().lower()
        if key in FLAVOURS:
            return FLAVOURS[key]
        for f in FLAVOURS.values():
            if key in f.aliases or key.rstrip("s") == f.key.rstrip("s"):
                return f
        known = ", ".join(FLAVOURS)
        raise ValueError(f"unknown synthetic flavour '{flavour}' (known: {known})")
    lowered = name.lower()
    for f in FLAVOURS.values():
        if f.key in lowered or f.key.rstrip("s") in lowered:
            return f
    for f in FLAVOURS.values():
        if any(alias in lowered for alias in f.aliases):
            return f
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    keys = sorted(FLAVOURS)
    return FLAVOURS[keys[int.from_bytes(digest, "little") % len(keys)]]


# ---------------------------------------------------------------------------
# Domains.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Catalogue:
    topics: np.ndarray  # int64 [n_items]
    group_start: np.ndarray  # int64 [n_topics + 1]: items of topic t are a contiguous block
    cdf_flat: np.ndarray  # float64 [n_items]: per-topic popularity cdf, shifted by topic
    catalogue: ItemCatalogue


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = str(rng.choice(_BRAND_HEADS)) + str(rng.choice(_BRAND_TAILS))
        if name in seen:
            if len(seen) >= len(_BRAND_HEADS) * len(_BRAND_TAILS):
                name = f"{name} {len(names)}"
            else:
                continue
        seen.add(name)
        names.append(name)
    return names


def _make_catalogue(
    world: SyntheticWorld, flavour: Flavour, n_items: int, rng: np.random.Generator
) -> _Catalogue:
    n_topics = world.n_topics
    # Topic sizes: every topic gets an item while there are enough, the rest by a
    # domain-specific Dirichlet share. Items of one topic form a contiguous block.
    base = min(n_items, n_topics)
    first = rng.permutation(n_topics)[:base]
    counts = np.bincount(first, minlength=n_topics)
    counts += rng.multinomial(n_items - base, rng.dirichlet(np.full(n_topics, 3.0)))
    group_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    topics = np.repeat(np.arange(n_topics), counts)

    # Within a topic: a facet (primary word) per item, items ordered by facet so that
    # neighbours share a word; popularity is Zipf over a random rank order.
    cdf_flat = np.empty(n_items)
    facet = np.empty(n_items, dtype=np.int64)
    for t in range(n_topics):
        lo, hi = group_start[t], group_start[t + 1]
        m = hi - lo
        if m == 0:
            continue
        n_facets = max(1, min(len(world.words[t]), int(np.ceil(m / 4))))
        facets = rng.choice(len(world.words[t]), size=n_facets, replace=False)
        facet[lo:hi] = np.sort(rng.choice(facets, size=m))
        ranks = rng.permutation(m)
        weights = 1.0 / (ranks + 1.0) ** ZIPF_EXPONENT
        cdf = np.cumsum(weights) / weights.sum()
        cdf[-1] = 1.0
        cdf_flat[lo:hi] = t + cdf

    # Brands: each has a home topic; items mostly take a brand of their topic.
    n_brands = max(4, min(400, n_items // 15))
    brands = _brand_names(rng, n_brands)
    brand_topic = rng.integers(0, n_topics, size=n_brands)
    by_topic = [np.flatnonzero(brand_topic == t) for t in range(n_topics)]

    titles: list[str] = []
    item_brands: list[str] = []
    categories: list[str] = []
    u = rng.random((n_items, 6))
    for i in range(n_items):
        t = int(topics[i])
        pool = world.words[t]
        primary = pool[int(facet[i])]
        n_extra = int(u[i, 0] < 0.75) + int(u[i, 0] < 0.3)
        extra_idx = [j for j in rng.permutation(len(pool))[: n_extra + 1] if pool[j] != primary]
        words = [pool[j] for j in extra_idx[:n_extra]]
        parts: list[str] = []
        if u[i, 1] < 0.35:
            parts.append(flavour.adjectives[int(u[i, 2] * len(flavour.adjectives))])
        parts.extend(words)
        parts.append(primary)
        parts.append(flavour.nouns[int(u[i, 3] * len(flavour.nouns))])
        if u[i, 4] < 0.5:
            parts.append(flavour.suffixes[int(u[i, 5] * len(flavour.suffixes))])
        title = " ".join(parts)
        titles.append(title[0].upper() + title[1:])
        own = by_topic[t]
        if len(own) and rng.random() < 0.8:
            b = int(own[rng.integers(len(own))])
        else:
            b = int(rng.integers(n_brands))
        item_brands.append(brands[b])
        categories.append(f"{flavour.label} > {world.labels[t]}")

    ids = [f"item{i:06d}" for i in range(n_items)]
    catalogue = ItemCatalogue(
        ids=ids, fields={"title": titles, "brand": item_brands, "category": categories}
    )
    return _Catalogue(topics, group_start, cdf_flat, catalogue)


def _sequence_lengths(n_users: int, mean_length: float, rng: np.random.Generator) -> np.ndarray:
    """At least ``LOO_HOLDOUT + 1`` (every user evaluable), mean ~``mean_length``."""
    floor = LOO_HOLDOUT + 1
    extra_mean = max(0.0, mean_length - floor)
    if extra_mean == 0.0:
        return np.full(n_users, floor, dtype=np.int64)
    p = LENGTH_DISPERSION / (LENGTH_DISPERSION + extra_mean)
    return floor + rng.negative_binomial(LENGTH_DISPERSION, p, size=n_users).astype(np.int64)


def _sample_rows(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One categorical draw per row of ``probs`` (rows sum to ~1) from uniforms ``u``."""
    cdf = np.cumsum(probs, axis=1)
    out = (cdf < (u * cdf[:, -1])[:, None]).sum(axis=1)
    return np.minimum(out, probs.shape[1] - 1)


def _make_sequences(
    world: SyntheticWorld,
    cat: _Catalogue,
    n_users: int,
    mean_length: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat item array and offsets for ``n_users`` users of the latent process."""
    n_topics = world.n_topics
    n_items = len(cat.topics)
    sizes = np.diff(cat.group_start)
    has_items = (sizes > 0).astype(np.float64)

    lengths = _sequence_lengths(n_users, mean_length, rng)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = np.empty(offsets[-1], dtype=np.int32)

    # Sparse topic preferences around the world's prior (shared across domains).
    alpha = 0.5 * n_topics * np.asarray(world.topic_prior)
    prefs = rng.gamma(np.maximum(alpha, 1e-3), size=(n_users, n_topics))
    prefs *= has_items
    prefs /= prefs.sum(axis=1, keepdims=True).clip(min=1e-300)
    # Users whose preference fell entirely on empty topics: uniform over non-empty.
    empty = prefs.sum(axis=1) <= 0
    prefs[empty] = has_items / has_items.sum()

    trans = np.asarray(world.transition) * has_items
    trans /= trans.sum(axis=1, keepdims=True)

    # Process users longest first so that the users still active at step t are a
    # prefix: every step is a handful of vector operations over that prefix.
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    base = offsets[:-1][order]
    prefs = prefs[order]
    cur_topic = np.zeros(n_users, dtype=np.int64)
    prev_item = np.full(n_users, -1, dtype=np.int64)

    for t in range(int(sorted_len[0]) if n_users else 0):
        n_act = int(np.searchsorted(-sorted_len, -t, side="left"))  # users with len > t
        if n_act == 0:
            break
        u = rng.random((n_act, 4))
        if t == 0:
            topic = _sample_rows(prefs[:n_act], u[:, 0])
        else:
            probs = (1 - PREFERENCE_MIX) * trans[cur_topic[:n_act]] + PREFERENCE_MIX * prefs[:n_act]
            topic = _sample_rows(probs, u[:, 0])
        # Item by popularity within the topic (flat shifted-cdf search).
        item = np.searchsorted(cat.cdf_flat, topic + u[:, 1], side="left")
        item = np.clip(item, cat.group_start[topic], cat.group_start[topic + 1] - 1)
        prev = prev_item[:n_act]
        if t > 0:
            # Locality: a neighbour (+-1, +-2) of the previous item in the same topic.
            local = (u[:, 2] < LOCALITY) & (topic == cur_topic[:n_act])
            if local.any():
                lo = cat.group_start[topic[local]]
                size = sizes[topic[local]]
                step = np.array([-2, -1, 1, 2])[(u[local, 3] * 4).astype(np.int64) % 4]
                item[local] = lo + (prev[local] - lo + step) % size
            # No immediate repeats: move to the next item of the topic, or anywhere.
            rep = item == prev
            if rep.any():
                lo = cat.group_start[topic[rep]]
                size = sizes[topic[rep]]
                nxt = lo + (item[rep] - lo + 1) % size
                lone = size == 1
                if lone.any():
                    nxt[lone] = (
                        item[rep][lone] + 1 + rng.integers(0, n_items - 1, lone.sum())
                    ) % n_items
                item[rep] = nxt
                topic[rep] = cat.topics[item[rep]]
        flat[base[:n_act] + t] = item
        prev_item[:n_act] = item
        cur_topic[:n_act] = topic
    return flat, offsets


def generate_domain_with_truth(source: SyntheticSource, name: str) -> tuple[DomainData, np.ndarray]:
    """:func:`generate_domain` plus each item's latent topic (int64 ``[n_items]``,
    indexing ``make_world(source.world_seed, source.n_topics)``'s topics)."""
    world = make_world(source.world_seed, source.n_topics)
    flavour = resolve_flavour(source.flavour, name)
    key = ("silorec-domain-v1", source.world_seed, source.n_topics, flavour.key, source.seed, name)
    cat = _make_catalogue(world, flavour, source.n_items, _rng(*key, "items", source.n_items))
    flat, offsets = _make_sequences(
        world,
        cat,
        source.n_users,
        source.mean_length,
        _rng(*key, "users", source.n_items, source.n_users, source.mean_length),
    )
    # Shuffle item indices so that an item's index says nothing about its topic.
    order = _rng(*key, "shuffle", source.n_items).permutation(source.n_items)
    new_of_old = np.argsort(order)
    fields = {k: [v[i] for i in order] for k, v in cat.catalogue.fields.items()}
    data = DomainData(
        name=name,
        items=ItemCatalogue(ids=cat.catalogue.ids, fields=fields),
        user_ids=[f"user{u:06d}" for u in range(source.n_users)],
        offsets=offsets,
        flat_items=new_of_old[flat],
        holdout=np.full(source.n_users, LOO_HOLDOUT, dtype=np.int8),
    )
    return data, cat.topics[order]


def generate_domain(source: SyntheticSource, name: str) -> DomainData:
    """The synthetic domain ``name`` described by ``source`` (deterministic)."""
    return generate_domain_with_truth(source, name)[0]
