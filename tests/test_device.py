"""The device a model job runs on: ``auto`` names what it chose first in the log and in the job's
provenance; ``cuda`` where torch sees no GPU stops the job at its start with one message."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from locedit import device as devices
from locedit.device import DeviceError, describe, resolve_device, stamp
from locedit.jobs import device_stamp, job, job_device

from snakemake_job import REPO, fake_snakemake

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def model_job(tmp_path, device: str):
    return fake_snakemake("trace", input={"model": "models/m"}, output=[tmp_path / "t.parquet"],
                          log=tmp_path / "job.log", params={"model": {"name": "m", "device": device}})


@needs_no_gpu
def test_cuda_without_a_gpu_says_what_was_asked_why_and_the_fix():
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda:1")
    message = str(err.value)
    assert message.startswith("model.device is 'cuda:1' but torch sees no CUDA device here: ")
    assert (f"this torch ({torch.__version__}) is a CPU-only build" in message if torch.version.cuda is None
            else "GPU" in message)
    assert "set model.device: auto (or cpu)" in message and "run the job on a GPU node" in message
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")


JOBS = {  # (snakemake params and input, the job's body)
    "start": ("params={'model': {'name': 'm', 'device': 'cuda'}}, input={'model': 'm'}", "Path(RAN).touch()"),
    "body": ("params={}, input={}", "from locedit.device import resolve_device; resolve_device('cuda'); "
                                    "Path(RAN).touch()"),
}


@needs_no_gpu
@pytest.mark.parametrize("where", JOBS, ids=["a model job at its start", "a device asked for inside a job"])
def test_cuda_without_a_gpu_stops_the_job_with_one_message(tmp_path, where):
    """In its own process, as Snakemake runs a script: exit status 1, the message once in the log
    and once on stderr, no traceback, and nothing after it runs."""
    args, body = JOBS[where]
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from pathlib import Path\n"
            "from snakemake_job import fake_snakemake\n"
            "from locedit.jobs import job\n"
            f"RAN = {str(tmp_path / 'ran')!r}\n"
            f"smk = fake_snakemake('edit', output=[], log={str(tmp_path / 'job.log')!r}, {args})\n"
            f"with job(smk):\n    {body}\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    log = (tmp_path / "job.log").read_text()
    assert done.returncode == 1 and not (tmp_path / "ran").exists()
    for text in (done.stderr, log):
        assert text.count("locedit: model.device is 'cuda' but torch sees no CUDA device here") == 1, text
        assert "Traceback" not in text


def test_auto_names_the_device_first_in_the_log_and_in_the_provenance(tmp_path):
    from locedit import provenance

    with job(model_job(tmp_path, "auto")):
        assert job_device() == resolve_device("auto") and device_stamp() == stamp(job_device())
        record = provenance.current()
    first = (tmp_path / "job.log").read_text().splitlines()[0]
    assert first.endswith(f"device: {describe(resolve_device('auto'))} (model.device auto)")
    assert record["device"] == describe(resolve_device("auto"))


def test_a_device_param_makes_a_device_job(tmp_path):
    smk = fake_snakemake("factor_stats", input={"moments": "m.pt"}, output=[], log=tmp_path / "job.log",
                         params={"device": "cpu"})  # computes on the model's device without the model
    with job(smk):
        assert job_device() == torch.device("cpu")
    assert (tmp_path / "job.log").read_text().splitlines()[0].endswith("device: cpu (model.device cpu)")


def test_a_job_that_runs_no_model_resolves_no_device(tmp_path):
    smk = fake_snakemake("scores", input={"cases": "c"}, output=[], log=tmp_path / "job.log",
                         params={"model": {"name": "m", "device": "cuda"}})  # scores: model params, no model
    with job(smk):
        with pytest.raises(RuntimeError, match="job_device\\(\\) is for jobs that run the model"):
            job_device()
    assert "device:" not in (tmp_path / "job.log").read_text()


@pytest.fixture
def one_gpu(monkeypatch):
    """Pretend torch sees one NVIDIA H100."""
    gpu = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 1024**3)
    for name, value in {"is_available": lambda: True, "device_count": lambda: 1, "current_device": lambda: 0,
                        "get_device_properties": lambda device=None: gpu,
                        "get_device_name": lambda device=None: gpu.name}.items():
        monkeypatch.setattr(devices.torch.cuda, name, value)


def test_on_a_gpu_auto_names_it_and_its_memory(one_gpu):
    chosen = resolve_device("auto")
    assert chosen == torch.device("cuda", 0) == resolve_device("cuda")
    assert describe(chosen) == "cuda:0 (NVIDIA H100 80GB HBM3, 80.0 GiB)"
    assert stamp(chosen) == "cuda (NVIDIA H100 80GB HBM3)" != stamp(torch.device("cpu"))
    with pytest.raises(DeviceError, match="'cuda:1' but this job sees 1 CUDA device"):
        resolve_device("cuda:1")


def test_a_cuda_build_without_a_visible_gpu_blames_the_job(monkeypatch):
    monkeypatch.setattr(devices.torch.version, "cuda", "12.4")
    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES='' hides every GPU from this job"):
        resolve_device("cuda")
