"""Enrichment: country from IP address, browser/OS/device/bot from user agent.

One implementation serves batch ingest, streaming and the online decision path; each class has a
vectorized ``*_many`` method and a one-record ``*_one`` method that give identical answers.
"""

from clickwise.enrich.agent import AgentParser
from clickwise.enrich.geo import GeoResolver

__all__ = ["AgentParser", "GeoResolver"]
