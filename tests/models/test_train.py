"""models.train as the TypeScript activity runs it: subprocesses, JSON lines, checkpoints, resume, torchrun, and
the ways a run ends early (bad config, bad usage, lost supervisor, SIGTERM)."""

import json
import math
import os
import signal
import subprocess
import sys

import torch

from conftest import REPO, TINY_CONFIG, job_env, parse_events, python_job, torchrun_job
from models import checkpoint

PROGRESS_FIELDS = {"event", "epoch", "step", "steps_per_epoch", "loss", "samples_per_sec"}
RESULT_FIELDS = {"model_path", "epochs", "final_loss", "samples_per_sec", "train_seconds", "world_size",
                 "resumed_from_epoch"}


def manifest_counts(dataset):
    return json.loads((dataset / "manifest.json").read_text())["counts"]


def test_standalone_run(trained, dataset):
    out, run = trained
    start = run.events[0]
    assert start["event"] == "start"
    assert start["world_size"] == 1 and start["start_epoch"] == 1 and start["epochs"] == 2
    assert start["n_samples"] == manifest_counts(dataset)["train"]
    assert start["steps_per_epoch"] == math.ceil(start["n_samples"] / TINY_CONFIG["batch_size"])

    progress = run.of("progress")
    assert progress and all(set(p) == PROGRESS_FIELDS for p in progress)
    epoch_ends = [p for p in progress if p["step"] == p["steps_per_epoch"]]
    assert [p["epoch"] for p in epoch_ends] == [1, 2]
    assert epoch_ends[1]["loss"] < epoch_ends[0]["loss"] < math.log(50)  # learning, from uniform over 50 items

    assert [c["epoch"] for c in run.of("checkpoint")] == [1, 2]
    for c in run.of("checkpoint"):
        assert os.path.isabs(c["path"]) and c["path"] == str(out / "checkpoints" / f"epoch-{c['epoch']}.pt")
    assert not [f for f in os.listdir(out / "checkpoints") if ".tmp" in f]  # atomic writes leave no temp files

    result = run.last
    assert RESULT_FIELDS <= set(result)
    assert result["model_path"] == str(out / "model.pt") and os.path.isfile(result["model_path"])
    assert result["world_size"] == 1 and result["resumed_from_epoch"] == 0 and result["epochs"] == 2
    assert result["final_loss"] == epoch_ends[1]["loss"] and result["samples_per_sec"] > 0


def test_checkpoints_are_self_describing(trained):
    out, _ = trained
    ckpt = checkpoint.load(str(out / "checkpoints" / "epoch-1.pt"))
    assert ckpt["format"] == checkpoint.CHECKPOINT_FORMAT and ckpt["epoch"] == 1
    assert ckpt["family"] == "two_tower" and ckpt["n_items"] == 50 and ckpt["history_len"] == 8
    assert ckpt["config"]["lr"] == TINY_CONFIG["lr"]
    assert {"model_state", "optimizer_state", "rng_states", "loss"} <= set(ckpt) and len(ckpt["rng_states"]) == 1
    model = checkpoint.load(str(out / "model.pt"), expect=(checkpoint.MODEL_FORMAT,))
    assert model["family"] == "two_tower" and isinstance(model["model_state"]["item_embedding.weight"], torch.Tensor)


def test_resume_continues_exactly(trained, dataset, tmp_path):
    out, first = trained
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--config-json", json.dumps(TINY_CONFIG), "--resume", str(out / "checkpoints" / "epoch-1.pt"))
    assert run.returncode == 0, run.stderr
    assert run.events[0]["start_epoch"] == 2
    assert [c["epoch"] for c in run.of("checkpoint")] == [2]
    assert run.last["resumed_from_epoch"] == 1
    # Same data order (sampler seed + epoch), optimizer and RNG state: the resumed epoch repeats the original.
    assert run.last["final_loss"] == first.last["final_loss"]


def test_resume_rejects_a_different_architecture(trained, dataset, tmp_path):
    out, _ = trained
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--config-json", json.dumps({**TINY_CONFIG, "embedding_dim": 32}),
                     "--resume", str(out / "checkpoints" / "epoch-1.pt"))
    assert run.returncode == 1 and run.last["type"] == "ConfigError" and "embedding_dim" in run.last["message"]


def test_torchrun_two_processes(dataset, tmp_path):
    config = {**TINY_CONFIG, "epochs": 1}
    run = torchrun_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                       "--config-json", json.dumps(config))
    assert run.returncode == 0, run.stderr
    start = run.events[0]
    assert start["world_size"] == 2
    # Each rank trains on its half of the samples.
    assert start["steps_per_epoch"] == math.ceil(start["n_samples"] / 2 / config["batch_size"])
    assert len(run.of("start")) == 1 and len(run.of("checkpoint")) == 1  # rank 0 only
    assert run.last["world_size"] == 2 and os.path.isfile(run.last["model_path"])
    assert len(checkpoint.load(run.of("checkpoint")[0]["path"])["rng_states"]) == 2


def test_unknown_config_key_is_a_json_error(dataset, tmp_path):
    run = python_job("models.train", "--data-dir", str(dataset), "--out-dir", str(tmp_path),
                     "--config-json", '{"epochz": 1}')
    assert run.returncode == 1 and len(run.events) == 1
    assert run.last["type"] == "ConfigError" and "'epochz'" in run.last["message"]


def test_usage_error(tmp_path):
    run = python_job("models.train", "--out-dir", str(tmp_path))
    assert run.returncode == 2 and run.last["type"] == "UsageError" and "--data-dir" in run.last["message"]


def long_run_args(dataset, out):
    config = {**TINY_CONFIG, "epochs": 10_000, "log_every_seconds": 0.2}
    return [sys.executable, "-m", "models.train", "--data-dir", str(dataset), "--out-dir", str(out),
            "--config-json", json.dumps(config)]


def test_exits_when_the_supervisor_is_gone(dataset, tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # reaped: its pid no longer exists
    proc = subprocess.run([*long_run_args(dataset, tmp_path), "--supervisor-pid", str(gone.pid)], cwd=REPO,
                          env=job_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert parse_events(proc.stdout)[-1]["type"] == "SupervisorLost"


def test_sigterm_stops_promptly(dataset, tmp_path):
    proc = subprocess.Popen(long_run_args(dataset, tmp_path), cwd=REPO, env=job_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # wait until training is under way
            if json.loads(line)["event"] == "progress":
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert parse_events(rest)[-1] == {"event": "error", "type": "Terminated", "message": "received SIGTERM"}


def test_every_step_exits_when_the_worker_is_gone(tmp_path):
    """RECSYS_SUPERVISOR_PID (set by the TypeScript runner for every step) stops any job run under models.jsonl."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    job = "import time\nfrom models.jsonl import run\nrun(lambda argv: time.sleep(30))\n"
    proc = subprocess.run([sys.executable, "-c", job], cwd=REPO,
                          env={**job_env(), "RECSYS_SUPERVISOR_PID": str(gone.pid)},
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 3
    assert parse_events(proc.stdout)[-1]["type"] == "SupervisorLost"
