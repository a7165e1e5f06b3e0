"""Exports in a GCS bucket (production): the bucket Experimenter reads Jetstream's results from.

Same relative paths as the local store (``statistics/``, ``metadata/``, ``errors/``, ``reports/``),
optionally under a prefix; each object's content type follows its suffix (JSON, or HTML for a report). A GCS object is replaced whole by each upload, so readers never see half a file, as with the
local store's rename. Outside a Dagster run, a store built with ``dagster.EnvVar`` values must be
initialised first (``dagster.build_resources({"export_store": store})``).
"""

from __future__ import annotations

import threading
from typing import Any

from dagster import EnvVar
from dagster_gcp import GCSResource
from google.api_core.exceptions import GoogleAPIError, NotFound
from pydantic import Field, PrivateAttr

from jetstream_assets.exports.store import ExportStore, content_type

CONTENT_TYPE = "application/json"  # of every export but the HTML reports (see store.content_type)


class GCSExportError(RuntimeError):
    """A GCS operation failed; the message names the gs:// URI and GCS's reason."""


class GCSExportStore(ExportStore):
    """Exports as objects ``gs://<bucket>/[<prefix>/]<path>``."""

    gcs: GCSResource = Field(description="The GCS connection (project, credentials).")
    bucket: str = Field(description="Bucket name, without gs:// (Jetstream: mozanalysis).")
    prefix: str = Field(default="", description="Folder inside the bucket; empty for its root.")

    _local: threading.local = PrivateAttr(default_factory=threading.local)

    def _bucket(self) -> Any:
        """The bucket handle, one client per thread (made by the GCS resource)."""
        unresolved = [n for n in ("bucket", "prefix") if isinstance(getattr(self, n), EnvVar)]
        if isinstance(self.gcs.project, EnvVar):
            unresolved.append("gcs.project")
        if unresolved:
            raise GCSExportError(
                f"GCSExportStore field(s) {', '.join(unresolved)} are unresolved dagster.EnvVar values; "
                "Dagster resolves them when a run starts. Outside a run, initialise the resource with "
                "`with dagster.build_resources({'export_store': store}) as r: r.export_store`."
            )
        bucket = getattr(self._local, "bucket", None)
        if bucket is None:
            name = self.bucket.removeprefix("gs://").strip("/")
            if not name or "/" in name:
                raise GCSExportError(
                    f"Invalid GCS bucket {self.bucket!r}: give the bucket name only (JETSTREAM_GCS_BUCKET), "
                    "and a folder inside it as the prefix (JETSTREAM_GCS_PREFIX)."
                )
            bucket = self._local.bucket = self.gcs.get_client().bucket(name)
        return bucket

    def _key(self, path: str) -> str:
        root = self.prefix.strip("/")
        return f"{root}/{path}" if root else path

    def uri(self, path: str) -> str:
        return f"gs://{self._bucket().name}/{self._key(self._check_path(path))}"

    def _put(self, path: str, data: bytes) -> None:
        blob = self._bucket().blob(self._key(path))
        try:
            blob.upload_from_string(data, content_type=content_type(path))
        except GoogleAPIError as e:
            raise GCSExportError(
                f"Cannot write {self.uri(path)}: {e}. Check that the bucket exists and the credentials "
                "may create objects in it."
            ) from e

    def _get(self, path: str) -> bytes:
        try:
            return self._bucket().blob(self._key(path)).download_as_bytes()
        except NotFound:
            raise FileNotFoundError(f"No export at {self.uri(path)}; has it been written yet?") from None
        except GoogleAPIError as e:
            raise GCSExportError(f"Cannot read {self.uri(path)}: {e}") from e

    def exists(self, path: str) -> bool:
        try:
            return self._bucket().blob(self._key(self._check_path(path))).exists()
        except GoogleAPIError as e:
            raise GCSExportError(f"Cannot look up {self.uri(path)}: {e}") from e

    def list(self, prefix: str = "") -> list[str]:
        if prefix and (prefix.startswith("/") or ".." in prefix.split("/")):
            raise ValueError(f"Export prefix {prefix!r} must be relative, without '..' parts.")
        root = self.prefix.strip("/")
        strip = len(root) + 1 if root else 0
        bucket = self._bucket()
        try:
            blobs = bucket.client.list_blobs(bucket, prefix=self._key(prefix) if root or prefix else None)
            return sorted(b.name[strip:] for b in blobs if not b.name.endswith("/"))
        except NotFound:
            return []
        except GoogleAPIError as e:
            raise GCSExportError(f"Cannot list gs://{bucket.name}/{self._key(prefix)}: {e}") from e

    def delete(self, path: str) -> None:
        try:
            self._bucket().blob(self._key(self._check_path(path))).delete()
        except NotFound:
            pass  # deleting is idempotent
        except GoogleAPIError as e:
            raise GCSExportError(f"Cannot delete {self.uri(path)}: {e}") from e
