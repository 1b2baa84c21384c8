"""observe.py: the clients against a real Prometheus (the session sandbox's) and the doubles."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from labkit.errors import ConfigError, ConnectError, NotAllowed, QueryError
from labkit.observe import (
    Grafana,
    Jaeger,
    Kiali,
    Prometheus,
    Series,
    endpoints,
    locate,
    series_frame,
    spans,
    targets,
)
from labkit.params import Lab, load_lab
from labkit.report import red_figure
from labkit.sandbox import Sandbox, monitoring
from tests.conftest import free_ports
from tests.observe_doubles import homelab_on_double

LOCAL = Path(__file__).resolve().parent.parent / "params" / "local.yaml"
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed (see README)"
)


@needs_prometheus
@pytest.mark.sandbox
def test_prometheus_instant_and_range_queries(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    with Prometheus(sandbox_lab, monitoring.prometheus_url(sandbox_lab)) as prometheus:
        assert prometheus.ready()
        (sample,) = prometheus.query('up{job="shlink"}')
        assert sample.value == 1.0 and sample.labels["namespace"] == "shlink"
        assert prometheus.query("scalar(vector(2))")[0].value == 2.0
        end = time.time()
        series = prometheus.query_range('up{job="redis"}', end - 30, end, 5)
        assert len(series) == 3 and all(s.points for s in series)
        frame = series_frame(series)
        assert list(frame.columns) == ["time", "series", "value"] and len(frame) > 0
        assert {t["job"] for t in prometheus.targets()} >= {"shlink", "redis", "postgres"}


@needs_prometheus
@pytest.mark.sandbox
def test_a_bad_query_is_a_query_error_naming_it(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    with (
        Prometheus(sandbox_lab, monitoring.prometheus_url(sandbox_lab)) as prometheus,
        pytest.raises(QueryError, match=r"sum\(rate\(up\)\).*bad_data"),
    ):
        prometheus.query("sum(rate(up))")


@needs_prometheus
@pytest.mark.sandbox
def test_notebook_tables_and_endpoints(sandbox: Sandbox, sandbox_lab: Lab) -> None:
    table = endpoints(sandbox_lab).set_index("api")
    assert table.loc["prometheus", "url"] == monitoring.prometheus_url(sandbox_lab)
    assert "the sandbox runs no Grafana" in table.loc["grafana", "not reachable because"]
    assert set(targets(sandbox_lab)["health"]) == {"up"}


@pytest.fixture
def local_lab() -> Lab:
    return load_lab(LOCAL)


def test_nothing_listening_is_a_connect_error_naming_the_endpoint(local_lab: Lab) -> None:
    (port,) = free_ports(1)
    with (
        Prometheus(local_lab, f"http://127.0.0.1:{port}") as prometheus,
        pytest.raises(ConnectError, match=rf"prometheus http://127.0.0.1:{port}/api/v1/targets"),
    ):
        prometheus.targets()


@pytest.mark.parametrize("url", ["http://10.99.0.1:9090", "http://198.51.100.10:3000"])
def test_an_address_outside_the_allow_list_is_refused_before_any_request(
    local_lab: Lab, url: str
) -> None:
    with pytest.raises(NotAllowed, match="allow_list"):
        Grafana(local_lab, url)


def test_a_url_that_is_not_http_is_a_config_error(local_lab: Lab) -> None:
    with pytest.raises(ConfigError, match="not an http"):
        Jaeger(local_lab, "127.0.0.1:16686")


def test_locate_names_the_params_to_set() -> None:
    homelab = load_lab(Path(__file__).resolve().parent.parent / "params" / "homelab.yaml")
    assert locate(homelab, "kiali") == (
        "",
        "params observability.kiali_url is empty: set the kiali URL to check it",
    )
    with pytest.raises(ConfigError, match="no observability API 'loki'"):
        locate(homelab, "loki")


def test_grafana_jaeger_kiali_answers_are_read_as_documented(tmp_path: Path) -> None:
    with homelab_on_double(tmp_path) as (double, params):
        lab = load_lab(params)
        with Grafana(lab, double.url) as grafana:
            assert grafana.health()["database"] == "ok"
            assert grafana.datasources()[0]["type"] == "prometheus"
            assert grafana.datasource_health("prometheus")["status"] == "OK"
            assert "labkit-redis" in {d["uid"] for d in grafana.dashboards()}
        with Jaeger(lab, double.url) as jaeger:
            assert "shlink.shlink" in jaeger.services()
            assert jaeger.trace("0" * 32) is None  # 404: Jaeger does not hold it
            (trace,) = jaeger.traces("shlink.shlink", tags={"http.status_code": "200"})
            rows = spans(trace)
            assert {row["service"] for row in rows} == {
                "istio-ingressgateway.istio-system",
                "shlink.shlink",
            }
            assert max(row["duration_ms"] for row in rows) == 4.2  # microseconds -> ms
        with Kiali(lab, double.url) as kiali:
            assert ("shlink", "shlink-db-instance1-abcd") in kiali.edges(["shlink", "postgres"])
        assert any("tags=" in request for request in double.requests)
        double.healthy = False
        with Grafana(lab, double.url) as grafana:
            assert grafana.health()["database"] == "failing"  # 503 with a body: read, not raised


def test_red_figure_has_rate_and_latency_panels() -> None:
    frames = {
        "rate": series_frame([Series({}, [(1.7e9, 5.0), (1.7e9 + 15, 6.0)])], "rate"),
        "p99": series_frame([Series({}, [(1.7e9, 3.0)])], "p99"),
        "errors": series_frame([], "errors"),
    }
    figure = red_figure(frames, "RED")
    assert [trace.name for trace in figure.data] == ["rate", "p99"]
    assert figure.data[1].yaxis == "y2"
