"""/metrics text: Prometheus exposition format, loads counted once, the GPU sample as gauges."""

from __future__ import annotations

import re

import httpx
import pytest

from llm_mcp.core.jobs import Job
from llm_mcp.daemon.metrics import Metrics
from llm_mcp.daemon.server import Daemon, Samplers
from llm_mcp.hardware.gpu import GpuSample, GpuSampler, GpuSnapshot
from llm_mcp.hardware.system import SystemSampler
from tests.conftest import Setup
from tests.proxy.conftest import PROXY_FAKES, serving
from tests.unit.nvml_standin import GIB, FakeGpu, NvmlStandIn

LINE = re.compile(r'^(# (HELP|TYPE) \w+ .+|\w+(\{(\w+="([^"\\]|\\.)*",?)+\})? -?[0-9.e+-]+)$')


def finished(model: str, result: str, seconds: float | None = None) -> dict[str, object]:
    job = Job(kind="switch", profile=model, profile_name=model, force=False, rollback=True, previous=None,
              estimate=None)
    job.result, job.load_seconds = result, seconds
    job.done.set()
    return job.to_dict()


@pytest.mark.anyio  # a Job holds anyio events
async def test_every_line_is_valid_exposition_text_and_loads_count_once() -> None:
    metrics = Metrics()
    metrics.request('odd"model\\x', "chat")
    metrics.error("a", "upstream_500")
    metrics.waited("a", 1.5)
    metrics.first_token("a", 0.25)
    metrics.timings("a", {"predicted_n": 50, "predicted_ms": 500.0})
    metrics.timings("a", {"predicted_n": 0, "predicted_ms": 0})  # nothing generated: ignored
    metrics.timings("a", "not timings")
    ready = finished("a", "ready", 2.5)
    for _ in range(3):  # the same job published again (phase changes, status refreshes)
        metrics.job(ready)
    metrics.job(finished("a", "failed"))
    metrics.job({**finished("a", "ready"), "detail": "already loaded"})  # no load happened
    gpu = GpuSnapshot(available=True, reason=None, driver_version="1", taken_at=0.0, gpus=(
        GpuSample(index=0, name="H200", memory_used_mib=1024.0, memory_total_mib=2048.0,
                  utilization_pct=50.0),
        GpuSample(index=1, name=None)))  # N/A readings: no line
    text = metrics.render(["a", "b"], {"a": 2}, {"b": 1}, gpu.to_dict())
    for line in text.splitlines():
        assert LINE.match(line), line
    assert 'llm_mcp_requests_total{model="odd\\"model\\\\x",route="chat"} 1' in text
    assert 'llm_mcp_request_errors_total{model="a",reason="upstream_500"} 1' in text
    assert 'llm_mcp_requests_in_flight{model="a"} 2' in text
    assert 'llm_mcp_requests_in_flight{model="b"} 0' in text
    assert 'llm_mcp_requests_queued{model="b"} 1' in text
    assert 'llm_mcp_queue_wait_seconds_sum{model="a"} 1.5' in text
    assert 'llm_mcp_time_to_first_token_seconds_count{model="a"} 1' in text
    assert 'llm_mcp_generated_tokens_total{model="a"} 50' in text
    assert 'llm_mcp_generation_seconds_total{model="a"} 0.5' in text
    assert 'llm_mcp_tokens_per_second{model="a"} 100' in text
    assert 'llm_mcp_loads_total{model="a",result="ready"} 1' in text
    assert 'llm_mcp_loads_total{model="a",result="failed"} 1' in text
    assert 'llm_mcp_load_seconds_sum{model="a"} 2.5' in text
    assert 'llm_mcp_gpu_memory_used_bytes{gpu="0",name="H200"} 1073741824' in text
    assert 'llm_mcp_gpu_utilization_ratio{gpu="0",name="H200"} 0.5' in text
    assert 'gpu="1"' not in text
    assert text.count("# TYPE llm_mcp_gpu_memory_used_bytes gauge") == 1


def test_no_gpu_sample_leaves_the_gpu_families_empty() -> None:
    text = Metrics().render([], {}, {}, None)
    assert "# TYPE llm_mcp_gpu_utilization_ratio gauge" in text
    assert not [line for line in text.splitlines() if line.startswith("llm_mcp_gpu")]


@pytest.mark.anyio
@pytest.mark.docker
async def test_a_scrape_samples_the_gpu_through_the_daemons_samplers(setup: Setup) -> None:
    # NVML STAND-IN (tests/unit/nvml_standin.py): there is no GPU here; the sampler and the
    # daemon's Samplers are the real ones
    nvml = NvmlStandIn([FakeGpu(name="H200", memory_used=10 * GIB, memory_total=24 * GIB, utilization=37)])

    def samplers(daemon: Daemon) -> Samplers:
        return Samplers(daemon.core, GpuSampler(nvml), SystemSampler())

    setup.write(PROXY_FAKES)
    async with serving(setup, samplers=samplers) as ep, httpx.AsyncClient() as raw:
        assert ep.daemon.samplers is not None and ep.daemon.samplers.last_gpu is None  # nobody subscribed
        response = await raw.get(f"{ep.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert f'llm_mcp_gpu_memory_used_bytes{{gpu="0",name="H200"}} {10 * GIB}' in text
    assert f'llm_mcp_gpu_memory_total_bytes{{gpu="0",name="H200"}} {24 * GIB}' in text
    assert 'llm_mcp_gpu_utilization_ratio{gpu="0",name="H200"} 0.37' in text
