"""Crawler evidence in a user agent: crawlerdetect's list of names, read in context.

crawlerdetect removes the tokens every browser sends (``Mozilla/5.0``, ``Windows NT 10.0``, ``Gecko``...)
and then searches what is left for any of ~1,500 crawler names, as case-insensitive substrings, taking
the first hit as proof. In a browser's own agent (``is_browser``: it starts like one and ua-parser
recognized the browser and its OS), two kinds of hit are not evidence of a crawler, and
:func:`crawler_evidence` drops them:

- **A name found inside a longer word**: ``word/`` in ``Qword/35.0`` or ``1Password/5.1``, ``izSearch``
  in ``MindQuizSearchToolbar``. (The generic ``...bot``/``...spider`` patterns always match from the
  start of their word, so they are unaffected; a word that is part of a domain name is the site's own
  robot and stays evidence: ``GotSiteMonitor.com``.)
- **A browser add-on's token.** Download managers, toolbars and the Office applications that render
  mail with the browser engine add their own token to the agent of the browser they live in
  (``Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; Trident/4.0; QQDownload 732; .NET4.0C)``,
  ``...; Microsoft Outlook 16.0.4266; ms-office; MSOffice 16)``). crawlerdetect lists those names because
  the same programs also fetch files on their own, with their own agent (``QQDownload/1.7``,
  ``AndroidDownloadManager/4.4``: still crawlers here); inside a browser's agent they only say what the
  person has installed. An add-on token (delimited by ``;``, ``,``, parentheses or a space before a
  ``Name/version``) names a download manager, a toolbar or an Office application.

A token that says what crawlers say about themselves (a URL, an e-mail address, bot/crawl/spider) is
never excused. Every other hit is evidence, and the search goes on past a dropped hit, so an agent
that also names a crawler elsewhere stays a crawler.

>>> crawler_evidence("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True)
'Googlebot'
>>> print(crawler_evidence(
...     "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; Trident/4.0; QQDownload 732; .NET4.0C)", True))
None
>>> crawler_evidence("QQDownload/1.7", False)
'QQDownload'
"""

from __future__ import annotations

import functools
import re

from crawlerdetect.providers.crawlers import data as _CRAWLER_NAMES
from crawlerdetect.providers.exclusions import data as _BROWSER_TOKENS

__all__ = ["crawler_evidence"]

_ADD_ON = re.compile(
    r"download|toolbar|outlook|ms-?office|microsoft office|\b(?:word|excel|powerpoint)\b", re.IGNORECASE
)
"""Words that name a download manager, a toolbar or an Office application inside a token."""

_SELF_DECLARED = re.compile(r"bot|crawl|spider|https?:|www\.|@", re.IGNORECASE)
"""What crawlers write about themselves: a token saying one of these is never an add-on."""

_DOMAIN = re.compile(r"\w\.(?:com|net|org|io|de|ru)\b", re.IGNORECASE)
"""A domain name: a word inside a token that names a web site is the site's own robot, not a substring."""

_TOKEN_END = re.compile(r"[;,()]| (?=[^ ;,()/]+/)")
"""Where a token of an agent ends: a delimiter, or a space before the next ``Name/version``."""


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """crawlerdetect's two regexes, compiled as crawlerdetect itself compiles them (once per process)."""
    names = re.compile(f"({'|'.join(_CRAWLER_NAMES)})", re.IGNORECASE)
    browser_tokens = re.compile(f"({'|'.join(_BROWSER_TOKENS)})", re.IGNORECASE)
    return names, browser_tokens


def crawler_evidence(agent: str, is_browser: bool) -> str | None:
    """The first crawler name in ``agent`` that is evidence of a crawler, or None.

    Args:
        agent: the user agent as sent.
        is_browser: whether a browser was recognized in the agent (ua-parser found a browser family);
            add-on tokens are only excused inside a browser's agent.
    """
    names, browser_tokens = _patterns()
    rest = browser_tokens.sub("", agent.strip())
    position = 0
    while (hit := names.search(rest, position)) is not None:
        position = max(hit.end(), hit.start() + 1)
        if is_browser and _is_excused(rest, hit):
            continue
        return hit.group()
    return None


def _is_excused(text: str, hit: re.Match[str]) -> bool:
    """Whether a hit in a browser's agent is a part of a longer word or an add-on's name."""
    token = _token_around(text, hit.start(), hit.end())
    if _SELF_DECLARED.search(token) is not None:
        return False
    before = text[hit.start() - 1] if hit.start() > 0 else " "
    inside_a_word = before.isascii() and before.isalnum()
    return (inside_a_word and _DOMAIN.search(token) is None) or _ADD_ON.search(token) is not None


def _token_around(text: str, start: int, end: int) -> str:
    """The token of ``text`` that holds ``text[start:end]`` (see the module docstring)."""
    token_start = max((m.end() for m in _TOKEN_END.finditer(text, 0, start)), default=0)
    token_end = _TOKEN_END.search(text, end)
    return text[token_start : token_end.start() if token_end is not None else len(text)]
