"""The live dashboard in a real browser, over a real running pipeline.

Real Kafka, Spark (the streaming job with live scoring), Delta and PostgreSQL;
the dashboard served by uvicorn in a thread; Debian's headless Chromium driven
by Selenium through Debian's chromedriver (Selenium Manager downloads nothing:
both paths are given). The page opens before the job has written anything and must
say what to run; then, while the job runs, it must show every panel with data,
and the windows of more events, without being reloaded. The screenshot goes
to docs/images/dashboard.png (the README shows it).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pyspark.sql import SparkSession

from pulsecast.bus import EventProducer
from pulsecast.config import Settings
from pulsecast.dashboard import DashboardData, create_app
from pulsecast.stream.job import StreamJob
from pulsecast.testing import telemetry_event

from .conftest import StreamFactory, free_ports
from .test_stream_scoring import scoring_settings

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "dashboard.png"
KEYS = ("m-0", "m-1")
# Event time starts 30 minutes ago, on a minute, so the page's default range (24 h) holds it.
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)


def readings(minutes: range, spikes: dict[tuple[str, int], float]) -> list[dict[str, object]]:
    """Two machines, a reading every 10 s; temperature cycles 50/51/52 by minute."""
    return [
        telemetry_event(
            key,
            when=T0 + timedelta(minutes=minute, seconds=second),
            event_id=f"{key}-{minute}-{second}",
            temperature_c=spikes.get((key, minute), 50.0 + minute % 3),
        )
        for minute in minutes
        for second in range(0, 60, 10)
        for key in KEYS
    ]


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.fail(f"{path} is missing: run scripts/system-deps.sh", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite runs as root
        "--disable-dev-shm-usage",
        "--window-size=1440,1900",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def serve(settings: Settings, stream: str) -> tuple[str, Callable[[], None]]:
    """The dashboard on a free port in a thread; its URL and a stop function."""
    (port,) = free_ports(1)
    app = create_app(settings, data=DashboardData(settings, stream=stream))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the dashboard did not start in 30 s"
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://127.0.0.1:{port}/", stop


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = 60) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25).until(condition)
    except TimeoutException:
        status = driver.find_element("id", "status").text
        pytest.fail(f"the page never showed {what} in {timeout:.0f} s (status: {status})")


def attr(driver: Any, element_id: str, name: str) -> str:
    value = driver.find_element("id", element_id).get_attribute(name)
    return value or ""


@contextmanager
def running_job(spark: SparkSession, settings: Settings, stream: str) -> Iterator[StreamJob]:
    """The streaming job (with live scoring) running until the block ends."""
    job = StreamJob(spark, settings, streams=[stream])
    job.start()
    done = threading.Event()
    failures: list[BaseException] = []

    def watch() -> None:  # what StreamJob.wait does: restart failed queries, close windows
        try:
            while not done.wait(0.5):
                job.poll()
        except Exception as exc:
            failures.append(exc)

    watcher = threading.Thread(target=watch, name="job-poll", daemon=True)
    watcher.start()
    try:
        yield job
    finally:
        done.set()
        watcher.join(timeout=30)
        job.stop()
    assert not failures, failures


def test_dashboard_shows_the_live_pipeline_and_updates_without_reload(
    spark: SparkSession, stream_factory: StreamFactory, tmp_path: Path, browser: Any
) -> None:
    base, stream = stream_factory()
    settings = scoring_settings(base, tmp_path)
    settings = settings.model_copy(
        update={"dashboard": settings.dashboard.model_copy(update={"refresh_s": 1.0})}
    )
    url, stop = serve(settings, stream)
    try:
        # Nothing written yet: each panel says what to run.
        browser.get(url)
        wait_for(browser, lambda d: attr(d, "entity", "data-state") == "empty", "the empty state")
        assert "pulsecast stream run" in browser.find_element("id", "entity-notice").text
        assert "pulsecast stream run" in browser.find_element("id", "overview-notice").text
        browser.execute_script("window.pulsecastMarker = 'not reloaded';")

        with running_job(spark, settings, stream):
            # Minutes 0..11, m-0 runs hot in minute 9; the windows of minutes 0..10 close.
            with EventProducer(settings) as producer:
                producer.send(stream, readings(range(12), {("m-0", 9): 90.0}))
            wait_for(
                browser,
                lambda d: attr(d, "entity-chart", "data-points") == "11",
                "11 windows",
                timeout=180,
            )
            wait_for(browser, lambda d: attr(d, "quality", "data-state") == "ok", "data quality")
            wait_for(
                browser,
                lambda d: attr(d, "overview", "data-received") == str(2 * 6 * 12),
                "the events in the overview",
            )

            # Overview: rates, freshness, rejected rate and the two machines, with its chart.
            assert attr(browser, "overview", "data-state") == "ok"
            assert browser.find_element("id", "kpi-entities").text == "2"
            assert browser.find_element("id", "kpi-rejected").text == "0.00 %"
            assert browser.find_element("id", "kpi-lag").text.endswith(" s")
            assert browser.find_elements("css selector", "#overview-chart .scatterlayer .trace")
            # Entity view: the machine with a flag, its temperature, the anomaly marker.
            assert browser.find_element("id", "entity-key").get_attribute("value") == "m-0"
            assert browser.find_element("id", "entity-metric").get_attribute("value") == (
                "temperature_c"
            )
            assert attr(browser, "entity-chart", "data-flags") == "1"
            assert browser.find_elements("css selector", "#entity-chart .scatterlayer .trace")
            # Alert feed: the spike, with its score.
            alerts = browser.find_elements("css selector", "#alerts-table tbody tr")
            first = [td.text for td in alerts[0].find_elements("tag name", "td")]
            assert first[1:3] == ["m-0", "temperature_c"], first
            assert float(first[4]) >= 0.5
            # Model view: no model trained here, so it says what to run.
            assert browser.find_element("id", "champion-forecaster").text == "none"
            assert "pulsecast train" in browser.find_element("id", "models-registry-notice").text
            # Data quality: both charts drawn.
            assert attr(browser, "quality-chart", "data-state") == "ok"
            assert attr(browser, "freshness-chart", "data-state") == "ok"

            # More events while the job runs: the page shows the new windows by itself.
            last = attr(browser, "entity-chart", "data-last-window")
            with EventProducer(settings) as producer:
                producer.send(stream, readings(range(12, 16), {}))
            wait_for(
                browser,
                lambda d: attr(d, "entity-chart", "data-points") == "15",
                "15 windows",
                timeout=120,
            )
            assert attr(browser, "entity-chart", "data-last-window") > last
            wait_for(
                browser,
                lambda d: attr(d, "overview", "data-received") == str(2 * 6 * 16),
                "the new events in the overview",
            )
            assert browser.execute_script("return window.pulsecastMarker;") == "not reloaded"

            time.sleep(1.5)  # one more refresh: every chart settled
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            assert browser.save_screenshot(str(SCREENSHOT))
    finally:
        stop()
