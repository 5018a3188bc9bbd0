"""The four output streams: their Arrow schemas and the conversion from numpy columns to tables.

Field names and types are a contract (ingest, the label join and outside checks read them):

- ``impressions``: impression_id, user_id, campaign_id, domain, ip, user_agent, cost, ts, arrival_ts
- ``clicks``: click_id, impression_id, user_id, campaign_id, ts, arrival_ts
- ``predictions``: user_id, segment_id, score, ts, arrival_ts
- ``truth``: impression_id, p_click (the probability the click was drawn with; not for features),
  is_bot (the user is a bot: its clicks are worth nothing to an advertiser)

Times are int64 epoch milliseconds UTC; ``arrival_ts >= ts`` always.
"""

from __future__ import annotations

import pyarrow as pa

from clickwise.synth.arrival import Columns
from clickwise.synth.ids import hex_ids
from clickwise.synth.population import Population

STREAMS = ("impressions", "clicks", "predictions", "truth")

_S, _I, _F = pa.string(), pa.int64(), pa.float64()
SCHEMAS: dict[str, pa.Schema] = {
    "impressions": pa.schema(
        [
            ("impression_id", _S),
            ("user_id", _S),
            ("campaign_id", _S),
            ("domain", _S),
            ("ip", _S),
            ("user_agent", _S),
            ("cost", _F),
            ("ts", _I),
            ("arrival_ts", _I),
        ]
    ),
    "clicks": pa.schema(
        [
            ("click_id", _S),
            ("impression_id", _S),
            ("user_id", _S),
            ("campaign_id", _S),
            ("ts", _I),
            ("arrival_ts", _I),
        ]
    ),
    "predictions": pa.schema(
        [("user_id", _S), ("segment_id", _S), ("score", _F), ("ts", _I), ("arrival_ts", _I)]
    ),
    "truth": pa.schema([("impression_id", _S), ("p_click", _F), ("is_bot", pa.bool_())]),
}
REPEATED_STRINGS = ("user_id", "campaign_id", "domain", "ip", "user_agent", "segment_id")
"""String columns with few distinct values: worth dictionary encoding in Parquet."""


def impression_tables(pop: Population, cols: Columns) -> tuple[pa.Table, pa.Table]:
    """The impressions table and the truth table of the same rows, in the same order."""
    impression_id = hex_ids(cols["impression_key"])
    impressions = pa.Table.from_arrays(
        [
            impression_id,
            pop.user_ids.take(cols["user"]),
            pop.campaigns.ids.take(cols["campaign"]),
            pop.domains.names.take(cols["domain"]),
            pop.ips.take(cols["ip"]),
            pop.user_agents.take(cols["ua"]),
            pa.array(cols["cost"], _F),
            pa.array(cols["ts"], _I),
            pa.array(cols["arrival_ts"], _I),
        ],
        schema=SCHEMAS["impressions"],
    )
    truth = pa.Table.from_arrays(
        [impression_id, pa.array(cols["p_click"], _F), pa.array(pop.is_bot[cols["user"]])],
        schema=SCHEMAS["truth"],
    )
    return impressions, truth


def click_table(pop: Population, cols: Columns) -> pa.Table:
    """The clicks table."""
    return pa.Table.from_arrays(
        [
            hex_ids(cols["click_key"]),
            hex_ids(cols["impression_key"]),
            pop.user_ids.take(cols["user"]),
            pop.campaigns.ids.take(cols["campaign"]),
            pa.array(cols["ts"], _I),
            pa.array(cols["arrival_ts"], _I),
        ],
        schema=SCHEMAS["clicks"],
    )


def prediction_table(pop: Population, cols: Columns) -> pa.Table:
    """The predictions table."""
    return pa.Table.from_arrays(
        [
            pop.user_ids.take(cols["user"]),
            pop.segment_ids.take(pop.segment[cols["user"]]),
            pa.array(cols["score"], _F),
            pa.array(cols["ts"], _I),
            pa.array(cols["arrival_ts"], _I),
        ],
        schema=SCHEMAS["predictions"],
    )
