"""Measure the bot flag of the agent enrichment on labeled agents shipped inside installed packages.

Prints the false-positive rate on human browsers (target <= 0.5%) and the recall on crawlers (target
>= 95% on search-engine crawlers; the other crawler sets are shown beside it), with counts, the
crawler names (or rules) behind the most false positives with an example each, and the classification
speed beside the raw ua-parser call on the same agents, measured in the same run (these machines are
shared and noisy). The sets are described in ``clickwise.enrich.agent_sets`` (dev extra; no download).

    .venv/bin/python benchmarks/bench_agents.py            # every agent (~330,000; a few minutes)
    .venv/bin/python benchmarks/bench_agents.py --every 16 # 1 human agent in 16

crawlerdetect's own fixtures (crawlers and real devices) ship only in its source package on PyPI, not
in the wheel; to measure on them too:

    pip download --no-binary :all: --no-deps crawlerdetect -d /tmp/cd && tar xzf /tmp/cd/*.tar.gz -C /tmp/cd
    .venv/bin/python benchmarks/bench_agents.py \
        --crawlerdetect-fixtures /tmp/cd/crawlerdetect-*/tests/fixtures
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from ua_parser import Domain

from clickwise.enrich import AgentParser
from clickwise.enrich.agent import _AUTOMATION, _is_browser_agent, _ua_resolver
from clickwise.enrich.agent_sets import LabeledAgents, crawler_sets, human_sets
from clickwise.enrich.crawler import crawler_evidence

FPR_TARGET = 0.005
RECALL_TARGET = 0.95


def flagged(parser: AgentParser, agents: tuple[str, ...]) -> list[str]:
    return [agent for agent in agents if parser.parse_one(agent)["is_bot_agent"]]


def reason(agent: str) -> str:
    """Which rule flags ``agent``: ua-parser's Spider device, the automation pattern or a crawler name."""
    result = _ua_resolver()(agent, Domain.ALL)
    if result.device is not None and result.device.family == "Spider":
        return "ua-parser Spider device"
    if (automation := _AUTOMATION.search(agent)) is not None:
        return f"automation {automation.group()!r}"
    browser = result.user_agent.family if result.user_agent is not None else "Other"
    os = result.os.family if result.os is not None else "Other"
    return f"crawler name {crawler_evidence(agent, is_browser=_is_browser_agent(agent, browser, os))!r}"


def report_humans(parser: AgentParser, sets: list[LabeledAgents], worst: int) -> float:
    total = positives = 0
    causes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for labeled in sets:
        hits = flagged(parser, labeled.agents)
        total, positives = total + len(labeled.agents), positives + len(hits)
        print(
            f"  {labeled.name:<44} {len(hits):6,} of {len(labeled.agents):8,} flagged  "
            f"{len(hits) / max(len(labeled.agents), 1):7.3%}"
        )
        for agent in hits:
            cause = reason(agent)
            causes[cause] += 1
            examples.setdefault(cause, agent)
    rate = positives / max(total, 1)
    verdict = "ok" if rate <= FPR_TARGET else "ABOVE TARGET"
    print(
        f"  {'false-positive rate on humans':<44} {positives:6,} of {total:8,}          {rate:7.3%}  "
        f"(target <= {FPR_TARGET:.1%}: {verdict})"
    )
    print(f"  worst false-positive patterns (top {worst}):")
    for cause, count in causes.most_common(worst):
        print(f"    {count:6,}  {cause:<42} e.g. {examples[cause][:110]}")
    return rate


def report_crawlers(parser: AgentParser, sets: list[LabeledAgents], shown_missed: int) -> None:
    for index, labeled in enumerate(sets):
        hits = set(flagged(parser, labeled.agents))
        recall = len(hits) / max(len(labeled.agents), 1)
        target = "  (target >= 95%: " + ("ok)" if recall >= RECALL_TARGET else "BELOW TARGET)")
        print(
            f"  recall on {labeled.name:<34} {len(hits):6,} of {len(labeled.agents):8,} flagged  "
            f"{recall:7.3%}{target}"
        )
        if shown_missed and index == 0:
            missed = [agent for agent in labeled.agents if agent not in hits]
            print(f"    missed, e.g.: {' | '.join(agent[:60] for agent in missed[:shown_missed])}")


def report_speed(agents: tuple[str, ...]) -> None:
    """Uncached classification per agent beside the raw ua-parser call, on the same agents."""
    resolver = _ua_resolver()
    parser = AgentParser(cache_size=0)
    started = time.perf_counter()
    for agent in agents:
        resolver(agent, Domain.ALL)
    reference = (time.perf_counter() - started) / len(agents)
    started = time.perf_counter()
    for agent in agents:
        parser.parse_one(agent)
    seconds = (time.perf_counter() - started) / len(agents)
    print(
        f"  {'reference: ua-parser resolver, uncached':<44} {reference * 1e6:8.1f} µs/agent  "
        f"x{1.0:6.1f} reference"
    )
    print(
        f"  {'AgentParser.parse_one, uncached':<44} {seconds * 1e6:8.1f} µs/agent  "
        f"x{seconds / reference:6.1f} reference"
    )


def _fixture(name: str, path: Path) -> LabeledAgents:
    lines = {line.strip() for line in path.read_text(encoding="utf-8").splitlines()}
    return LabeledAgents(name, tuple(sorted(line for line in lines if line)))


def main() -> None:
    arguments = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    arguments.add_argument("--every", type=int, default=1, help="measure 1 human agent in N (default: all)")
    arguments.add_argument("--worst", type=int, default=15, help="false-positive patterns shown")
    arguments.add_argument(
        "--speed-agents", type=int, default=5_000, help="agents timed for the speed figure"
    )
    arguments.add_argument(
        "--crawlerdetect-fixtures",
        type=Path,
        help="tests/fixtures of crawlerdetect's source package: adds its user-agent devices (humans) "
        "and crawlers",
    )
    args = arguments.parse_args()
    started = time.perf_counter()
    humans = [labeled.sample(args.every) for labeled in human_sets()]
    crawlers = crawler_sets()
    if args.crawlerdetect_fixtures is not None:
        folder = args.crawlerdetect_fixtures / "user_agent"
        humans.append(_fixture("crawlerdetect fixtures: devices", folder / "devices.txt"))
        crawlers.append(_fixture("crawlerdetect fixtures: crawlers", folder / "crawlers.txt"))
    print(f"labeled sets loaded in {time.perf_counter() - started:.1f} s")
    parser = AgentParser()
    print("humans (real browsers):")
    report_humans(parser, humans, args.worst)
    print("crawlers:")
    report_crawlers(parser, crawlers, shown_missed=5)
    print("speed:")
    report_speed(humans[0].agents[:: max(len(humans[0].agents) // args.speed_agents, 1)][: args.speed_agents])


if __name__ == "__main__":
    main()
