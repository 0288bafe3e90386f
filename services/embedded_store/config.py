"""Settings of the embedded store server (env prefix `STORE_`, e.g. `STORE_DATA_DIR`)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.config import PROJECT_ROOT, CommonSettings


def default_spool_dir() -> Path:
    """Insert payloads are staged in a file for chDB; tmpfs makes that about twice as fast."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    import tempfile

    return Path(tempfile.gettempdir())


class StoreSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="STORE_", env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(8123, ge=0, le=65535)
    data_dir: Path = PROJECT_ROOT / "data" / "store"
    # Credentials are off unless set; then every request must carry them (basic auth,
    # X-ClickHouse-User/Key headers, or user/password URL parameters, as ClickHouse accepts).
    user: str | None = None
    password: SecretStr | None = None
    max_body_bytes: int = Field(2 * 1024**3, ge=1024)
    spool_dir: Path | None = None
    # ClickHouse's own default session timeout.
    session_timeout_s: float = Field(60.0, gt=0)
    max_sessions: int = Field(1000, ge=1)
    # Engine calls run on these threads; chDB handles run queries in parallel.
    threads: int = Field(8, ge=1, le=256)
    idle_handles: int = Field(16, ge=0)
    log_level: str = "INFO"

    @property
    def spool_path(self) -> Path:
        return self.spool_dir or default_spool_dir()

    @property
    def auth_required(self) -> bool:
        # Empty values count as unset: compose passes `STORE_PASSWORD=` when none is configured.
        return bool(self.user) or bool(self.password and self.password.get_secret_value())


@lru_cache
def get_settings() -> StoreSettings:
    return StoreSettings()
