"""One Settings object, read from MOORAGE_* environment variables; the only reader of os.environ.

Example:
    settings = Settings(data_dir=Path("/tmp/moorage"), port=9090)
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "moorage"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MOORAGE_", extra="ignore")

    host: str = "127.0.0.1"
    """Address the server binds. Loopback by default."""

    port: int = 8080
    """Port of the one HTTP listener: control plane, AWS protocols and the inference router."""

    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the SQLite store, the model cache, instance sockets and logs live."""

    database_url: str = ""
    """SQLAlchemy URL of the store; empty means sqlite in data_dir/moorage.db."""

    region: str = "us-east-1"
    """Region written into ARNs."""

    account_id: str = "000000000000"
    """12-digit account id written into ARNs."""

    invocation_timeout_seconds: float = 60.0
    """An invocation running longer than this is cut off (SageMaker: 60 s)."""

    max_payload_bytes: int = 6 * 1024 * 1024
    """Largest InvokeEndpoint body accepted (SageMaker: 6 MB)."""

    max_queued_per_instance: int = 256
    """Invocations one instance may have in flight or queued; past that the router answers
    429 ThrottlingException (boto3 backs off and retries) instead of queueing without bound."""

    job_vcpus: int = Field(default_factory=lambda: 4 * (os.cpu_count() or 1))
    """vCPUs of job instances (InstanceCount × the instance type's vCPUs) that may run at once;
    jobs beyond it wait (moorage/control/compute.py). Default: 4 × this machine's cores."""

    max_instances: int = 64
    """Instances all endpoints together may run on this server (ResourceLimitExceeded past it)."""

    serverless_idle_seconds: float = 300.0
    """A serverless instance idle this long is stopped (MOORAGE_SERVERLESS_IDLE_SECONDS);
    provisioned concurrency stays warm."""

    serverless_max_payload_bytes: int = 4 * 1024 * 1024
    """Largest body a serverless variant accepts (SageMaker: 4 MB)."""

    autoscaling_interval_seconds: float = 60.0
    """How often scaling policies are evaluated (MOORAGE_AUTOSCALING_INTERVAL_SECONDS)."""

    async_retention_seconds: float = 7 * 24 * 3600.0
    """An asynchronous request is forgotten this long after it ends (MOORAGE_ASYNC_RETENTION_SECONDS):
    its output and error document stay where they were written; its row, which the native
    describe call reads and which makes a resubmitted InferenceId the same request, goes."""

    webhook_attempts: int = 5
    """Async notification webhooks: tries per URL before giving up (with doubling backoff)."""

    webhook_backoff_seconds: float = 1.0
    """The first retry's delay; each next one doubles."""

    webhook_timeout_seconds: float = 10.0

    health_check_interval_seconds: float = 2.0
    """How often each instance is pinged."""

    health_check_timeout_seconds: float = 2.0
    """A ping slower than this counts as a failure (SageMaker: 2 s)."""

    unhealthy_threshold: int = 3
    """Consecutive failed pings after which an instance is replaced."""

    instance_startup_timeout_seconds: float = 120.0
    """Deadline for a new instance's first passing ping."""

    instance_stop_grace_seconds: float = 10.0
    """SIGTERM, then SIGKILL after this long."""

    drain_timeout_seconds: float = 30.0
    """How long a retiring instance may finish its in-flight requests."""

    reconcile_interval_seconds: float = 0.5
    """Period of the control loop that moves endpoints to their desired state."""

    max_tar_bytes: int = 20 * 1024**3
    """Cap on the unpacked size of a model.tar.gz."""

    max_tar_members: int = 100_000
    """Cap on the number of entries in a model.tar.gz."""

    auth: bool = True
    """Verify SigV4 on every request. Off only for local experiments on a loopback address."""

    auth_max_skew_seconds: float = 900.0
    """Largest accepted difference between a request's X-Amz-Date and the server clock."""

    admin_access_key_id: str = ""
    """With admin_secret_access_key: an admin key defined by the environment
    (MOORAGE_ADMIN_ACCESS_KEY_ID / MOORAGE_ADMIN_SECRET_ACCESS_KEY), for scripts and CI."""

    admin_secret_access_key: SecretStr = SecretStr("")
    """The secret of admin_access_key_id; never logged."""

    python_executable: str = ""
    """Python used to start instance processes; empty means the server's own."""

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'moorage.db'}"
