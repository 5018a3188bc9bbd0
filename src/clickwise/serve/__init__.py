"""The real-time HTTP service: events in, lookups as of any moment, ad decisions out."""

from clickwise.serve.app import Settings, build_asgi, create_app
from clickwise.serve.auth import ApiKey, KeyStore, add_key
from clickwise.serve.client import Client, ClientError
from clickwise.serve.replay import ReplayReport, replay
from clickwise.serve.service import IngestResult, Service, ServiceError

__all__ = [
    "ApiKey",
    "Client",
    "ClientError",
    "IngestResult",
    "KeyStore",
    "ReplayReport",
    "Service",
    "ServiceError",
    "Settings",
    "add_key",
    "build_asgi",
    "create_app",
    "replay",
]
