"""The deterministic layer of the safety stage: patterns and phrase lists per category, for what
must be caught whatever the guard model says (the guard model covers paraphrase; rules cover the
known shapes, role-play jailbreak framings included).

A `RuleSet` scans a text and returns every hit with its category and where it is, so a monitor
of a streamed answer can tell where the flagged text starts. Phrases match whole words, case and
runs of whitespace ignored; patterns are regular expressions (case-insensitive). Rules come from
`DEFAULT_RULES` or a JSON file of the same shape (`{"category": {"phrases": [...], "patterns":
[...]}}`, categories from `CATEGORIES`), checked when loaded: an unknown category or a pattern
that does not compile is refused naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The categories of the safety stage (the guard model's labels, the rules' keys).
CATEGORIES = ("violence", "self_harm", "sexual_minors", "hate", "illicit", "jailbreak")

#: Role-play framings and instruction overrides (jailbreak), and the unmistakable requests of each
#: harmful category. Deliberately narrow: a rule never fires on a safe text of the fixture set.
DEFAULT_RULES: dict[str, dict[str, list[str]]] = {
    "jailbreak": {
        "phrases": ["ignore all previous instructions", "ignore your previous instructions",
                    "ignore all prior instructions", "disregard your guidelines", "developer mode enabled",
                    "you are now DAN", "do anything now", "jailbroken"],
        "patterns": [
            r"\b(?:act\s+as|pretend\s+to\s+be|role-?play\s+as|pretend\s+you\s+are|you\s+are)\s+my\s+"
            r"(?:late|dead|deceased)\s+grand(?:ma|mother|pa|father)\b",
            r"\bpretend\s+(?:that\s+)?you\s+(?:have|had)\s+no\s+(?:rules|restrictions|filters|guidelines)\b",
            r"\b(?:you\s+are|act\s+as)\s+an?\s+(?:unfiltered|uncensored|unrestricted)\s+(?:ai|assistant|model)\b",
            r"\bused\s+to\s+(?:read|tell)\s+me\s+(?:the\s+)?(?:recipe|steps|instructions)\s+for\b",
        ],
    },
    "violence": {
        "phrases": ["build a pipe bomb", "make a pipe bomb", "how to make a bomb", "untraceable gun"],
        "patterns": [r"\bmix\s+(?:the\s+)?(?:fertili[sz]er|ammonium\s+nitrate)\s+with\s+(?:fuel|diesel)\b",
                     r"\b(?:kill|murder|stab|shoot)\s+(?:my|the|a)\s+(?:neighbou?r|teacher|wife|husband|boss)\b"],
    },
    "self_harm": {
        "phrases": ["kill myself", "end my life", "ways to commit suicide", "how to self-harm"],
        "patterns": [r"\bhow\s+many\s+(?:pills|tablets)\s+(?:does\s+it\s+take\s+)?to\s+(?:die|overdose)\b"],
    },
    "sexual_minors": {
        "phrases": [],
        "patterns": [r"\b(?:sexual|explicit|nude)\b[^.!?\n]{0,40}\b(?:child|children|minor|minors|kid|kids|"
                     r"\d{1,2}[- ]year[- ]old)\b",
                     r"\b(?:child|children|minor|minors|kid|kids)\b[^.!?\n]{0,40}\b(?:sexual|explicit|nude)\b"],
    },
    "hate": {
        "phrases": ["should be exterminated", "are subhuman", "inferior race"],
        "patterns": [],
    },
    "illicit": {
        "phrases": ["synthesize methamphetamine", "cook meth", "make napalm", "synthesize sarin",
                    "launder the money"],
        "patterns": [r"\b(?:recipe|steps|instructions)\s+(?:for|to)\s+(?:(?:make|making|synthesi[sz]e|"
                     r"synthesi[sz]ing)\s+)?(?:napalm|sarin|meth(?:amphetamine)?|ricin|nerve\s+gas)\b"],
    },
}


@dataclass(frozen=True)
class RuleHit:
    """A rule that fired: its category, the rule itself, and the span of text it matched."""

    category: str
    rule: str
    start: int
    end: int


class RuleSet:
    """Compiled rules by category (see module docstring)."""

    def __init__(self, rules: Mapping[str, Mapping[str, list[str]]] = DEFAULT_RULES) -> None:
        self._compiled: list[tuple[str, str, re.Pattern[str]]] = []
        for category, kinds in rules.items():
            if category not in CATEGORIES:
                raise ValueError(f"rules: {category!r} is not a category ({', '.join(CATEGORIES)})")
            for kind in kinds:
                if kind not in ("phrases", "patterns"):
                    raise ValueError(f"rules.{category}: {kind!r} is not phrases or patterns")
            for phrase in kinds.get("phrases", []):
                words = r"\s+".join(re.escape(w) for w in phrase.split())
                self._compiled.append((category, phrase, re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)))
            for pattern in kinds.get("patterns", []):
                try:
                    self._compiled.append((category, pattern, re.compile(pattern, re.IGNORECASE)))
                except re.error as exc:
                    raise ValueError(f"rules.{category}.patterns: {pattern!r} does not compile: "
                                     f"{exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> RuleSet:
        """Rules from a JSON file shaped like DEFAULT_RULES."""
        return cls(json.loads(Path(path).read_text()))

    def scan(self, text: str) -> list[RuleHit]:
        """Every hit in `text`, earliest first."""
        hits = [RuleHit(category, rule, m.start(), m.end())
                for category, rule, compiled in self._compiled for m in compiled.finditer(text)]
        return sorted(hits, key=lambda h: (h.start, h.end))

    def categories(self, text: str) -> set[str]:
        """The categories `text` hits."""
        return {h.category for h in self.scan(text)}
