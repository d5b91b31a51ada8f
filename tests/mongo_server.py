"""A real MongoDB server for the tests: SecantusDB started as its own process on a free port,
or whatever ``MONGODB_URI`` points at (a real mongod or Atlas). No mongomock anywhere. The server
itself is ``cdk_app.local.embedded_mongo``, which the local runner starts too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pymongo
import pytest

from cdk_app.local.embedded_mongo import mongodb_uri
from runtime.store.settings import StoreSettings


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """The connection string of the server every test of the session shares."""
    with mongodb_uri() as uri:
        yield uri


@pytest.fixture(scope="session")
def mongo_client(mongo_uri: str) -> Iterator[pymongo.MongoClient[dict]]:
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(mongo_uri)
    yield client
    client.close()


@pytest.fixture
def store_settings(mongo_client: pymongo.MongoClient[dict]) -> Iterator[StoreSettings]:
    """Collection names in a database of the test's own, dropped afterwards."""
    settings = StoreSettings(database=f"test_{uuid.uuid4().hex[:12]}")
    yield settings
    mongo_client.drop_database(settings.database)
