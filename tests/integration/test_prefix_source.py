"""A stream read from an object-storage prefix (a real S3 API on loopback): each new file once, and
the tables equal the same traffic ingested from the files directly."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from integration_sources import STREAMS, assert_same_tables, lake_counts

from clickwise.engine import run_loop
from clickwise.examples import example_path
from clickwise.spec import load_pipeline
from clickwise.storage import open_root
from clickwise.tables import Tables

pytestmark = pytest.mark.integration


def test_files_appearing_under_an_s3_prefix_are_ingested_once(
    tmp_path: Path, generated: Path, reference: Tables, s3_bucket: str, s3_server: object
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_server.endpoint, region_name="us-east-1")  # type: ignore[attr-defined]
    path = tmp_path / "pipeline.yaml"
    sources = "\n".join(
        f"  {s}:\n    source: {{kind: prefix, url: 's3://{s3_bucket}/incoming/{s}/'}}" for s in STREAMS
    )
    path.write_text(f"extends: {example_path('adclick')}\nstreams:\n{sources}\n")
    pipeline = load_pipeline(path)
    root = open_root(str(tmp_path / "root"))

    # the clicks arrive after the first pass: a later pass picks them up (and nothing twice)
    for stream in ("impressions", "predictions"):
        s3.upload_file(
            str(generated / stream / "part-00000.jsonl"), s3_bucket, f"incoming/{stream}/part-0.jsonl"
        )
    list(run_loop(pipeline, root, once=True, rows=False))
    assert lake_counts(root.url, pipeline)["clicks"] == 0
    s3.upload_file(str(generated / "clicks" / "part-00000.jsonl"), s3_bucket, "incoming/clicks/part-0.jsonl")
    list(run_loop(pipeline, root, once=True, rows=False))
    list(run_loop(pipeline, root, once=True, rows=False))  # a third pass finds nothing new
    assert lake_counts(root.url, pipeline) == lake_counts(reference.root.url, reference.pipeline)
    assert_same_tables(root.url, pipeline, reference)
