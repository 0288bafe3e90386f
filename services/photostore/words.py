"""A person's words as a lexical query: the words to look for, "quoted phrases", -excluded words.

The words are split as the store's text index splits a photo's `search_text` (ClickHouse's
`splitByNonAlpha`: every ASCII character that is not a letter or a digit separates, any other
character is part of a word) and lower-cased, so a query word is a token the index holds. Quotes and
minus signs only shape the query; nothing here is ever SQL text (the words travel as bound arrays).
Imports no database driver: the gateway parses queries with it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# Words too common to say anything about a photo, in the two languages our users write (English and
# Spanish). Dropped from the words searched (reported in `ignored`), kept inside phrases, where they
# are part of what must be adjacent.
STOP_WORDS = frozenset("""
a an and are as at be but by for from has have in into is it its of on or that the their this to was
were with without i me my we our you your he she they them his her not no yes do does did so than
then there these those what which who whom how when where why all any some
el la los las lo un una unos unas y e o u de del al en con sin por para que se es son fue como mas
pero su sus mi mis tu tus le les ya muy este esta estos estas ese esa esos esas aquel
""".split())

# ClickHouse's splitByNonAlpha: ASCII non-alphanumerics separate; bytes of other characters do not.
_SEPARATORS = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+")
# A query piece: an optional leading minus, then a "quoted phrase" (closed or running to the end) or
# a run of non-space characters.
_PIECE = re.compile(r'(-?)(?:"([^"]*)"?|(\S+))')


def split_words(text: str) -> list[str]:
    """`text` as the text index's tokens: split on ASCII non-alphanumerics, lower-cased."""
    return [word for word in _SEPARATORS.split(text.lower()) if word]


@dataclass(frozen=True)
class LexicalQuery:
    """What a lexical search looks for. A photo matches when it holds any of `words` (or of the
    phrases' words), every phrase (its words adjacent, in order) and none of `excluded`. Each exclusion is a tuple of words: one word (`-word`) or a phrase
    (`-"a phrase"`)."""

    words: tuple[str, ...] = ()
    phrases: tuple[tuple[str, ...], ...] = ()
    excluded: tuple[tuple[str, ...], ...] = ()
    ignored: tuple[str, ...] = ()
    truncated: bool = False
    text: str = field(default="", compare=False)

    @property
    def empty(self) -> bool:
        """Nothing left to search for: the text was only punctuation, stop-words or exclusions."""
        return not self.words and not self.phrases

    @property
    def terms(self) -> tuple[str, ...]:
        """The words that score a photo (BM25): the words, then the phrases' words not already there."""
        return tuple(dict.fromkeys([*self.words, *(word for phrase in self.phrases for word in phrase
                                                   if not _ignorable(word))]))


def _ignorable(token: str) -> bool:
    """A stop-word, or a lone ASCII letter (the `t` of "don't"): nothing to rank a photo by."""
    return token in STOP_WORDS or (len(token) == 1 and token.isascii() and token.isalpha())


def _cut(text: str, max_chars: int) -> tuple[str, bool]:
    """`text` cut to at most `max_chars` characters at a word boundary, and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    head = text[:max_chars]
    if not text[max_chars].isspace():
        space = max(head.rfind(" "), head.rfind("\t"), head.rfind("\n"))
        head = head[:space] if space > 0 else head
    return head, True


def parse_query(text: str, max_chars: int = 1000) -> LexicalQuery:
    """The words, phrases and exclusions of a person's query (see LexicalQuery). A piece made of
    several tokens without quotes (IMG_4021, e-mail) gives its tokens as separate words; after a
    minus it is excluded as a phrase, so `-IMG_4021` drops only that file. Text past `max_chars` is
    cut at a word boundary (`truncated`)."""
    if not isinstance(text, str):
        raise TypeError("the query must be text")
    if max_chars < 1:
        raise ValueError("max_chars must be 1 or more")
    text, truncated = _cut(text, max_chars)
    words: list[str] = []
    phrases: list[tuple[str, ...]] = []
    excluded: list[tuple[str, ...]] = []
    ignored: list[str] = []
    for minus, quoted, bare in _PIECE.findall(text):
        if minus and not quoted and not bare:
            continue
        tokens = split_words(quoted if quoted or not bare else bare)
        if not tokens:
            if bare or quoted:
                ignored.append(bare or quoted)
            continue
        if minus:
            excluded.append(tuple(tokens))
        elif quoted:
            phrases.append(tuple(tokens))
        else:
            for token in tokens:
                (ignored if _ignorable(token) else words).append(token)
    return LexicalQuery(words=tuple(dict.fromkeys(words)), phrases=tuple(dict.fromkeys(phrases)),
                        excluded=tuple(dict.fromkeys(excluded)),
                        ignored=tuple(dict.fromkeys(ignored)), truncated=truncated, text=text)
