"""Labeled user agents that ship inside installed packages, to measure the bot flag (no download).

The packages come with the ``dev`` extra (``pip install -e '.[dev]'``); nothing at run time needs them.

- ``random-user-agent``: a sample of ~326,000 agents seen on the web (whatismybrowser.com, 2018), each
  labeled with the kind of software that sent it. ``browser -> web-browser`` and
  ``browser -> in-app-browser`` are **humans**; ``bot -> ...`` are crawlers, site monitors and
  analysers (their labels include plain browser agents: recall on them is shown, not targeted).
- ``fake-useragent``: ~840 agents of current browsers with their market share (2025): **humans**.
- ``crawler-user-agents``: the example agents ("instances") of ~1,500 crawler patterns, each tagged
  (``search-engine``, ``seo``, ``monitoring``...): **crawlers**.

crawlerdetect's own fixtures are not in its wheel, and uap-core's test files are in no installed
package, so neither is used.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import zipfile
from dataclasses import dataclass

from clickwise.errors import EnrichmentError

__all__ = ["LabeledAgents", "crawler_sets", "human_sets"]

_HUMAN_TYPES = ("browser -> web-browser", "browser -> in-app-browser")


@dataclass(frozen=True)
class LabeledAgents:
    """Distinct agents of one label from one package, sorted (so samples are reproducible)."""

    name: str
    agents: tuple[str, ...]

    def sample(self, every: int) -> LabeledAgents:
        """Every ``every``-th agent (``every`` 1 keeps them all)."""
        return LabeledAgents(f"{self.name} (1 in {every})" if every > 1 else self.name, self.agents[::every])


def human_sets() -> list[LabeledAgents]:
    """Agents of real browsers: random-user-agent's browser-labeled ones, then fake-useragent's."""
    humans, _ = _random_user_agent()
    current = _resource("fake_useragent", "data/browsers.jsonl").read_text(encoding="utf-8").splitlines()
    return [
        LabeledAgents("random-user-agent browsers", humans),
        LabeledAgents(
            "fake-useragent browsers", tuple(sorted({json.loads(line)["useragent"] for line in current}))
        ),
    ]


def crawler_sets() -> list[LabeledAgents]:
    """crawler-user-agents' instances: all of them, then those tagged ``search-engine``; and
    random-user-agent's bot-labeled agents."""
    entries = json.loads(
        _resource("crawleruseragents", "crawler-user-agents.json").read_text(encoding="utf-8")
    )
    every = {agent for entry in entries for agent in entry.get("instances", [])}
    engines = {
        agent
        for entry in entries
        if "search-engine" in entry.get("tags", [])
        for agent in entry.get("instances", [])
    }
    _, bots = _random_user_agent()
    return [
        LabeledAgents("crawler-user-agents instances", tuple(sorted(every))),
        LabeledAgents("crawler-user-agents search engines", tuple(sorted(engines))),
        LabeledAgents("random-user-agent bots", bots),
    ]


@functools.cache
def _random_user_agent() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(humans, bots) of random-user-agent's labeled sample, each distinct and sorted (read once)."""
    humans: set[str] = set()
    bots: set[str] = set()
    with zipfile.ZipFile(str(_resource("random_user_agent", "data/user_agents.zip"))) as archive:
        with archive.open("user_agents.jl") as lines:
            for line in lines:
                record = json.loads(line)
                if record["software_type"] in _HUMAN_TYPES:
                    humans.add(record["user_agent"])
                elif record["software_type"].startswith("bot"):
                    bots.add(record["user_agent"])
    return tuple(sorted(humans)), tuple(sorted(bots))


def _resource(package: str, path: str) -> importlib.resources.abc.Traversable:
    try:
        found = importlib.resources.files(package).joinpath(path)
    except ModuleNotFoundError as exc:
        raise EnrichmentError(
            f"the labeled agents need the package {package!r}: pip install -e '.[dev]'"
        ) from exc
    if not found.is_file():
        raise EnrichmentError(
            f"the package {package!r} has no file {path!r}; reinstall it: pip install -e '.[dev]'"
        )
    return found
